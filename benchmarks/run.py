"""Side-by-side speed, accuracy and memory on the same files, in one run.

    python -m benchmarks.run [--device auto] [--set shared|12mp|1080p] [--write]

Photo sets (``--set``): ``shared`` = ../shared/data/scenes + ../shared/data/faces, 112 files; ``12mp`` = the
same photos resized to about 12 megapixels (an event photographer's archive); ``1080p`` = the same photos
fitted into 1920 x 1080 frames (black bars, no face cut off), as video frames are. The resized sets are
JPEGs (quality 90) made once under out/bench_sets/ with the same file names, so F1 is scored alike.

Rows, each in a fresh process so that its peak memory is its own; models are loaded and warmed up on one
photo before the clock starts:
  decode-only          influvision's photo loader (track()'s threads, strict JPEG check) as track() uses it
                       on the CPU: the CPU ceiling for this input
  GPU decode-only      torchvision.io.decode_jpeg on CUDA, batches of 16 files: the GPU ceiling (CUDA only)
  influvision          track() end to end (decode, detect, align, embed, match, tally)
  facenet README       its README's way: MTCNN(keep_all=True) crops + InceptionResnetV1, one image per call.
                       Speed only unless the facenet-vggface2 weights are in influvision's weights cache
                       (nothing is downloaded): without them the network is the same size, untrained
  facenet + dlib       MTCNN(keep_all=True).detect + a per-face crop loop, then the same dlib embedder and
                       matcher as influvision: the README's per-image, per-face loop with a comparable F1
  face_recognition     its README's way: load_image_file, face_locations (HOG), face_encodings,
                       compare_faces(tolerance=0.6) and the smallest face_distance; when the package is
                       installed (benchmarks/install_face_recognition.sh), skipped with the reason otherwise

Accuracy for each row: F1 over (scene photo, registered person) pairs on the 7 labelled scenes, every
identity of faces/ registered (all its photos) in each pipeline's own way. With ``--device cuda`` on a
machine without CUDA the torch rows are skipped with the reason; decode-only and face_recognition (dlib,
CPU) still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    SHARED,
    cpu_seconds,
    cuda_skip_reason,
    machine,
    peak_rss_mib,
    publish,
    register_shared_faces,
    shared_photos,
    synchronizer,
)

ROWS = {
    "decode": "decode-only (influvision loader, track()'s decoding threads)",
    "decode_gpu": "GPU decode-only (nvJPEG, batches of 16)",
    "influvision": "influvision track()",
    "facenet_readme": "facenet-pytorch README: MTCNN crops + InceptionResnetV1",
    "facenet_dlib": "facenet-pytorch MTCNN + per-face loop, same dlib embedder",
    "face_recognition": "face_recognition README (HOG + dlib ResNet, tolerance 0.6)",
}
TORCH_ROWS = ("influvision", "facenet_readme", "facenet_dlib")
SETS = ("shared", "12mp", "1080p")
SET_ROOT = Path("out") / "bench_sets"
TARGET_VS_GPU_DECODE = 0.7  # issue #7: 12 MP archives at >= 70 % of GPU batch-decode throughput
TARGET_VS_FACENET_1080P = 10.0  # issue #7: >= 10x facenet-pytorch's per-image loop on 1080p frames
TARGET_VS_FACE_RECOGNITION = 1.5  # issue #7: CPU photos/s at least 1.5x face_recognition's, F1 as high


def _labels() -> dict:
    return json.loads((SHARED / "scenes" / "labels.json").read_text())["images"]


def f1_score(named: dict[str, set[str]], labels: dict) -> float:
    """F1 over (photo, person) pairs: ``named`` maps a scene photo's name to the people a pipeline named."""
    tp = fp = fn = 0
    for name, lab in labels.items():
        got, truth = named.get(name, set()), set(lab["known"])
        tp, fp, fn = tp + len(got & truth), fp + len(got - truth), fn + len(truth - got)
    return 2 * tp / max(1, 2 * tp + fp + fn)


def _timed(fn: Callable[[Path], set[str] | None], paths: list[Path],
           sync: Callable[[], None]) -> tuple[dict, dict[str, set[str]]]:
    """Apply ``fn`` to every photo; return ({rate: photos/s, cpu: CPU s/photo}, scene name -> people named)."""
    named = {}
    sync()
    t, cpu = time.perf_counter(), cpu_seconds()
    for p in paths:
        got = fn(p)
        if p.parent.name == "scenes":
            named[p.name] = got or set()
    sync()
    return {"rate": len(paths) / (time.perf_counter() - t), "cpu": (cpu_seconds() - cpu) / len(paths)}, named


