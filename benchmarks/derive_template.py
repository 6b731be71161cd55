"""Re-derive the MTCNN -> dlib-chip template (influvision.faces.align.DLIB_MTCNN_TEMPLATE) and measure it.

For each of the 12 dlib fixture faces: run facenet-pytorch ``MTCNN(keep_all=True)`` on the source image, take
the detection that overlaps dlib's detector rect most, and map its 5 points into dlib's chip frame through the
inverse of the fixture's exact ``chip_to_image_affine_2x3``. The template is the mean over faces.

If the dlib embedder port is importable, it also reports, for several candidate templates, the cosine between
descriptors of chips aligned from MTCNN points and dlib's own descriptors, with the template built
leave-one-out (each face aligned with the mean of the other 11) where the candidate is derived from the faces.

Run: ``.venv/bin/python benchmarks/derive_template.py``
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from influvision.faces.align import DLIB_MTCNN_TEMPLATE, align_to_chip

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIX = SHARED / "fixtures" / "dlib_resnet"

# Published starting points (research notes): dlib-port.md 6.1 and face-baselines.md.
DLIB_PORT_61 = [[47.03, 45.74], [100.02, 46.42], [75.05, 75.66], [48.10, 103.31], [98.49, 103.18]]
FACE_BASELINES = [[46.8, 44.5], [101.4, 45.3], [75.0, 77.7], [48.7, 103.5], [98.3, 103.6]]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def mtcnn_points(images: list[np.ndarray], rects: list[list[float]]) -> np.ndarray:
    """(F, 5, 2) MTCNN landmarks of the detection matching each fixture face, in source pixels."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    out = []
    for img, rect in zip(images, rects, strict=True):
        boxes, _, points = mtcnn.detect(Image.fromarray(img), landmarks=True)
        best = max(range(len(boxes)), key=lambda i: _iou(boxes[i], np.asarray(rect, dtype=float)))
        out.append(points[best])
    return np.stack(out).astype(np.float64)


def to_chip_frame(points: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """Map (F, 5, 2) source points through the inverse of each (F, 2, 3) chip->image affine."""
    lin, t = affines[:, :, :2], affines[:, :, 2]
    return np.einsum("fij,fkj->fki", np.linalg.inv(lin), points - t[:, None, :])


def main() -> None:
    torch.set_num_threads(2)
    entries = json.loads((FIX / "index.json").read_text())["entries"]
    images = [np.array(Image.open(FIX / e["source_copy"]).convert("RGB")) for e in entries]
    affines = np.array([e["chip_to_image_affine_2x3"] for e in entries], dtype=np.float64)
    points = mtcnn_points(images, [e["detector_rect_ltrb"] for e in entries])
    in_chip = to_chip_frame(points, affines)
    mean, std = in_chip.mean(0), in_chip.std(0)
    print("MTCNN points in dlib's 150-px chip frame, mean over 12 faces (std):")
    for name, m, s in zip(("left eye", "right eye", "nose", "mouth left", "mouth right"), mean, std, strict=True):
        print(f"  {name:12s} ({m[0]:7.2f}, {m[1]:7.2f})   std ({s[0]:.2f}, {s[1]:.2f})")

    try:
        from influvision.faces.embed import load_embedder

        embedder = load_embedder("dlib-resnet-v1")
    except Exception as err:  # the port may not exist yet: the template itself is still printed above
        print(f"no embedder ({err!r}): skipping the cosine measurement")
        return
    ref = np.load(FIX / "descriptors.npy").astype(np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    idx = torch.arange(len(entries))
    lm = torch.from_numpy(points).float()

    def cosines(templates: np.ndarray) -> np.ndarray:
        chips = torch.cat([
            align_to_chip([images[i]], torch.zeros(1, dtype=torch.long), lm[i:i + 1],
                          template=torch.from_numpy(templates[i]).float())
            for i in idx.tolist()
        ])
        with torch.no_grad():
            d = embedder.embed(chips).double().numpy()
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return (d * ref).sum(1)

    loo = np.stack([np.delete(in_chip, i, axis=0).mean(0) for i in range(len(entries))])
    candidates = {
        "dlib-port.md 6.1": np.repeat(np.array(DLIB_PORT_61)[None], len(entries), 0),
        "face-baselines.md": np.repeat(np.array(FACE_BASELINES)[None], len(entries), 0),
        "MTCNN mean, leave-one-out": loo,
        "MTCNN mean, all 12 (in-sample)": np.repeat(mean[None], len(entries), 0),
        "DLIB_MTCNN_TEMPLATE (shipped)": np.repeat(DLIB_MTCNN_TEMPLATE.double().numpy()[None], len(entries), 0),
    }
    print("\ncosine(descriptor of MTCNN-aligned chip, dlib descriptor):")
    for name, tm in candidates.items():
        c = cosines(tm)
        print(f"  {name:32s} mean {c.mean():.5f}  min {c.min():.5f}")


if __name__ == "__main__":
    main()
