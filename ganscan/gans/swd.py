"""Sliced Wasserstein distance on Laplacian pyramids (Karras et al. 2018, appendix D).

For each pyramid level (the finest first, down to 16x16), 128 random 7x7 neighbourhoods per image are
taken as 147-dimensional descriptors, normalised per colour channel (each set by its own mean and
standard deviation), and the two sets are compared with the sliced Wasserstein distance: the mean, over
random unit directions, of the 1-D Wasserstein-1 distance between the projected sets. Values are
reported x 1e3, as in the paper. Small is similar: the coarse (16x16) level sees overall structure and
colour, the fine levels texture and detail. Pure torch, deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_K = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
_KERNEL = (_K[:, None] * _K[None, :]).expand(3, 1, 5, 5).contiguous()


def _blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), _KERNEL.to(x) * gain, groups=3)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    up = torch.zeros(n, c, h * 2, w * 2, dtype=x.dtype, device=x.device)
    up[:, :, ::2, ::2] = x
    return _blur(up, gain=4.0)


def laplacian_pyramid(x: torch.Tensor, min_res: int = 16) -> list[torch.Tensor]:
    """Band-pass levels, finest first; the last level is the low-pass image at ``min_res``."""
    levels = []
    cur = x
    while cur.shape[-1] > min_res:
        down = pyr_down(cur)
        levels.append(cur - pyr_up(down))
        cur = down
    levels.append(cur)
    return levels


def level_resolutions(resolution: int, min_res: int = 16) -> list[int]:
    out, r = [], resolution
    while r > min_res:
        out.append(r)
        r //= 2
    out.append(r)
    return out


def _descriptors(level: torch.Tensor, per_image: int, patch: int, gen: torch.Generator) -> torch.Tensor:
    n, c, h, w = level.shape
    ys = torch.randint(0, h - patch + 1, (n, per_image), generator=gen)
    xs = torch.randint(0, w - patch + 1, (n, per_image), generator=gen)
    off = torch.arange(patch)
    rows = (ys[:, :, None] + off)[:, :, :, None].expand(n, per_image, patch, patch)
    cols = (xs[:, :, None] + off)[:, :, None, :].expand(n, per_image, patch, patch)
    flat = (rows * w + cols).reshape(n, 1, -1).expand(n, c, -1)  # (n, c, per_image * patch * patch)
    picked = level.reshape(n, c, h * w).gather(2, flat).reshape(n, c, per_image, patch * patch)
    return picked.permute(0, 2, 1, 3).reshape(n * per_image, c, patch * patch)


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    mean = desc.mean(dim=(0, 2), keepdim=True)
    std = desc.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    return ((desc - mean) / std).reshape(desc.shape[0], -1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: int = 512, repeats: int = 4,
                       gen: torch.Generator | None = None, chunk: int = 128) -> float:
    """Mean 1-D Wasserstein-1 distance between the projections of ``a`` and ``b`` (rows are samples)."""
    if a.shape[0] != b.shape[0]:
        m = min(a.shape[0], b.shape[0])
        a, b = a[:m], b[:m]
    total, count = 0.0, 0
    for _ in range(repeats):
        dirs = torch.randn(a.shape[1], directions, generator=gen)
        dirs /= dirs.norm(dim=0, keepdim=True)
        for i in range(0, directions, chunk):
            d = dirs[:, i:i + chunk]
            # numpy's sort along the contiguous axis is several times faster than torch.sort on a CPU
            pa = np.sort((d.T @ a.T).numpy(), axis=1)
            pb = np.sort((d.T @ b.T).numpy(), axis=1)
            total += float(np.abs(pa - pb).mean(axis=1).sum())
            count += d.shape[1]
    return total / count


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def swd(real: torch.Tensor, fake: torch.Tensor, seed: int = 0, per_image: int = 128, patch: int = 7,
        directions: int = 512, repeats: int = 4, min_res: int = 16, chunk_images: int = 256) -> dict:
    """SWD x 1e3 per pyramid level between two image sets (N, 3, R, R) (uint8, or float of one scale).

    Returns ``{"levels": {"64": ..., "32": ..., "16": ...}, "avg": ...}``. Sets of different sizes are cut
    to the smaller; use equal sets for comparable numbers (the estimate has a bias that shrinks as N grows).
    """
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"image sets differ in shape: {tuple(real.shape[1:])} vs {tuple(fake.shape[1:])}")
    if real.shape[-1] < patch:
        raise ValueError("images are smaller than the descriptor patch")
    n = min(real.shape[0], fake.shape[0])
    real, fake = real[:n], fake[:n]
    res = real.shape[-1]
    names = [str(r) for r in level_resolutions(res, min(min_res, res))]
    out = {}
    descs = []
    for images in (real, fake):
        gen = torch.Generator().manual_seed(seed)
        per_level = [[] for _ in names]
        for i in range(0, n, chunk_images):
            pyr = laplacian_pyramid(_as_float(images[i:i + chunk_images]), min(min_res, res))
            for k, level in enumerate(pyr):
                per_level[k].append(_descriptors(level, per_image, patch, gen))
        descs.append([_normalise(torch.cat(d)) for d in per_level])
    for k, name in enumerate(names):
        gen = torch.Generator().manual_seed(seed + 7919 * (k + 1))
        out[name] = 1e3 * sliced_wasserstein(descs[0][k], descs[1][k], directions, repeats, gen)
    return {"levels": out, "avg": sum(out.values()) / len(out), "images": n}