def photo_set(name: str, root: Path = SET_ROOT) -> list[Path]:
    """The photos of a set (see the module docstring); the resized sets are made on first use.

    Raises:
        ValueError: an unknown set name.
    """
    if name not in SETS:
        raise ValueError(f"unknown photo set {name!r}; one of {SETS}")
    originals = shared_photos()
    if name == "shared":
        return originals
    out = []
    for src in originals:
        dst = root / name / src.parent.name / f"{src.stem}.jpg"
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            resized_copy(src, dst, name)
        out.append(dst)
    return out


def resized_copy(src: Path, dst: Path, kind: str) -> None:
    """Write ``src`` as a JPEG of about 12 megapixels (``12mp``) or fitted into a black 1920 x 1080 frame."""
    from PIL import Image

    from influvision.decode.images import load_image

    img = Image.fromarray(load_image(src, verify=False).pixels)
    w, h = img.size
    if kind == "12mp":
        f = (12e6 / (w * h)) ** 0.5
        img = img.resize((round(w * f), round(h * f)), Image.Resampling.LANCZOS)
    else:
        f = min(1920 / w, 1080 / h)
        frame = Image.new("RGB", (1920, 1080))
        nw, nh = round(w * f), round(h * f)
        frame.paste(img.resize((nw, nh), Image.Resampling.LANCZOS), ((1920 - nw) // 2, (1080 - nh) // 2))
        img = frame
    img.save(dst, quality=90)


def bench_decode_gpu(paths: list[Path], device: str) -> dict:
    from torchvision.io import decode_jpeg

    jpegs = [p for p in paths if p.suffix.lower() in (".jpg", ".jpeg")]
    data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in jpegs]
    sync = synchronizer(device)
    decode_jpeg(data[:16], device=device)  # warm-up: nvJPEG handles
    sync()
    t, cpu = time.perf_counter(), cpu_seconds()
    for i in range(0, len(data), 16):
        decode_jpeg(data[i:i + 16], device=device)
    sync()
    return {"rate": len(data) / (time.perf_counter() - t), "cpu": (cpu_seconds() - cpu) / len(data),
            "note": f"the {len(data)} JPEGs of {len(paths)} files, already in memory"}


def bench_decode(paths: list[Path], device: str) -> dict:
    from influvision.decode.loader import iter_decoded
    from influvision.engine import default_workers
    from influvision.sources import collect_media

    workers = default_workers()
    with collect_media(paths) as media:
        items = media.items
        t, cpu = time.perf_counter(), cpu_seconds()
        n = sum(1 for _ in iter_decoded(items, workers=workers, prefetch=max(16, 2 * workers)))
        return {"rate": n / (time.perf_counter() - t), "cpu": (cpu_seconds() - cpu) / n,
                "note": f"{workers} threads"}


def bench_influvision(paths: list[Path], device: str, gallery_path: str) -> dict:
    import influvision as iv

    gallery = iv.Gallery(gallery_path, device=device)
    dev = str(gallery.pipeline.device)  # models load before the clock starts
    iv.track(paths[-1:], gallery=gallery, device=dev, progress=False)  # warm-up
    sync = synchronizer(dev)
    sync()
    t, cpu = time.perf_counter(), cpu_seconds()
    report = iv.track(paths, gallery=gallery, device=dev, progress=False)
    sync()
    rate = len(paths) / (time.perf_counter() - t)
    cpu = (cpu_seconds() - cpu) / len(paths)
    named = {Path(m.path).name: {f.identity for f in m.faces if f.identity} for m in report.media
             if Path(m.path).parent.name == "scenes"}
    dups = report.counts.duplicates
    return {"rate": rate, "cpu": cpu, "f1": f1_score(named, _labels()), "duplicates": dups,
            "note": f"{dups} photo(s) skipped as duplicates of another" if dups else ""}


def _facenet_weights() -> Path | None:
    """influvision's cached facenet-vggface2 weights, or None (never downloads)."""
    from influvision.errors import InfluvisionError
    from influvision.weights import resolve_weights

    try:
        return resolve_weights("facenet-vggface2", download=False)
    except InfluvisionError:
        return None


def bench_facenet_readme(paths: list[Path], device: str) -> dict:
    from facenet_pytorch import MTCNN, InceptionResnetV1
    from PIL import Image

    weights = _facenet_weights()
    mtcnn = MTCNN(keep_all=True, device=device)
    resnet = InceptionResnetV1(pretrained=None).eval().to(device)
    if weights is not None:
        resnet.load_state_dict({k: v for k, v in torch.load(weights, weights_only=True).items()
                                if not k.startswith("logits")}, strict=False)

    @torch.inference_mode()
    def embed(p: Path) -> torch.Tensor | None:
        crops = mtcnn(Image.open(p).convert("RGB"))
        return None if crops is None else resnet(crops.to(device))

    known, names = [], []
    if weights is not None:
        for d in sorted((SHARED / "faces").iterdir()):
            for p in sorted(d.iterdir()):
                e = embed(p)
                if e is not None:
                    known.append(e[0])
                    names.append(d.name)
    refs = torch.stack(known) if known else None

    def named(p: Path) -> set[str]:
        e = embed(p)
        if e is None or refs is None:
            return set()
        dist = torch.cdist(e, refs)
        best = dist.argmin(dim=1)
        return {names[int(b)] for b, dmin in zip(best, dist.min(dim=1).values, strict=True) if dmin <= 1.1}

    embed(paths[-1])  # warm-up
    out, got = _timed(named, paths, synchronizer(device))
    if weights is not None:
        out["f1"] = f1_score(got, _labels())
        out["note"] = "vggface2 weights, distance <= 1.1 (not calibrated here)"
    else:
        out["note"] = "speed only: vggface2 weights not available offline, the network is untrained"
    return out


def bench_facenet_dlib(paths: list[Path], device: str, gallery_path: str) -> dict:
    from facenet_pytorch import MTCNN

    import influvision as iv
    from influvision.decode.images import load_image
    from influvision.faces.align import align_to_chip
    from influvision.match import MatchSettings, assign_identities, person_distances

    mtcnn = MTCNN(keep_all=True, device=device)
    gallery = iv.Gallery(gallery_path, device=device)
    pipe = gallery.pipeline
    index = gallery.index(pipe.device)
    settings = MatchSettings().resolved(pipe.embedder.threshold)

    def named(p: Path) -> set[str]:
        img = load_image(p, verify=False).pixels
        boxes, _, points = mtcnn.detect(img, landmarks=True)
        if boxes is None:
            return set()
        # One image and one face at a time, as its README does.
        embs = []
        for k in range(len(boxes)):
            lm = torch.tensor(np.asarray(points[k], dtype=np.float32))[None]
            embs.append(pipe.embedder.embed(align_to_chip([img], torch.zeros(1, dtype=torch.long), lm)))
        emb = torch.cat(embs).to(pipe.device)
        ident, _ = assign_identities(person_distances(emb, index), torch.zeros(len(emb), dtype=torch.long),
                                     torch.ones(len(emb), dtype=torch.bool, device=emb.device), settings)
        return {index.names[i] for i in ident.tolist() if i >= 0}

    named(paths[-1])  # warm-up
    out, got = _timed(named, paths, synchronizer(device))
    return {**out, "f1": f1_score(got, _labels())}


def bench_face_recognition(paths: list[Path]) -> dict:
    try:
        import face_recognition as fr
    except ImportError as e:
        return {"skip": f"face_recognition is not installed ({e}; dlib needs an 11-minute build: "
                        "benchmarks/install_face_recognition.sh)"}
    import dlib

    known, names = [], []
    for d in sorted((SHARED / "faces").iterdir()):
        for p in sorted(d.iterdir()):
            enc = fr.face_encodings(fr.load_image_file(p))
            if enc:
                known.append(enc[0])
                names.append(d.name)

    def named(p: Path) -> set[str]:
        img = fr.load_image_file(p)
        got = set()
        for enc in fr.face_encodings(img, fr.face_locations(img)):
            matches = fr.compare_faces(known, enc, tolerance=0.6)
            best = int(np.argmin(fr.face_distance(known, enc)))
            if matches[best]:
                got.add(names[best])
        return got

    named(paths[-1])  # warm-up
    out, got = _timed(named, paths, lambda: None)
    return {**out, "f1": f1_score(got, _labels()),
            "note": f"{len(known)} references; dlib {dlib.__version__}, "
                    + ("CUDA" if dlib.DLIB_USE_CUDA else "CPU") + f", {'AVX' if dlib.USE_AVX_INSTRUCTIONS else 'no AVX'}"}


def run_row(row: str, device: str, gallery_path: str, photos: str = "shared") -> dict:
    """Measure one row in this process; adds peak RSS (and peak CUDA memory for the torch rows)."""
    paths = photo_set(photos)
    if row in TORCH_ROWS and (skip := cuda_skip_reason(device)):
        return {"skip": skip}
    if row == "decode_gpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        return {"skip": "needs a CUDA device"}
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if row == "decode":
        out = bench_decode(paths, device)
    elif row == "decode_gpu":
        out = bench_decode_gpu(paths, device)
    elif row == "influvision":
        out = bench_influvision(paths, device, gallery_path)
    elif row == "facenet_readme":
        out = bench_facenet_readme(paths, device)
    elif row == "facenet_dlib":
        out = bench_facenet_dlib(paths, device, gallery_path)
    else:
        out = bench_face_recognition(paths)
    out["peak_rss_mib"] = peak_rss_mib()
    if row in TORCH_ROWS and device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _child(row: str, device: str, gallery: str, photos: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--row", row, "--device", device,
                           "--gallery", gallery, "--set", photos], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"skip": f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(results: dict[str, dict], device: str, n: int, photos: str = "shared") -> str:
    """The RESULTS.md section: table, ratios, target verdict."""
    iv_rate = results["influvision"].get("rate")
    lines = ["| pipeline | photos/s | influvision / this | CPU s/photo | scenes F1 | peak RSS | peak CUDA | note |",
             "|---|---|---|---|---|---|---|---|"]
    for key, label in ROWS.items():
        r = results[key]
        if "skip" in r:
            lines.append(f"| {label} | skipped | - | - | - | - | - | {r['skip']} |")
            continue
        ratio = f"{iv_rate / r['rate']:.2f}x" if iv_rate and key != "influvision" else "-"
        f1 = f"{r['f1']:.3f}" if "f1" in r else "-"
        cuda = f"{r['peak_cuda_mib']:.0f} MiB" if "peak_cuda_mib" in r else "-"
        lines.append(f"| {label} | {r['rate']:.2f} | {ratio} | {r['cpu']:.3f} | {f1} | {r['peak_rss_mib']:.0f} MiB | {cuda} | "
                     f"{r.get('note', '')} |")
    fr, iv = results["face_recognition"], results["influvision"]
    if "rate" in fr and "rate" in iv:
        speed, ok_f1 = iv["rate"] / fr["rate"], iv["f1"] >= fr["f1"]
        met = speed >= TARGET_VS_FACE_RECOGNITION and ok_f1
        target = (f"Target (>= {TARGET_VS_FACE_RECOGNITION}x face_recognition's photos/s at an F1 at least as high): "
                  f"{speed:.2f}x, F1 {iv['f1']:.3f} vs {fr['f1']:.3f}: **{'met' if met else 'not met'}**")
    else:
        target = "Target against face_recognition: not measured (a row was skipped)"
    if iv_rate and "rate" in results["decode"]:
        target += f"; influvision runs at {100 * iv_rate / results['decode']['rate']:.1f} % of the decode-only ceiling"
    if iv_rate and "rate" in results["decode_gpu"]:
        share = iv_rate / results["decode_gpu"]["rate"]
        target += (f"; {100 * share:.1f} % of GPU batch decode" + (
            f" (target on 12 MP archives: >= {100 * TARGET_VS_GPU_DECODE:.0f} %: "
            f"**{'met' if share >= TARGET_VS_GPU_DECODE else 'not met'}**)" if photos == "12mp" else ""))
    fn = results["facenet_readme"]
    if photos == "1080p" and iv_rate and "rate" in fn and device.startswith("cuda"):
        ratio = iv_rate / fn["rate"]
        target += (f"; {ratio:.1f}x facenet-pytorch's per-image loop on 1080p frames (target >= "
                   f"{TARGET_VS_FACENET_1080P:.0f}x: **{'met' if ratio >= TARGET_VS_FACENET_1080P else 'not met'}**)")
    cmd = ("python -m benchmarks.run" + (f" --device {device}" if device != "auto" else "")
           + (f" --set {photos}" if photos != "shared" else "") + " --write")
    what = "photos" if photos == "shared" else f"photos ({photos} set)"
    return (f"\n### Speed side by side ({time.strftime('%Y-%m-%d')}, {machine(_resolved(device))}, {n} {what})\n\n"
            f"Command: `{cmd}`; each row in its own process; other jobs shared the machine's cores\n\n"
            + "\n".join(lines) + f"\n\n{target}\n")


def _resolved(device: str) -> str:
    if cuda_skip_reason(device):
        return "cpu"
    from influvision.faces.embed import resolve_device

    return str(resolve_device(device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gallery", default="out/bench_gallery.db")
    ap.add_argument("--set", choices=SETS, default="shared", help="photo set (see above)")
    ap.add_argument("--write", action="store_true", help="append the rows to benchmarks/RESULTS.md")
    ap.add_argument("--row", choices=list(ROWS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = args.device if cuda_skip_reason(args.device) else _resolved(args.device)
    if args.row:
        print(json.dumps(run_row(args.row, device, args.gallery, args.set)))
        return
    import influvision as iv

    Path(args.gallery).parent.mkdir(parents=True, exist_ok=True)
    with iv.Gallery(args.gallery, device="cpu") as gallery:
        register_shared_faces(gallery)
    n = len(photo_set(args.set))  # makes a resized set once, before any row is timed
    results = {}
    for key, label in ROWS.items():
        results[key] = _child(key, device, args.gallery, args.set)
        r = results[key]
        print(f"{label}: " + (r["skip"] if "skip" in r else f"{r['rate']:.2f} photos/s"
                              + (f", F1 {r['f1']:.3f}" if "f1" in r else "")), flush=True)
    publish(render(results, args.device, n, args.set), args.write)


if __name__ == "__main__":
    main()
