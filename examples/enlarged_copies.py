#!/usr/bin/env python3
"""Copies of held-out sets enlarged and then saved as JPEG, both classes alike: a fake blown up for a web page beside
its real twin treated the same way.

    python examples/enlarged_copies.py --work runs/twins -o runs/twins/enlarged-jpeg90
    ganscan evaluate -m ganscan-fusion-v40 -m ganscan-fusion-v10 runs/twins/enlarged-jpeg90/*

``examples/twins_table.py --perturb bicubic:2`` measures enlarged copies saved losslessly, and ``--perturb jpeg:90``
compressed ones; this writes the two in a row (``--scale``, bicubic, then JPEG at ``--quality``), for the first
``--limit`` files of each class of each set in ``--sets`` (held-out report sets under ``WORK/heldout``), into
``OUT/SET/0_real`` and ``OUT/SET/1_fake``. A file that does not decode is skipped and counted. Nothing under ``val/``
is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SETS = ("twins-shuffle", "report/autogan1", "report/translate-seen", "report/translate-unet", "report/translate-gan")


def write_copies(held: Path, out: Path, sets=SETS, scale: float = 2.0, quality: int = 90, limit: int = 300) -> dict:
    """{set: (files written, files skipped)}."""
    from PIL import Image

    from ganscan.data.augment import rescale

    done = {}
    for name in sets:
        written = skipped = 0
        for cls in ("0_real", "1_fake"):
            src = held / name / cls
            if not src.is_dir():
                raise SystemExit(f"error: {src} does not exist (python examples/train_twins.py --stage heldout makes it)")
            dst = out / Path(name).name / cls
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted(p for p in src.iterdir() if p.is_file())[:limit]:
                try:
                    with Image.open(f) as im:
                        img = im.convert("RGB")
                except OSError:
                    skipped += 1
                    continue
                big = rescale(img, scale, Image.BICUBIC)   # as ``--perturb bicubic:SCALE`` enlarges
                big.save(dst / f"{f.stem}.jpg", format="JPEG", quality=quality)
                written += 1
        done[name] = (written, skipped)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--scale", type=float, default=2.0)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--limit", type=int, default=300, help="files per class and set")
    args = ap.parse_args()
    if not 1 < args.scale <= 4:
        sys.exit("error: --scale must be in (1, 4]")
    if not 1 <= args.quality <= 100:
        sys.exit("error: --quality must be 1-100")
    for name, (n, bad) in write_copies(args.work / "heldout", args.output, SETS, args.scale, args.quality,
                                       args.limit).items():
        print(f"{name}: {n} copies" + (f", {bad} files that do not decode skipped" if bad else ""))


if __name__ == "__main__":
    main()
