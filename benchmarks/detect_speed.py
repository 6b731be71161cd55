"""Face detection speed and agreement: influvision's batched MTCNN against facenet-pytorch's MTCNN.

Images: the 7 labelled scenes and 20 face photos (every 5th of faces/, sorted) from ../shared/data.
Rows, all on the same images:
  facenet-pytorch    MTCNN(keep_all=True).detect, one image per call (it cannot batch different sizes)
  ours, per image    FaceDetector.detect([image]), one image per call
  ours, one batch    FaceDetector.detect(all 27 images) in one call
  ours, GPU          the same on CUDA when a device is present (skipped with the reason otherwise)
All at full resolution (max_side=5000) so that the outputs are comparable; agreement is reported for the
default zero-padded border and for border="stretch" (facenet-pytorch's crop handling).

    python -m benchmarks.detect_speed [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

from influvision.faces.detect import FaceDetector
from influvision.types import Faces

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FULL_SIZE = 5000  # above every test image (4600 px), so that nothing is downscaled


def load_images() -> tuple[list[str], list[np.ndarray]]:
    scenes = sorted((SHARED / "scenes").glob("*.jpg"))
    faces = sorted(p for p in (SHARED / "faces").glob("*/*") if p.suffix in (".jpg", ".png"))[::5][:20]
    paths = scenes + faces
    names = [str(p.relative_to(SHARED)) for p in paths]
    return names, [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def best_of(repeat: int, fn: Callable[[], object], sync: Callable[[], None] = lambda: None) -> float:
    """Fastest of ``repeat`` runs, seconds."""
    best = float("inf")
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def facenet_faces(mtcnn: object, images: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for img in images:
        boxes, _ = mtcnn.detect(img)  # type: ignore[attr-defined]
        out.append(np.zeros((0, 4), np.float32) if boxes is None else boxes.astype(np.float32))
    return out


def agreement(ref: list[np.ndarray], ours: Faces) -> str:
    """Images with the same face count; reference faces without a match at IoU >= 0.9; over the matched
    faces, the worst box corner deviation in pixels."""
    same, worst, unmatched, n = 0, 0.0, 0, 0
    for i, boxes in enumerate(ref):
        mine = ours.for_image(i).boxes.cpu()
        same += len(mine) == len(boxes)
        n += len(boxes)
        if len(mine) == 0 or len(boxes) == 0:
            unmatched += len(boxes)
            continue
        best = box_iou(torch.from_numpy(boxes), mine).max(dim=1)
        matched = best.values >= 0.9
        unmatched += int((~matched).sum())
        if matched.any():
            dev = (mine[best.indices[matched]] - torch.from_numpy(boxes)[matched]).abs().max()
            worst = max(worst, float(dev))
    return (f"same face count on {same}/{len(ref)} images; {unmatched} of {n} reference faces unmatched at "
            f"IoU 0.9; worst box deviation of the matched {worst:.3f} px")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from facenet_pytorch import MTCNN  # the reference, only here and in tests

    names, images = load_images()
    n = len(images)
    print(f"{n} images ({sum(i.shape[0] * i.shape[1] for i in images) / 1e6:.1f} Mpx), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {platform.processor() or platform.machine()}")

    mtcnn = MTCNN(keep_all=True, device="cpu")
    ours = FaceDetector("cpu", max_side=FULL_SIZE)
    stretch = FaceDetector("cpu", max_side=FULL_SIZE, border="stretch")
    ref = facenet_faces(mtcnn, images)  # also warms up
    batch = ours.detect(images)
    per_image = Faces.cat([ours.detect([img]) for img in images], image_offsets=list(range(n)))

    # Interleaved repeats, best of each: the rows see the same machine load (CPUs here are shared).
    t_ref = t_one = t_batch = float("inf")
    for _ in range(args.repeat):
        t_ref = min(t_ref, best_of(1, lambda: facenet_faces(mtcnn, images)))
        t_one = min(t_one, best_of(1, lambda: [ours.detect([img]) for img in images]))
        t_batch = min(t_batch, best_of(1, lambda: ours.detect(images)))
    print(f"{'facenet-pytorch MTCNN, CPU':34s} {1000 * t_ref / n:8.1f} ms/image")
    print(f"{'ours, one image per call, CPU':34s} {1000 * t_one / n:8.1f} ms/image  ({t_ref / t_one:.2f}x)")
    print(f"{'ours, one batch of all, CPU':34s} {1000 * t_batch / n:8.1f} ms/image  ({t_ref / t_batch:.2f}x)")
    if torch.cuda.is_available():
        gpu = FaceDetector("cuda", max_side=FULL_SIZE)
        on_gpu = [torch.from_numpy(img.copy()).cuda() for img in images]
        gpu.detect(on_gpu)
        sync = torch.cuda.synchronize
        t_gpu = best_of(args.repeat, lambda: gpu.detect(on_gpu), sync)
        t_gpu_one = best_of(args.repeat, lambda: [gpu.detect([img]) for img in on_gpu], sync)
        name = torch.cuda.get_device_name()
        print(f"{'ours, one batch of all, GPU':34s} {1000 * t_gpu / n:8.1f} ms/image  ({name})")
        print(f"{'ours, one image per call, GPU':34s} {1000 * t_gpu_one / n:8.1f} ms/image")
        print("  GPU vs CPU batch:", agreement([b.cpu().numpy() for b in
                                                 (batch.for_image(i).boxes for i in range(n))], gpu.detect(on_gpu)))
    else:
        print(f"{'ours, GPU':34s} skipped: no CUDA device")

    print("agreement with facenet-pytorch:")
    print("  border='stretch':", agreement(ref, stretch.detect(images)))
    print("  border='zero' (default):", agreement(ref, batch))
    print("  one batch vs one image per call:", agreement([per_image.for_image(i).boxes.numpy() for i in range(n)],
                                                           batch))


if __name__ == "__main__":
    main()
