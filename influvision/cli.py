"""The ``influvision`` command: a thin layer over the same functions a Python user calls.

Exit codes: 0 success; 1 the run finished but some inputs were skipped or analysed only in
part (truncated videos), or references refused; 2 a usage or setup error (bad arguments, damaged gallery,
missing weights); 3 an internal error (a defect); 130 interrupted (Ctrl-C); 141 the reader of its output went
away (``| head``); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sqlite3
import sys
from pathlib import Path

from .errors import InfluvisionError
from .files import writable_folder

EPILOG = """examples:
  influvision gallery add-person rick_astley rick1.jpg rick2.jpg --gallery event.db
  influvision gallery add-brand acme acme_logo.png --gallery event.db
  influvision gallery list --gallery event.db
  influvision logos train --gallery event.db --backgrounds photos/ --epochs 10
  influvision track photos/ clip.mp4 --gallery event.db --out report.json --csv out/ --annotate out/annotated
"""


def _whole_number(text: str, least: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _batch_size(text: str) -> int | str:
    return text if text == "auto" else _whole_number(text, 1, "a positive integer or 'auto'")


def _sample_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected frames per second >= 0 (0: every frame), got {text!r}")
    return value


def _max_side(text: str) -> int:
    return _whole_number(text, 12, "a whole number of pixels >= 12")


def _positive(text: str) -> int:
    return _whole_number(text, 1, "a positive whole number")


def _not_negative(text: str) -> int:
    return _whole_number(text, 0, "a whole number >= 0")


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of minutes > 0, got {text!r}")
    return value


def _writable_file(path: str, what: str) -> None:
    """Refuse, before any work, an output file that cannot be written (its folder is made if missing)."""
    p = Path(path)
    if p.is_dir():
        raise InfluvisionError(f"{what} {path} is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InfluvisionError(f"{what} {path}: cannot make its folder {p.parent} ({e.strerror or e})") from None
    if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise InfluvisionError(f"{what} {path}: not writable (permission denied)")


def _existing_gallery(path: str, hint: str) -> None:
    if not Path(path).exists():
        raise InfluvisionError(f"gallery {path} does not exist; {hint}")
    if Path(path).is_file() and Path(path).stat().st_size == 0:  # never turned into a gallery by reading it
        raise InfluvisionError(f"{path} is an empty file, not a gallery; {hint}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="influvision", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Count how often registered influencers (and brand logos) appear in event photos and "
                    "videos. First register people and brands in a gallery file, then track media against it.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("gallery", help="register people and brands (a SQLite file)")
    gs = g.add_subparsers(dest="action", required=True, metavar="ACTION")
    for kind in ("person", "brand"):
        a = gs.add_parser(f"add-{kind}", help=f"register a {kind} from reference images")
        a.add_argument("name", help="e.g. rick_astley (letters, digits, space, _ - . ')" if kind == "person"
                       else "e.g. acme (lowercase letters, digits, _ and -)")
        a.add_argument("images", nargs="+", help="reference images" + (
            ": one clear face each" if kind == "person" else ": logo PNG (transparent), JPG crop or SVG"))
        a.add_argument("--gallery", "-g", required=True, help="gallery file (created if missing)")
        a.add_argument("--device", default="auto")
        r = gs.add_parser(f"remove-{kind}", help=f"remove a registered {kind}")
        r.add_argument("name")
        r.add_argument("--gallery", "-g", required=True)
    ls = gs.add_parser("list", help="list registered people and brands")
    ls.add_argument("--gallery", "-g", required=True)

    t = sub.add_parser("track", help="find registered people and brands in photos and videos")
    t.add_argument("sources", nargs="+", help="photos, videos, folders, glob patterns, zip/tar archives")
    t.add_argument("--gallery", "-g", required=True, help="gallery file made with 'influvision gallery'")
    t.add_argument("--out", "-o", default="report.json", help="JSON report path (default: report.json)")
    t.add_argument("--csv", metavar="DIR", help="also write CSV tables into DIR")
    t.add_argument("--annotate", metavar="DIR", help="write copies with boxes and names into DIR")
    t.add_argument("--blur-unknown", action="store_true", help="blur unregistered people in annotated copies")
    t.add_argument("--logo-text", action="store_true",
                   help="also read brand names with OCR (needs influvision[ocr]; slower, see docs/logos.md)")
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    t.add_argument("--sample-fps", type=_sample_fps, default=10.0, help="video frames analysed per second (default 10; 0: every frame; keep it at 3 or more for "
                   "measurement, docs/video.md)")
    t.add_argument("--max-side", type=_max_side, default=1600, metavar="PX",
                   help="photos and frames longer than this are searched for faces on a copy this long, so faces "
                        "under 20 px x long side / PX are missed there (default 1600; larger is slower)")
    t.add_argument("--checkpoint", metavar="FILE", help="record progress here; rerun with it to resume")
    t.add_argument("--batch-size", type=_batch_size, default="auto",
                   help="photos per device batch, or 'auto' (from free GPU memory; 8 on the CPU)")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")

    lg = sub.add_parser("logos", help="train a logo detector for the gallery's brands (needs influvision[yolo])")
    lgs = lg.add_subparsers(dest="action", required=True, metavar="ACTION")
    tr = lgs.add_parser("train", help="train a YOLO model on synthetic composites of the registered logos")
    tr.add_argument("--gallery", "-g", required=True, help="gallery with registered brands; the model is stored there")
    tr.add_argument("--backgrounds", nargs="+", metavar="DIR", default=[],
                    help="photos/videos (files or folders) to composite onto; default: procedural backgrounds. "
                         "Do not use the photos you validate on")
    tr.add_argument("--epochs", type=_positive, default=10, help="training epochs (default 10)")
    tr.add_argument("--minutes", type=_minutes, help="train for this long instead of --epochs (epochs fitted to it)")
    tr.add_argument("--images", type=_positive, default=600, help="synthetic pictures (default 600; 10%% kept for validation)")
    tr.add_argument("--imgsz", type=_positive, default=320, help="training image size, a multiple of 32 (default 320)")
    tr.add_argument("--batch", type=_positive, default=16, help="training batch size (default 16; 64 suits a large GPU)")
    tr.add_argument("--workers", type=_not_negative, default=0,
                    help="processes rendering and loading training pictures (0: one per CPU core)")
    tr.add_argument("--seed", type=int, default=0, help="seed of the synthetic set and training (default 0)")
    tr.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    tr.add_argument("--validation", metavar="LABELS.json",
                    help="labelled photos (logos/scenes labels.json format) to compare the model and the matcher on")

    w = sub.add_parser("weights", help="manage model weights (offline installs)")
    ws = w.add_subparsers(dest="action", required=True, metavar="ACTION")
    wa = ws.add_parser("add", help="install a weights file you obtained elsewhere")
    wa.add_argument("name", help="model name, e.g. facenet-vggface2")
    wa.add_argument("file")
    wa.add_argument("--sha256", help="expected sha256 of the file; where the manifest has none, the first file "
                                     "added (a loadable state dict) is pinned, and replacing it needs its sha256")
    ws.add_parser("list", help="list known models and whether their weights are available")
    return p


class _Terminated(BaseException):
    """SIGTERM (a scheduler's time limit, ``docker stop``, ``kill``), raised in the main thread so that finally
    blocks and context managers run: extracted archive members are deleted, the checkpoint is closed."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return _main(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except _Terminated:
        print("influvision: terminated" + (" (rerun with the same --checkpoint to go on)" if getattr(args, "checkpoint", None)
                                           else ""), file=sys.stderr)
        return 143
    except InfluvisionError as e:
        print(f"influvision: error: {e}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as e:  # damaged or read-only after opening (the gallery checks itself on open)
        files = [f for f in (getattr(args, "gallery", None), getattr(args, "checkpoint", None)) if f]
        print(f"influvision: error: database file {' or '.join(files)}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("influvision: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so Python's exit flush cannot fail
        return 141  # 128 + SIGPIPE, as a shell reports a tool killed by it; 1 would read "some inputs skipped"
    except OSError as e:  # a file that cannot be read or written (a full disk, a folder gone)
        print(f"influvision: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a defect: exit 1 would read as "finished, some inputs skipped"
        if args.verbose:
            logging.getLogger(__name__).exception("internal error")
        print(f"influvision: internal error: {type(e).__name__}: {e}"
              + ("" if args.verbose else " (run with -v for the traceback)"), file=sys.stderr)
        return 3


def _run(args: argparse.Namespace) -> int:
    if args.command == "gallery":
        from .gallery import Gallery

        if args.action not in ("add-person", "add-brand"):
            _existing_gallery(args.gallery, "only 'gallery add-person' and 'add-brand' create one")
        with Gallery(args.gallery, device=getattr(args, "device", "auto")) as gal:
            if args.action in ("add-person", "add-brand"):
                add = gal.add_person if args.action == "add-person" else gal.add_brand
                statuses = add(args.name, args.images)
                for s in statuses:
                    print(f"{s.status:<18} {s.path}" + (f"  {s.message}" if s.message else ""))
                return 0 if all(s.ok for s in statuses) else 1
            if args.action in ("remove-person", "remove-brand"):
                (gal.remove_person if args.action == "remove-person" else gal.remove_brand)(args.name)
                return 0
            people, brands = gal.people(), gal.brands()
            print(f"people ({len(people)}):")
            for name in people:
                print(f"  {name}  ({len(gal.references(name))} references)")
            print(f"brands ({len(brands)}):")
            for name in brands:
                print(f"  {name}  ({len(gal.references(name))} references)")
            return 0
    if args.command == "track":
        from .api import track

        _existing_gallery(args.gallery, "create it with 'influvision gallery add-person'")
        _writable_file(args.out, "--out")
        if args.checkpoint:
            _writable_file(args.checkpoint, "--checkpoint")
        for folder, flag in ((args.csv, "--csv"), (args.annotate, "--annotate")):
            if folder:
                writable_folder(folder, flag)
        report = track(args.sources, args.gallery, device=args.device,
                       sample_fps=args.sample_fps, annotate_dir=args.annotate,
                       blur_unknown=args.blur_unknown, checkpoint=args.checkpoint, batch_size=args.batch_size,
                       logo_text=args.logo_text, max_side=args.max_side, progress=not args.quiet)
        report.to_json(args.out)
        if args.csv:
            report.to_csv(args.csv)
        if not args.quiet:
            print(report.summary())
            print(f"\nreport written to {args.out}")
        incomplete = len(report.skipped) + report.counts.partly_analysed
        if incomplete and args.quiet:
            print(f"influvision: {len(report.skipped)} skipped, {report.counts.partly_analysed} partly analysed "
                  f"(see {args.out})", file=sys.stderr)
        return 1 if incomplete else 0
    if args.command == "logos":
        return _train_logos(args)
    if args.command == "weights":
        from . import weights

        if args.action == "add":
            path = weights.add_weights(args.name, args.file, sha256=args.sha256)
            print(f"installed {args.name} -> {path}")
            return 0
        for line in weights.describe():
            print(line)
        return 0
    return 2


def _train_logos(args: argparse.Namespace) -> int:
    """Train, compare with the matcher on validation data, store the model with ``use`` from :func:`use_trained`."""
    import tempfile

    from .faces.embed import resolve_device
    from .gallery import Gallery
    from .logos.detect import LogoDetector
    from .logos.evaluate import (
        best_min_score,
        evaluate,
        read_labelled_photos,
        read_yolo_split,
        sweep_min_score,
    )
    from .logos.synth import load_backgrounds
    from .logos.trained import (
        CALIBRATION_SCORES,
        DEFAULT_MIN_SCORE,
        TrainedLogoDetector,
        require_ultralytics,
        train_detector,
    )

    require_ultralytics()
    _existing_gallery(args.gallery, "register brands with 'influvision gallery add-brand'")
    device = str(resolve_device(args.device))
    with Gallery(args.gallery, device=device) as gal:
        if gal.read_only:
            print(f"influvision: error: {args.gallery} cannot be written, so a trained detector could not be "
                  "stored in it", file=sys.stderr)
            return 2
        refs_key = gal.brand_refs_key()
        refs = gal.brand_references()
        if gal.brand_refs_key() != refs_key:
            print(f"influvision: error: the brands of {args.gallery} changed while they were read; run again",
                  file=sys.stderr)
            return 2
        if not refs:
            print(f"influvision: error: {args.gallery} has no registered brand", file=sys.stderr)
            return 2
        backgrounds = load_backgrounds(args.backgrounds) if args.backgrounds else []
        with tempfile.TemporaryDirectory(prefix="influvision-logos-") as work:
            res = train_detector(refs, backgrounds=backgrounds, n_images=args.images, epochs=args.epochs,
                                 imgsz=args.imgsz, batch=args.batch, seed=args.seed, device=device,
                                 work_dir=work, workers=args.workers, max_minutes=args.minutes,
                                 progress=lambda m: print(m, flush=True))
            print(f"trained in {res.train_s:.0f} s (synthetic set {res.synth_s:.0f} s)")
            sets = {"synthetic validation split": read_yolo_split(Path(work) / "synth", "val", res.brands)}
        trained = TrainedLogoDetector(res.blob, device=device)
        calibration: dict = {"min_score": DEFAULT_MIN_SCORE, "calibrated_on": None}
        if args.validation:
            labelled = sets[f"labelled photos {args.validation}"] = read_labelled_photos(args.validation,
                                                                                          res.brands)
            sweep = sweep_min_score(trained, labelled, CALIBRATION_SCORES)
            best = best_min_score(sweep)
            calibration = {"min_score": DEFAULT_MIN_SCORE if best is None else best,
                           "calibrated_on": None if best is None else str(args.validation),
                           "sweep": {str(t): sc.as_dict() for t, sc in sweep.items()}}
            print("trained model alone on the labelled photos, by score threshold:")
            for t, sc in sweep.items():
                print(f"  {t:.2f}: {sc}")
        trained.min_score = calibration["min_score"]
        print(f"score threshold {trained.min_score:.2f} ("
              + ("best F1 on the labelled photos)" if calibration["calibrated_on"] else
                 "default: the model found no labelled logo at any threshold)" if args.validation else
                 "default; give --validation to calibrate)"))
        matcher = LogoDetector(refs, device=device)
        fused = LogoDetector(refs, device=device, trained=trained)
        metrics: dict[str, dict] = {}
        for name, photos in sets.items():
            t, m, f = evaluate(trained, photos), evaluate(matcher, photos), evaluate(fused, photos)
            metrics[name] = {"trained": t.as_dict(), "matcher": m.as_dict(), "matcher+trained": f.as_dict(),
                             "photos": len(photos)}
            print(f"{name} ({len(photos)} photos), IoU 0.5:\n  trained: {t}\n  matcher: {m}\n"
                  f"  matcher+trained (what tracking runs): {f}")
        # The labelled photos, when given, decide; they are real, the synthetic split is not.
        use, verdict = use_trained(list(sets)[-1], metrics[list(sets)[-1]])
        gal.save_detector(res.blob.data, res.blob.sha256, brands=res.brands,
                          metrics={"validation": metrics, "synthetic": res.metrics, **calibration}, use=use,
                          refs_key=refs_key)
        print(f"stored the trained detector in {args.gallery} (sha256 {res.blob.sha256[:12]}); {verdict}")
    return 0


def use_trained(name: str, scores: dict[str, dict]) -> tuple[bool, str]:
    """Whether tracking should run the trained model beside the matcher, from their scores on the validation
    set ``name``, and the sentence that says why: only when the pair's F1 beats the matcher's on labelled logos."""
    if scores["matcher"]["gt"] == 0:
        return False, (f"the {name} holds no labelled logo, so nothing was compared and the matcher stays in use; "
                       "give --validation with labelled photos, or more --images")
    if scores["matcher+trained"]["f1"] > scores["matcher"]["f1"]:
        return True, "it measured better than the matcher and will be used"
    return False, "the matcher measured better, so the matcher stays in use"


if __name__ == "__main__":
    sys.exit(main())
