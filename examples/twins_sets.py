#!/usr/bin/env python3
"""Held-out real-photo sets for calibrating and measuring the twin detector and the fusion.

    python examples/twins_sets.py --data ../shared/data --work runs/twins

From the held-out reals (``examples/train_twins.py``'s 10 % hash hold-out; never trained on):

- ``heldout/calib/<kind>`` and ``heldout/report/<kind>``: the hard negatives of ``heldout/negatives``
  (unchanged crops, 2x up-scaled, 0.5x down-scaled, JPEG 75) split in two halves by a hash of the
  name: the fusion's threshold is set on ``calib``, false-positive rates are reported on ``report``;
- ``heldout/fit/<family>`` and ``heldout/report/<family>``: the AutoGAN and ProGAN held-out families,
  halved the same way: the fusion's weights are fitted on ``fit`` (with ``twins-seen``), the table
  reports ``report``;
- ``heldout/full/lossless``: the held-out lossless photos, whole;
- ``heldout/full/web``: every held-out photo of 512 px or more, down-scaled 0.5x (Lanczos) and saved
  as JPEG 75, as sharing sites do;
- ``heldout/fit-jpeg/<set>``: JPEG copies of the fusion's fit sets (``twins-seen`` and ``fit/<family>``) at a
  quality of 70..95 drawn from a hash of the name (so both twins of a pair share it): fitting the fusion on
  them too weights its members by how they hold up under re-compression;
- ``heldout/full/camera``: the camera photos of ``camera-exif`` (none is a training image), whole; also
  halved into ``calib/camera`` (a calibration kind: whole camera JPEGs) and ``report/camera``;
- ``heldout/report/upscaled-frac`` and ``heldout/calib-frac/upscaled-frac``: every unchanged crop enlarged by a
  factor of 1.2-1.8 with bilinear, bicubic or Lanczos interpolation (factor and filter drawn from a hash of
  the name), halved as above. The calibration half is a folder of its own, so the shipped recipes'
  ``calib/`` stays as they built it (``docs/selection-rule-v9.txt``);
- ``heldout/report/upscaled2x-jpeg75`` and ``heldout/calib-u2j/upscaled2x-jpeg75``: every 2x up-scaled crop
  (``negatives/upscaled2x``) saved as JPEG 75, as a photo enlarged and then re-saved for the web is, halved as
  above (``docs/selection-rule-v10.txt``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_twins import sources  # noqa: E402


def half(name: str) -> str:
    return "calib" if int(hashlib.sha1(b"calib:" + name.encode()).hexdigest()[:8], 16) % 2 == 0 else "report"


def jpeg_quality(name: str) -> int:
    return 70 + int(hashlib.sha1(b"jpeg:" + Path(name).stem.encode()).hexdigest()[:8], 16) % 26


def jpeg_copies(src: Path, dst: Path) -> None:
    from ganscan.data.decode import load_image

    for cls in ("0_real", "1_fake"):
        (dst / cls).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / cls).iterdir()):
            out = dst / cls / (f.stem + ".jpg")
            if f.suffix.lower() in (".png", ".jpg", ".jpeg") and not out.exists():
                load_image(str(f))[0].save(out, "JPEG", quality=jpeg_quality(f.name))


def halved(held: Path, calib: str, name: str) -> Path:
    """HELD/CALIB for the calibration half of ``name`` (by ``half``), HELD/report for the other."""
    return held / (calib if half(name) == "calib" else "report")


def fractional_upscale(name: str) -> tuple[float, str]:
    """(factor in 1.2-1.8, filter: a key of the twins' ENLARGE_FILTERS) for a crop, drawn from a hash of its name."""
    from ganscan.detectors.train.twins import ENLARGE_FILTERS

    h = int(hashlib.sha1(b"frac:" + name.encode()).hexdigest()[:8], 16)
    names = list(ENLARGE_FILTERS)
    return 1.2 + 0.6 * (h % 1000) / 999, names[(h // 1000) % len(names)]


def write_fractional_upscales(unchanged: Path, held: Path) -> None:
    """Each crop of UNCHANGED enlarged by ``fractional_upscale``, into HELD/report or HELD/calib-frac."""
    from PIL import Image

    from ganscan.detectors.train.twins import ENLARGE_FILTERS

    for f in sorted(unchanged.iterdir()):
        out = halved(held, "calib-frac", f.name) / "upscaled-frac" / "0_real" / f.name
        if out.exists():
            continue
        factor, filt = fractional_upscale(f.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(f) as img:
            img.convert("RGB").resize((round(img.width * factor), round(img.height * factor)),
                                      ENLARGE_FILTERS[filt]).save(out.with_suffix(".png"))


def write_upscaled_jpegs(upscaled: Path, held: Path, quality: int = 75) -> None:
    """Each crop of UPSCALED saved as JPEG ``quality``, into HELD/report or HELD/calib-u2j."""
    from PIL import Image

    for f in sorted(upscaled.iterdir()):
        out = halved(held, "calib-u2j", f.name) / f"upscaled2x-jpeg{quality}" / "0_real" / (f.stem + ".jpg")
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(f) as img:
                img.convert("RGB").save(out, "JPEG", quality=quality)


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.symlink(os.path.abspath(src), dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--work", default="runs/twins")
    args = ap.parse_args()
    from PIL import Image

    from ganscan.data.datasets import list_images
    from ganscan.data.decode import load_image

    data, held = Path(args.data), Path(args.work) / "heldout"
    for kind_dir in sorted((held / "negatives").iterdir()):
        for f in sorted((kind_dir / "0_real").iterdir()):
            link(f, held / half(f.name) / kind_dir.name / "0_real" / f.name)
    write_fractional_upscales(held / "negatives" / "unchanged" / "0_real", held)
    write_upscaled_jpegs(held / "negatives" / "upscaled2x" / "0_real", held)
    for fam in ("autogan1", "progan"):
        for cls in ("0_real", "1_fake"):
            for f in sorted((held / fam / cls).iterdir()):
                if f.suffix.lower() in (".png", ".jpg", ".jpeg"):
                    link(f, halved(held, "fit", f.name) / fam / cls / f.name)
    for src in [held / "twins-seen", *sorted((held / "fit").iterdir())]:
        jpeg_copies(src, held / "fit-jpeg" / src.name)
    full = held / "full"
    for p in sources(data, held=True):
        if "photos-lossless" in p:
            link(Path(p), full / "lossless" / "0_real" / Path(p).name)
        out = full / "web" / "0_real" / (Path(p).stem + ".jpg")
        if out.exists():
            continue
        img = load_image(p)[0]
        if min(img.size) >= 512:
            out.parent.mkdir(parents=True, exist_ok=True)
            img.resize((img.width // 2, img.height // 2), Image.LANCZOS).save(out, "JPEG", quality=75)
    for p in list_images(str(data / "camera-exif")):
        link(Path(p), full / "camera" / "0_real" / Path(p).name)
        link(Path(p), held / half(Path(p).name) / "camera" / "0_real" / Path(p).name)
    for d in sorted(held.glob("*/*/0_real")):
        print(d, len(list(d.iterdir())))


if __name__ == "__main__":
    main()
