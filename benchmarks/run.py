"""Side-by-side speed and accuracy on the same files, in one run.

    python -m benchmarks.run [--device auto] [--write]

Rows (photos = ../shared/data/scenes + ../shared/data/faces):
  decode-only          Pillow decode of every photo: the ceiling for this input
  influvision          track() end to end (decode, detect, align, embed, match, tally)
  facenet-pytorch      its README's way: MTCNN(keep_all=True) + per-face crop loop, one image at a time,
                       then the same dlib embedder and matcher on its crops (its own InceptionResnetV1
                       weights cannot be downloaded here)
  face_recognition     HOG + dlib ResNet per image, when the package is installed (see
                       benchmarks/install_face_recognition.sh); skipped with the reason otherwise

Accuracy for each row: F1 over (scene photo, registered person) pairs on the labelled scenes, every
identity of faces/ registered.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

import influvision as iv
from benchmarks.common import SHARED, publish, register_shared_faces
from influvision.decode.images import load_image
from influvision.faces.pipeline import FacePipeline
from influvision.match import MatchSettings, assign_identities, person_distances


def _photos() -> list[Path]:
    return sorted((SHARED / "scenes").glob("*.jpg")) + sorted(p for p in (SHARED / "faces").glob("*/*"))


def _f1(named: dict[str, set[str]], labels: dict) -> float:
    tp = fp = fn = 0
    for name, lab in labels.items():
        got, truth = named.get(name, set()), set(lab["known"])
        tp, fp, fn = tp + len(got & truth), fp + len(got - truth), fn + len(truth - got)
    return 2 * tp / max(1, 2 * tp + fp + fn)


def bench_decode(paths: list[Path]) -> float:
    t = time.perf_counter()
    for p in paths:
        load_image(p, verify=False)
    return len(paths) / (time.perf_counter() - t)


def bench_influvision(paths: list[Path], gallery: iv.Gallery, device: str, labels: dict) -> tuple[float, float]:
    t = time.perf_counter()
    report = iv.track(paths, gallery=gallery, device=device, progress=False)
    rate = len(paths) / (time.perf_counter() - t)
    named = {Path(m.path).name: {f.identity for f in m.faces if f.identity} for m in report.media
             if Path(m.path).parent.name == "scenes"}
    return rate, _f1(named, labels)


def bench_facenet(paths: list[Path], gallery: iv.Gallery, device: str, labels: dict) -> tuple[float, float]:
    from facenet_pytorch import MTCNN

    from influvision.faces.align import align_to_chip

    mtcnn = MTCNN(keep_all=True, device=device)
    pipe: FacePipeline = gallery.pipeline
    index = gallery.index(device)
    settings = MatchSettings().resolved(pipe.embedder.threshold)
    named = {}
    t = time.perf_counter()
    for p in paths:
        img = load_image(p, verify=False).pixels
        boxes, probs, points = mtcnn.detect(img, landmarks=True)
        if boxes is None:
            continue
        # One image and one face at a time, as its README does.
        embs = []
        for k in range(len(boxes)):
            chip = align_to_chip([img], torch.zeros(1, dtype=torch.long), torch.tensor(np.asarray(points[k], dtype=np.float32))[None])
            embs.append(pipe.embedder.embed(chip))
        emb = torch.cat(embs).to(device)
        ident, _ = assign_identities(person_distances(emb, index), torch.zeros(len(emb), dtype=torch.long),
                                     torch.ones(len(emb), dtype=torch.bool, device=emb.device), settings)
        if p.parent.name == "scenes":
            named[p.name] = {index.names[i] for i in ident.tolist() if i >= 0}
    rate = len(paths) / (time.perf_counter() - t)
    return rate, _f1(named, labels)


def bench_face_recognition(paths: list[Path], labels: dict) -> tuple[float, float] | str:
    try:
        import face_recognition  # noqa: F401
    except ImportError:
        return "face_recognition is not installed (dlib needs an 11-minute build: benchmarks/install_face_recognition.sh)"
    import face_recognition as fr

    known, names = [], []
    for d in sorted((SHARED / "faces").iterdir()):
        for p in sorted(d.iterdir()):
            enc = fr.face_encodings(fr.load_image_file(p))
            if enc:
                known.append(enc[0])
                names.append(d.name)
    named = {}
    t = time.perf_counter()
    for p in paths:
        img = fr.load_image_file(p)
        encs = fr.face_encodings(img, fr.face_locations(img))
        got = set()
        for e in encs:
            d = fr.face_distance(known, e)
            if len(d) and d.min() <= 0.6:
                got.add(names[int(np.argmin(d))])
        if p.parent.name == "scenes":
            named[p.name] = got
    return len(paths) / (time.perf_counter() - t), _f1(named, labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gallery", default="out/bench_gallery.db")
    ap.add_argument("--write", action="store_true", help="append the rows to benchmarks/RESULTS.md")
    args = ap.parse_args()
    device = str(iv.faces.embed.resolve_device(args.device))
    labels = json.loads((SHARED / "scenes" / "labels.json").read_text())["images"]
    paths = _photos()
    Path(args.gallery).parent.mkdir(parents=True, exist_ok=True)
    gallery = iv.Gallery(args.gallery, device=device)
    register_shared_faces(gallery)
    rows = [("decode-only (Pillow)", f"{bench_decode(paths):.1f}", "-")]
    rate, f1 = bench_influvision(paths, gallery, device, labels)
    rows.append(("influvision track()", f"{rate:.2f}", f"{f1:.3f}"))
    rate_fn, f1_fn = bench_facenet(paths, gallery, device, labels)
    rows.append(("facenet-pytorch MTCNN + per-face loop (same embedder)", f"{rate_fn:.2f}", f"{f1_fn:.3f}"))
    fr = bench_face_recognition(paths, labels)
    rows.append(("face_recognition (HOG + dlib)", *((f"{fr[0]:.2f}", f"{fr[1]:.3f}") if isinstance(fr, tuple)
                                                    else ("skipped", fr))))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    machine = (f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
               + (torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"))
    table = "\n".join(["| pipeline | photos/s | scenes F1 |", "|---|---|---|"]
                      + [f"| {a} | {b} | {c} |" for a, b, c in rows])
    text = (f"\n### Speed side by side ({time.strftime('%Y-%m-%d')}, {machine}, {len(paths)} photos)\n\n"
            f"Command: `python -m benchmarks.run --write`; peak RSS {peak:.0f} MiB; "
            f"influvision / facenet-pytorch loop = {rate / rate_fn:.2f}x\n\n{table}\n")
    publish(text, args.write)


if __name__ == "__main__":
    main()
