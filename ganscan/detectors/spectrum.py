"""Fourier views of an image: log power spectrum and its azimuthal (radial) average.

GAN up-sampling leaves periodic peaks and a raised high-frequency tail (Durall et al. 2020); the
profile of one image is compared with the mean profile of real photographs.

Rebuild the shipped reference: ``python -m ganscan.detectors.spectrum DIR ganscan/data/real_spectrum.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BINS = 64
MAX_SIDE = 1024
REFERENCE = Path(__file__).resolve().parent.parent / "data" / "real_spectrum.json"


def grey_crop(img: Image.Image, max_side: int = MAX_SIDE) -> np.ndarray:
    g = np.asarray(img.convert("L"), dtype=np.float64)
    h, w = g.shape
    s = min(h, w, max_side)
    top, left = (h - s) // 2, (w - s) // 2
    return g[top:top + s, left:left + s]


def log_power_spectrum(img: Image.Image) -> np.ndarray:
    g = grey_crop(img)
    g = g - g.mean()
    win = np.outer(np.hanning(g.shape[0]), np.hanning(g.shape[1]))
    f = np.fft.fftshift(np.fft.fft2(g * win))
    return np.log1p(np.abs(f) ** 2)


def azimuthal_profile(img: Image.Image, bins: int = BINS) -> np.ndarray:
    """Mean log power in ``bins`` rings from DC to the Nyquist frequency, normalised to start at 1."""
    spec = log_power_spectrum(img)
    n = spec.shape[0]
    yy, xx = np.indices(spec.shape)
    r = np.hypot(yy - n // 2, xx - n // 2) / (n / 2)
    idx = np.clip((r * bins).astype(int), 0, bins)
    sums = np.bincount(idx.ravel(), spec.ravel(), minlength=bins + 1)[:bins]
    counts = np.bincount(idx.ravel(), minlength=bins + 1)[:bins]
    prof = sums / np.maximum(counts, 1)
    return prof / max(prof[0], 1e-9)


def load_reference() -> np.ndarray | None:
    try:
        return np.asarray(json.loads(REFERENCE.read_text())["profile"], dtype=np.float64)
    except (OSError, KeyError, ValueError):
        return None


def build_reference(folder: str, out: str, limit: int = 500) -> dict:
    from ganscan.data.decode import DecodeError, load_image

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())[:limit]
    profiles = []
    for f in files:
        try:
            img, _ = load_image(str(f))
        except DecodeError:
            continue
        if min(img.size) >= 64:
            profiles.append(azimuthal_profile(img))
    if not profiles:
        raise SystemExit(f"no usable images under {folder}")
    arr = np.stack(profiles)
    ref = {"profile": arr.mean(0).round(6).tolist(), "std": arr.std(0).round(6).tolist(), "images": len(profiles),
           "source": Path(folder).name, "bins": BINS,
           "command": f"python -m ganscan.detectors.spectrum {folder} {out}"}
    Path(out).write_text(json.dumps(ref, indent=1))
    return ref


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m ganscan.detectors.spectrum IMAGE_DIR OUT.json")
    r = build_reference(sys.argv[1], sys.argv[2])
    print(f"reference from {r['images']} images written to {sys.argv[2]}")
