#!/usr/bin/env python3
"""How much of each image's energy lies in the top octave, where up-sampling traces live.

    python examples/band_energy.py ../shared/data/val/cyclegan ../shared/data/val/stargan128 runs/twins/heldout/report/translate-seen

For every folder (its ``0_real`` and ``1_fake`` classes when it has them, else its images) this prints the mean share
of the luminance power spectrum beyond half the Nyquist frequency (``max(|fy|, |fx|) > 0.5``, the mean removed)
and the same after one JPEG pass at quality 75 (``--jpeg``). A generator's up-sampling leaves its trace there; a
detector that reads traces (the NPR member, the spectrum member) has nothing to read in a set whose top octave
holds almost no energy, or the same energy in both classes. White noise holds 0.75, the same noise enlarged 2x
by bicubic interpolation about 0.09. It reads the first ``--limit`` files of each class, sorted by name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def top_octave_share(img: Image.Image) -> float:
    """Share of the luminance power spectrum (mean removed) beyond half the Nyquist frequency on either axis."""
    a = np.asarray(img.convert("L"), dtype=np.float64)
    power = np.abs(np.fft.fft2(a - a.mean())) ** 2
    total = power.sum()
    if total <= 0:
        return 0.0
    fy = np.abs(np.fft.fftfreq(a.shape[0]))[:, None] * 2   # 1.0 at Nyquist
    fx = np.abs(np.fft.fftfreq(a.shape[1]))[None, :] * 2
    return float(power[np.maximum(fy, fx) > 0.5].sum() / total)


def classes(folder: Path) -> dict[str, Path]:
    found = {c: folder / c for c in ("0_real", "1_fake") if (folder / c).is_dir()}
    return found or {"images": folder}


def measure(folder: Path, limit: int, quality: int | None) -> dict[str, dict]:
    from ganscan.data.augment import jpeg_roundtrip
    from ganscan.data.datasets import list_images
    from ganscan.data.decode import DecodeError, load_image

    out = {}
    for name, path in classes(folder).items():
        files = sorted(list_images(str(path)))[:limit]
        clean, jpeg, bad = [], [], 0
        for f in files:
            try:
                img = load_image(f)[0]
            except (DecodeError, OSError, ValueError):   # one unreadable file never stops the measurement; it is counted
                bad += 1
                continue
            clean.append(top_octave_share(img))
            if quality:
                jpeg.append(top_octave_share(jpeg_roundtrip(img, quality)))
        out[name] = {"files": len(clean), "unreadable": bad, "share": float(np.mean(clean)) if clean else None,
                     "share_jpeg": float(np.mean(jpeg)) if jpeg else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--limit", type=int, default=200, help="files per class (first by name)")
    ap.add_argument("--jpeg", type=int, default=75, help="quality of the extra JPEG pass (0: none)")
    args = ap.parse_args()
    print(f"| folder | class | files | top-octave share | after JPEG {args.jpeg} |" if args.jpeg else
          "| folder | class | files | top-octave share |")
    print("|---|---|---|---|---|" if args.jpeg else "|---|---|---|---|")
    for folder in args.folders:
        if not folder.is_dir():
            print(f"error: {folder}: not a folder", file=sys.stderr)
            continue
        for name, r in measure(folder, args.limit, args.jpeg or None).items():
            share = "n/a" if r["share"] is None else f"{r['share']:.4f}"
            row = f"| {folder} | {name} | {r['files']}" + (f" ({r['unreadable']} unreadable)" if r["unreadable"] else "")
            row += f" | {share} |"
            if args.jpeg:
                row += " n/a |" if r["share_jpeg"] is None else f" {r['share_jpeg']:.4f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
