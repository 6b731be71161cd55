"""The demo run by `make demo`: register people and brands, track an event folder, print and write the report.

Everything runs offline on the bundled example media (see ATTRIBUTION.md); outputs go to ./out/demo.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import influvision as iv

HERE = Path(__file__).resolve().parent
OUT = Path("out/demo")


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / "event.db"
    db.unlink(missing_ok=True)
    gallery = iv.Gallery(db)
    for person in sorted((HERE / "people").iterdir()):
        for status in gallery.add_person(person.name, sorted(person.iterdir())):
            print(f"register {person.name:<14} {status.status:<10} {Path(status.path).name} {status.message}")
    for logo in sorted((HERE / "brands").glob("*.png")):
        for status in gallery.add_brand(logo.stem, [logo]):
            print(f"register {logo.stem:<14} {status.status:<10} {Path(status.path).name} {status.message}")

    event = Path(os.path.relpath(HERE / "event"))  # report paths relative to where the demo runs
    report = iv.track([event], gallery=gallery, annotate_dir=OUT / "annotated", blur_unknown=True,
                      checkpoint=None)
    report.to_json(OUT / "report.json")
    report.to_csv(OUT / "csv")
    print()
    print(report.summary())
    print(f"\nreport: {OUT / 'report.json'}; tables: {OUT / 'csv'}; annotated media: {OUT / 'annotated'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
