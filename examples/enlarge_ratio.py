#!/usr/bin/env python3
"""Does an image say that it was enlarged? The band-power ratio of rule v41 (C47), measured on our own held-out data.

    python examples/enlarge_ratio.py --work runs/twins            # 80 files per kind, about a minute

Rule v41 (``docs/selection-rule-v41.txt``) would have scored an image that reads as enlarged 2x by its half-size read
alone. Its test: e(x) = P_top / P_mid, the luminance power (mean removed, 2-D Hann window, centre crop of at most
256x256) where max(|fx|, |fy|) > 1/4 cycle per pixel over that of the octave below. This prints the 5th, 50th and
95th percentile of e(x) for held-out reals of several kinds (``heldout/calib``, ``calib-frac``, ``calib-u2j``) and
for fit-set fakes, clean, as JPEG 90 copies and enlarged 2x (bicubic) and then saved as JPEG 90 (in memory). A gate
works only if the enlarged kinds sit below every native kind. Nothing under ``val/`` is read.
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


def main() -> None:
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("--limit", type=int, default=80)
    args = ap.parse_args()
    held = heldout(args.work)
    print("| kind | as | files | e(x): 5th pct | median | 95th pct |\n|---|---|---|---|---|---|")
    for folder, how in KINDS:
        files = sorted(f for f in (held / folder).rglob("*") if f.is_file() and f.suffix != ".csv")[:args.limit]
        vals = []
        for f in files:
            try:
                vals.append(enlargement_ratio(np.asarray(transformed(Image.open(f).convert("RGB"), how))))
            except OSError:
                continue
        if vals:
            p5, p50, p95 = np.percentile(vals, [5, 50, 95])
            print(f"| {folder} | {how} | {len(vals)} | {p5:.3f} | {p50:.3f} | {p95:.3f} |")


if __name__ == "__main__":
    main()
