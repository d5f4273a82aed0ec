"""The mixed scan-benchmark corpus: from ../shared/data when present, synthesised otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _smooth(rng, w, h):
    small = rng.integers(0, 256, (max(2, h // 64), max(2, w // 64), 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    noise = rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))


def build_corpus(dst: Path, n_12mp=4, n_1mp=24, n_png=24, seed=0) -> dict:
    """12 MP and 1 MP JPEGs, 256-1024 px PNGs and a few hostile files."""
    rng = np.random.default_rng(seed)
    dst.mkdir(parents=True, exist_ok=True)
    photos = sorted((SHARED / "camera-exif").glob("*.jpg")) if SHARED.exists() else []
    pngs = sorted((SHARED / "train" / "real" / "photos-lossless").glob("*.png")) if SHARED.exists() else []
    for i in range(n_12mp):
        if photos:
            base = Image.open(photos[i % len(photos)]).convert("RGB").resize((4000, 3000), Image.BICUBIC)
        else:
            base = _smooth(rng, 4000, 3000)
        base.save(dst / f"big{i:02d}.jpg", quality=92)
    for i in range(n_1mp):
        if photos:
            im = Image.open(photos[(i + 7) % len(photos)]).convert("RGB")
            im = im.resize((1152, 864), Image.BICUBIC) if im.width * im.height < 900_000 else im.crop((0, 0, 1152, 864))
        else:
            im = _smooth(rng, 1152, 864)
        im.save(dst / f"mid{i:02d}.jpg", quality=90)
    for i in range(n_png):
        if pngs:
            shutil.copy(pngs[i % len(pngs)], dst / f"png{i:02d}.png")
        else:
            side = int(rng.integers(256, 1025))
            _smooth(rng, side, int(rng.integers(256, 1025))).save(dst / f"png{i:02d}.png")
    (dst / "empty.jpg").write_bytes(b"")
    (dst / "trunc.jpg").write_bytes((dst / "mid00.jpg").read_bytes()[:5000])
    (dst / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
    files = sorted(dst.iterdir())
    return {"files": files, "bytes": sum(f.stat().st_size for f in files)}
