#!/usr/bin/env python3
"""Does an image say that it was enlarged? The band-power ratio of rule v41 (C47), measured on our own held-out data.

    python examples/enlarge_ratio.py --work runs/twins            # 80 files per kind, about a minute
    python examples/enlarge_ratio.py --work runs/twins --dct      # the same test in the JPEG file's own 8x8 blocks

Rule v41 (``docs/selection-rule-v41.txt``) would have scored an image that reads as enlarged 2x by its half-size read
alone. Its test: e(x) = P_top / P_mid, the luminance power (mean removed, 2-D Hann window, centre crop of at most
256x256) where max(|fx|, |fy|) > 1/4 cycle per pixel over that of the octave below. This prints the 5th, 50th and
95th percentile of e(x) for held-out reals of several kinds (``heldout/calib``, ``calib-frac``, ``calib-u2j``) and
for fit-set fakes, clean, as JPEG 90 copies and enlarged 2x (bicubic) and then saved as JPEG 90 (in memory). A gate
works only if the enlarged kinds sit below every native kind. ``--dct`` (a diagnostic before rule v51) measures the
same bands where a JPEG pass adds no top-octave energy, in the 8x8 DCT blocks of the file's own grid: the luminance
power of coefficients with max(u, v) >= 4 over those with max(u, v) in 2-3, for JPEG files only (as given, or the
JPEG 90 copies). Nothing under ``val/`` is read.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from two_scale import heldout  # noqa: E402


def enlargement_ratio(arr: np.ndarray, crop: int = 256) -> float:
    """e(x) of an (H,W,3) uint8 image (``inf`` for a flat one)."""
    h, w = min(arr.shape[0], crop) // 2 * 2, min(arr.shape[1], crop) // 2 * 2
    top, left = (arr.shape[0] - h) // 2, (arr.shape[1] - w) // 2
    a = arr[top:top + h, left:left + w].astype(np.float32)
    y = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    y = (y - y.mean()) * np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.rfft2(y)) ** 2
    band = np.maximum(np.abs(np.fft.fftfreq(h))[:, None], np.abs(np.fft.rfftfreq(w))[None, :])
    mid = float(power[(band > 0.125) & (band <= 0.25)].sum())
    return float(power[band > 0.25].sum()) / mid if mid > 0 else math.inf


def block_ratio(arr: np.ndarray) -> float:
    """The ``--dct`` test of an (H,W,3) uint8 image decoded from a JPEG: the mean power of its luminance's 8x8 DCT
    coefficients (blocks on the file's grid) with max(u, v) >= 4 over that of those with max(u, v) in 2-3."""
    from ganscan.data.provenance import _dct_matrix   # the orthonormal DCT-II the perceptual hash uses

    h, w = arr.shape[0] // 8 * 8, arr.shape[1] // 8 * 8
    a = arr[:h, :w].astype(np.float64)
    y = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114 - 128.0
    d = _dct_matrix(8)
    power = ((d @ y.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3) @ d.T) ** 2).mean(axis=(0, 1))
    band = np.maximum(np.arange(8)[:, None], np.arange(8)[None, :])
    mid = float(power[(band >= 2) & (band < 4)].sum())
    return float(power[band >= 4].sum()) / mid if mid > 1e-9 else math.inf   # a flat image: rounding error only


def transformed(img, how: str):
    """``img`` as is ("none"), as a JPEG 90 copy ("jpeg90") or enlarged 2x (bicubic) then JPEG 90 ("enlarged-jpeg90")."""
    from PIL import Image

    if how == "enlarged-jpeg90":
        img = img.resize((img.width * 2, img.height * 2), Image.BICUBIC)
    if how != "none":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        buf.seek(0)
        img = Image.open(buf).convert("RGB")
    return img


KINDS = (("calib/unchanged", "none"), ("calib/camera", "none"), ("calib/jpeg75", "none"),
         ("calib/upscaled2x", "none"), ("calib-frac", "none"), ("calib-u2j", "none"),
         ("calib/unchanged", "enlarged-jpeg90"), ("fit/autogan1/1_fake", "none"), ("fit/autogan1/1_fake", "jpeg90"),
         ("fit/autogan1/1_fake", "enlarged-jpeg90"), ("twins-seen/1_fake", "none"), ("twins-seen/1_fake", "jpeg90"),
         ("fit-translate/translate-seen/1_fake", "none"), ("fit-translate/translate-seen/1_fake", "enlarged-jpeg90"))
DCT_KINDS = (("calib/camera", "none"), ("calib/jpeg75", "none"), ("calib-u2j", "none"), ("calib/unchanged", "enlarged-jpeg90"),
             ("twins-seen/0_real", "jpeg90"), ("twins-seen/1_fake", "none"), ("twins-seen/1_fake", "jpeg90"),
             ("fit/autogan1/1_fake", "jpeg90"), ("fit-translate/translate-seen/1_fake", "none"))


def main() -> None:
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("--dct", action="store_true", help="the test in the JPEG file's own 8x8 DCT blocks (JPEG files only)")
    args = ap.parse_args()
    held = heldout(args.work)
    print(f"| kind | as | files | {'DCT ratio' if args.dct else 'e(x)'}: 5th pct | median | 95th pct |\n"
          "|---|---|---|---|---|---|")
    for folder, how in DCT_KINDS if args.dct else KINDS:
        files = sorted(f for f in (held / folder).rglob("*") if f.is_file() and f.suffix != ".csv")[:args.limit]
        vals = []
        for f in files:
            try:
                img = Image.open(f)
                if args.dct and how == "none" and img.format != "JPEG":
                    continue   # the blocks of a lossless file are not a JPEG's
                arr = np.asarray(transformed(img.convert("RGB"), how))
            except OSError:
                continue
            vals.append(block_ratio(arr) if args.dct else enlargement_ratio(arr))
        if vals:
            p5, p50, p95 = np.percentile(vals, [5, 50, 95])
            print(f"| {folder} | {how} | {len(vals)} | {p5:.3f} | {p50:.3f} | {p95:.3f} |")


if __name__ == "__main__":
    main()
