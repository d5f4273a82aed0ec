"""Sampling a generator into image files: deterministic per (seed, index), batched, bounded memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganscan.errors import GanscanError
from ganscan.gans.images import grid, to_uint8
from ganscan.gans.registry import LoadedGenerator

FORMATS = {"png": ".png", "jpg": ".jpg"}
GRID_MAX = 64


def latents(latent_size: int, seed: int, start: int, count: int) -> torch.Tensor:
    """Latent vectors of images ``start .. start+count-1`` for ``seed``: image i's latent depends only on
    (seed, i), so it is the same whatever -n or --batch-size."""
    # numpy's SeedSequence takes the pair (seed, i) whole; torch's CPU generator would keep only 32 bits
    rows = [np.random.default_rng([seed, start + j]).standard_normal(latent_size, dtype=np.float32)
            for j in range(count)]
    return torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, latent_size)


def sample(gen: LoadedGenerator, seed: int, start: int, count: int) -> np.ndarray:
    """uint8 (count, R, R, 3) images."""
    z = latents(gen.latent_size, seed, start, count)
    with torch.inference_mode():
        return to_uint8(gen.model(z))


def file_name(label: str, seed: int, index: int, fmt: str) -> str:
    return f"{label}-seed{seed}-{index:06d}{FORMATS[fmt]}"


@dataclass
class GenerateResult:
    files: list[Path]  # the first few (all when few), for the report
    count: int
    out_dir: Path
    grid: Path | None
    seconds: float


def generate_images(gen: LoadedGenerator, n: int, out_dir: str | os.PathLike, seed: int = 0, fmt: str = "png",
                    quality: int = 95, batch_size: int = 64, grid_path: str | os.PathLike | None = None,
                    force: bool = False, progress=None, label: str | None = None) -> GenerateResult:
    """Write ``n`` images to ``out_dir`` named ``LABEL-seedS-000000.png``; a grid of the first 64 if asked.

    Memory stays bounded by one batch whatever ``n``. Existing files are refused unless ``force``.
    """
    import time

    if fmt not in FORMATS:
        raise GanscanError(f"unsupported format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GanscanError(f"{out} exists and is not a folder")
    label = label or gen.label
    if not force:
        for i in range(n):
            if (out / file_name(label, seed, i, fmt)).exists():
                raise GanscanError(f"{out / file_name(label, seed, i, fmt)} already exists",
                                   hint="pass --force to overwrite, another --seed or another -o")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    grid_tiles = []
    first = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        imgs = sample(gen, seed, start, count)
        for j in range(count):
            path = out / file_name(label, seed, start + j, fmt)
            im = Image.fromarray(imgs[j])
            if fmt == "jpg":
                im.save(path, quality=quality, subsampling=0 if quality >= 90 else 2)
            else:
                im.save(path)
            if len(first) < 16:
                first.append(path)
        if grid_path is not None and len(grid_tiles) < GRID_MAX:
            grid_tiles.extend(imgs[:GRID_MAX - len(grid_tiles)])
        if progress is not None:
            progress.update(advance=count)
    gpath = None
    if grid_path is not None:
        gpath = Path(grid_path)
        gpath.parent.mkdir(parents=True, exist_ok=True)
        grid(np.stack(grid_tiles), nrow=min(8, len(grid_tiles))).save(gpath)
    return GenerateResult(first, n, out, gpath, time.monotonic() - t0)
