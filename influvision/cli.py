"""The ``influvision`` command: a thin layer over the same functions a Python user calls.

Exit codes: 0 success; 1 the run finished but some inputs were skipped or references refused;
2 a usage or setup error (bad arguments, damaged gallery, missing weights).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import InfluvisionError

EPILOG = """examples:
  influvision gallery add-person rick_astley rick1.jpg rick2.jpg --gallery event.db
  influvision gallery add-brand acme acme_logo.png --gallery event.db
  influvision gallery list --gallery event.db
  influvision track photos/ clip.mp4 --gallery event.db --out report.json --csv out/ --annotate out/annotated
"""


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
        a.add_argument("name", help="e.g. rick_astley (letters, digits, space, _ - . ')")
        a.add_argument("images", nargs="+", help="reference images" + (
            ": one clear face each" if kind == "person" else ": logo PNG (transparent) or JPG crop"))
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
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    t.add_argument("--sample-fps", type=float, default=10.0, help="video frames analysed per second (0: all)")
    t.add_argument("--checkpoint", metavar="FILE", help="record progress here; rerun with it to resume")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")

    w = sub.add_parser("weights", help="manage model weights (offline installs)")
    ws = w.add_subparsers(dest="action", required=True, metavar="ACTION")
    wa = ws.add_parser("add", help="install a weights file you obtained elsewhere")
    wa.add_argument("name", help="model name, e.g. facenet-vggface2")
    wa.add_argument("file")
    wa.add_argument("--sha256", help="expected sha256 of the file (required where the manifest has none)")
    ws.add_parser("list", help="list known models and whether their weights are available")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return _run(args)
    except InfluvisionError as e:
        print(f"influvision: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("influvision: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "gallery":
        from .gallery import Gallery

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
        from .gallery import Gallery

        if not Path(args.gallery).exists():
            print(f"influvision: error: gallery {args.gallery} does not exist; create it with "
                  "'influvision gallery add-person'", file=sys.stderr)
            return 2
        report = track(args.sources, Gallery(args.gallery, device=args.device), device=args.device,
                       sample_fps=args.sample_fps or None, annotate_dir=args.annotate,
                       blur_unknown=args.blur_unknown, checkpoint=args.checkpoint, batch_size=args.batch_size,
                       progress=not args.quiet)
        report.to_json(args.out)
        if args.csv:
            report.to_csv(args.csv)
        if not args.quiet:
            print(report.summary())
            print(f"\nreport written to {args.out}")
        return 1 if report.skipped else 0
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


if __name__ == "__main__":
    sys.exit(main())
