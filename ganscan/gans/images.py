"""Image folders for GAN training and writing generated images (grids, files)."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganscan.errors import DataError

MIN_IMAGES = 16


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 (N, 3, R, R)
    files: list[str]
    resolution: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)
    held_out: int = 0


def is_held_out(relpath: str, holdout: float) -> bool:
    """A file's split depends only on its path inside the folder, never on listing order."""
    if holdout <= 0:
        return False
    h = int(hashlib.sha1(relpath.encode("utf-8", "surrogateescape")).hexdigest()[:8], 16)
    return h / 2 ** 32 < holdout


def load_image_folder(folder: str, resolution: int, holdout: float = 0.0, split: str = "train",
                      min_images: int = MIN_IMAGES, limit: int | None = None) -> ImageSet:
    """Decode every image under ``folder`` (safely: unreadable files are skipped and counted) into a
    uint8 tensor at ``resolution`` x ``resolution``. Non-square images are centre-cropped, other sizes
    resized (box filter down, bicubic up) and non-RGB modes converted; ``notes`` says how many.

    ``holdout``: the fraction of files (chosen by a hash of the path) kept out of ``split="train"``;
    ``split="heldout"`` returns only those, ``split="all"`` everything.
    """
    from ganscan.data.decode import DecodeError, load_image
    from ganscan.data.discover import discover

    if split not in ("train", "heldout", "all"):
        raise ValueError(split)
    if not os.path.isdir(folder):
        raise DataError(f"not a folder: {folder}", hint="pass a folder of training images")
    chosen = []
    held = 0
    for p in (f.path for f in discover([folder], recursive=True)):
        rel = os.path.relpath(p, folder)
        out = is_held_out(rel, holdout)
        held += out
        if split == "all" or (split == "heldout") == out:
            chosen.append(p)
    if limit is not None:
        chosen = chosen[:limit]
    arrays, files, skipped = [], [], []
    sizes: Counter = Counter()
    modes: Counter = Counter()
    resized = cropped = 0
    for p in chosen:
        try:
            mode = _peek_mode(p)
            im, _info = load_image(p)
        except DecodeError as exc:
            skipped.append((p, str(exc)))
            continue
        if mode and mode != "RGB":
            modes[mode] += 1
        sizes[im.size] += 1
        if im.size != (resolution, resolution):
            resized += 1
            cropped += im.size[0] != im.size[1]
            im = square_resize(im, resolution)
        arrays.append(np.asarray(im, dtype=np.uint8))
        files.append(p)
    what = {"train": "training", "heldout": "held-out", "all": ""}[split]
    if len(files) < min_images:
        extra = f" ({len(skipped)} unreadable skipped)" if skipped else ""
        raise DataError(f"{folder}: {len(files)} readable {what + ' ' if what else ''}images{extra}; at least "
                        f"{min_images} are needed", hint="point at a folder with more images")
    notes = []
    if skipped:
        notes.append(f"{len(skipped)} unreadable file(s) skipped, e.g. {os.path.basename(skipped[0][0])}: "
                     f"{skipped[0][1]}")
    if len(sizes) > 1 or resized:
        common = ", ".join(f"{w}x{h}" for (w, h), _ in sizes.most_common(3))
        crop = f"; {cropped} non-square centre-cropped" if cropped else ""
        notes.append(f"{resized} of {len(files)} images resized to {resolution}x{resolution} "
                     f"(sizes found: {common}{', ...' if len(sizes) > 3 else ''}{crop})")
    if modes:
        kinds = ", ".join(f"{m} x{n}" for m, n in modes.most_common())
        notes.append(f"{sum(modes.values())} image(s) not RGB ({kinds}): converted to RGB")
    tensor = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(tensor, files, resolution, skipped, notes, held)


def _peek_mode(path: str) -> str | None:
    try:
        with Image.open(path) as im:
            return im.mode
    except Exception:  # noqa: BLE001 - only a hint for the note; load_image reports real failures
        return None


def square_resize(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    if im.size[0] == size:
        return im
    resample = Image.Resampling.BOX if im.size[0] > size else Image.Resampling.BICUBIC
    return im.resize((size, size), resample)


def to_float(batch_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return batch_u8.float().div_(127.5).sub_(1.0)


def to_uint8(batch: torch.Tensor) -> np.ndarray:
    """float [-1, 1] (N, 3, H, W) -> uint8 (N, H, W, 3), clamped."""
    x = ((batch.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> Image.Image:
    """uint8 (N, H, W, 3) -> one image of tiles, ``nrow`` per row."""
    n, h, w, _ = images.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = images[i]
    return Image.fromarray(out)


def save_grid(batch: torch.Tensor, path: str | os.PathLike, nrow: int | None = None, upscale: int = 1) -> Path:
    arr = to_uint8(batch)
    if upscale > 1:
        arr = arr.repeat(upscale, axis=1).repeat(upscale, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(arr, nrow).save(path)
    return path
