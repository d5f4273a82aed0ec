"""The one preprocessing path shared by scan, evaluate and training validation.

Images are never resized for the main read (resampling destroys the traces detectors rely on): a centre crop,
the full image, or tiles, then normalisation. A tiles detector with ``half_tiles`` also reads the image reduced 2x
(``half_filter``, box or Lanczos: a generator's trace in an enlarged image comes back to the top octave), and its
views are then a ``ScaleViews`` pair.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ganscan.detectors.registry import TILE_POOLS, DetectorConfig


def center_crop_array(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to ``size`` at torchvision's offsets (round half to even, as CNNDetection and UFD crop);
    sides shorter than ``size`` are padded symmetrically (mirror)."""
    h, w = arr.shape[:2]
    top = max(0, round((h - size) / 2))
    left = max(0, round((w - size) / 2))
    arr = arr[top:top + size, left:left + size]
    h, w = arr.shape[:2]
    if h < size or w < size:
        ph, pw = size - h, size - w
        arr = np.pad(arr, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
    return arr


def tile_origins(h: int, w: int, size: int, max_tiles: int, align: int = 1, stride: int = 0) -> list[tuple[int, int]]:
    """Top-left corners of ``tile_array``'s tiles in an image of ``h`` x ``w`` (both at least ``size``)."""
    step = size
    if stride and 0 < stride < size and (h // size) * (w // size) < max_tiles:
        step = stride
    ny, nx = (h - size) // step + 1, (w - size) // step + 1
    coords = [(y, x) for y in range(ny) for x in range(nx)]
    if len(coords) > max_tiles:
        idx = np.linspace(0, len(coords) - 1, max_tiles).round().astype(int)
        coords = [coords[i] for i in idx]
    # centre the tile grid
    oy, ox = (h - (ny - 1) * step - size) // 2, (w - (nx - 1) * step - size) // 2
    if align > 1:
        oy, ox = oy - oy % align, ox - ox % align
    return [(oy + y * step, ox + x * step) for y, x in coords]


def tile_array(arr: np.ndarray, size: int, max_tiles: int, align: int = 1, stride: int = 0) -> np.ndarray:
    """``size`` tiles evenly spread over the image (at most ``max_tiles``): non-overlapping, or, when that grid holds
    fewer than ``max_tiles`` and ``stride`` is set, from the grid at ``stride`` (overlapping). The grid is centred,
    its origin rounded down to a multiple of ``align`` (8: tiles on the JPEG block grid of the image's origin)."""
    h, w = arr.shape[:2]
    if h < size or w < size:
        return center_crop_array(arr, size)[None]
    return np.stack([arr[y:y + size, x:x + size] for y, x in tile_origins(h, w, size, max_tiles, align, stride)])


# pixels a 2x Lanczos resize reads beyond an output box's edge (support 3 x scale 2 = 6, and one for rounding)
_LANCZOS2_REACH = 8


def _lanczos_region(arr: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """One ``size`` tile at (y, x) of ``arr`` reduced 2x by Lanczos, computed from the pixels around it alone: a
    horizontal pass (each row resized on its own), then a vertical one, each pass exactly as PIL's whole-image
    resize computes it (same weights, same 8-bit rounding in between) when that resize also goes rows first."""
    r = _LANCZOS2_REACH
    y0, x0 = max(0, 2 * y - r), max(0, 2 * x - r)
    region = Image.fromarray(np.ascontiguousarray(arr[y0:2 * (y + size) + r, x0:2 * (x + size) + r]))
    rows = region.resize((size, region.height), Image.LANCZOS, box=(2 * x - x0, 0, 2 * (x + size) - x0, region.height))
    return np.asarray(rows.resize((size, size), Image.LANCZOS, box=(0, 2 * y - y0, size, 2 * (y + size) - y0)))


@functools.cache
def _whole_resize_goes_rows_first() -> bool:
    """Whether this PIL's Lanczos 2x reduction of a whole image (no taller than twice its width) runs its horizontal
    pass first, as ``_lanczos_region`` does: checked once per process on a few noise images, so a PIL that orders
    its passes otherwise only loses the fast path, never exactness."""
    rng = np.random.default_rng(0)
    ok = True
    for h, w in ((160, 160), (200, 132), (132, 264), (264, 132)):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        whole = np.asarray(Image.fromarray(arr).resize((w // 2, h // 2), Image.LANCZOS))
        for y, x in tile_origins(h // 2, w // 2, 64, 4):
            ok &= bool(np.array_equal(_lanczos_region(arr, y, x, 64), whole[y:y + 64, x:x + 64]))
    return ok


def half_tile_array(arr: np.ndarray, how: str, size: int, max_tiles: int, align: int = 1,
                    stride: int = 0) -> np.ndarray:
    """``tile_array(reduce_half(arr, how), ...)``, bit for bit, reducing only the regions the tiles need: a box
    reduction for any image; a Lanczos one where both sides are even (the scale is then exactly 2), the image is no
    taller than twice its width and PIL's whole-image resize runs rows first (``_whole_resize_goes_rows_first``);
    otherwise the whole image is reduced, as before. A 12 MP image's whole-image Lanczos reduction costs ~0.25 s on
    one core; four tiles' regions, ~1 ms."""
    h, w = arr.shape[:2]
    h2, w2 = h // 2, w // 2
    fast = how == "box" or (how == "lanczos" and h % 2 == 0 and w % 2 == 0 and h <= 2 * w
                            and _whole_resize_goes_rows_first())
    if not fast or h2 < size or w2 < size:
        return tile_array(reduce_half(arr, how), size, max_tiles, align, stride)
    origins = tile_origins(h2, w2, size, max_tiles, align, stride)
    if how == "box":
        return np.stack([reduce2x(arr[2 * y:2 * (y + size), 2 * x:2 * (x + size)]) for y, x in origins])
    return np.stack([_lanczos_region(arr, y, x, size) for y, x in origins])


class ScaleViews(NamedTuple):
    """The two reads of a ``half_tiles`` detector: tiles at the image's own size, and tiles of the image reduced
    2x (none when it has a side under twice the tile). Arrays (T,H,W,3) uint8, or tensors once normalised."""
    native: np.ndarray | torch.Tensor
    half: np.ndarray | torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(int(v.nbytes) if isinstance(v, np.ndarray) else v.element_size() * v.nelement() for v in self)


def reduce2x(arr: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 reduced 2x by 2x2 box averaging, rounded to nearest (an odd last row or column dropped)."""
    h, w = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
    a = arr[:h, :w].astype(np.uint16)
    s = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
    return ((s + 2) >> 2).astype(np.uint8)


def reduce_half(arr: np.ndarray, how: str = "box") -> np.ndarray:
    """(H,W,3) uint8 at half size: ``box`` (``reduce2x``) or ``lanczos`` (PIL's antialiased Lanczos resize)."""
    if how == "box":
        return reduce2x(arr)
    if how == "lanczos":
        return np.asarray(Image.fromarray(arr).resize((arr.shape[1] // 2, arr.shape[0] // 2), Image.LANCZOS))
    raise ValueError(f"unknown half-size filter {how!r} (box or lanczos)")


def normalize(batch_uint8, cfg: DetectorConfig):
    """(N,H,W,3) uint8 -> (N,3,H,W) float32 normalised (a ``ScaleViews`` pair: each read alike)."""
    if isinstance(batch_uint8, ScaleViews):
        return ScaleViews(*(normalize(v, cfg) for v in batch_uint8))
    t = torch.from_numpy(np.ascontiguousarray(batch_uint8)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1)
    return t.sub_(mean).div_(std).contiguous()


def views_uint8(img: Image.Image | np.ndarray, cfg: DetectorConfig, jpeg: bool = False) -> np.ndarray | ScaleViews:
    """The pixel views a detector sees of one image: (T,H,W,3) uint8, or a ``ScaleViews`` pair of them (no
    half-size tiles for a JPEG file, ``jpeg``, when the detector's half-size read is for lossless files only, unless
    the file reaches ``half_jpeg_side``; the
    overlapping tiles of ``tile_stride`` for JPEG files alone when ``stride_jpeg_only``)."""
    # an image becomes a writable copy for torch (an RGB image is not converted first)
    arr = np.array(img if img.mode == "RGB" else img.convert("RGB")) if isinstance(img, Image.Image) else img
    if cfg.policy == "crop":
        return center_crop_array(arr, cfg.input_size)[None]
    if cfg.policy == "tiles":
        stride = 0 if cfg.stride_jpeg_only and not jpeg else cfg.tile_stride
        native = tile_array(arr, cfg.input_size, cfg.max_tiles, cfg.tile_align, stride)
        if not cfg.half_tiles:
            return native
        side = min(arr.shape[0], arr.shape[1])
        no_jpeg_read = not (cfg.jpeg_half_read and side >= cfg.half_jpeg_side)
        if side < 2 * cfg.input_size or (jpeg and cfg.half_lossless and no_jpeg_read):
            return ScaleViews(native, native[:0])
        return ScaleViews(native, half_tile_array(arr, cfg.half_filter, cfg.input_size, cfg.half_tiles,
                                                  cfg.tile_align, stride))
    if cfg.policy == "full":
        return arr[None]
    raise ValueError(f"unknown preprocessing policy {cfg.policy!r}")


def preprocess(img: Image.Image | np.ndarray, cfg: DetectorConfig):
    """(T,3,H,W) float tensor for one image (T > 1 only for the tiles policy), or a ``ScaleViews`` pair."""
    return normalize(views_uint8(img, cfg), cfg)


def pool_logits(x: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """One logit from a read's tile logits ``x`` (1-D): ``mean``; ``median`` (of an even count, the mean of the two
    middle values); ``trim25``, the mean without floor(n/4) of the lowest and of the highest; ``top50``, the mean of
    the highest ceil(n/2); ``lme``, log(mean(exp(x))); ``prob``, the logit of the mean sigmoid."""
    if pool not in TILE_POOLS:
        raise ValueError(f"unknown tile pooling {pool!r} (one of {', '.join(TILE_POOLS)})")
    n = x.numel()
    if pool == "mean" or n == 1:
        return x.mean()
    s = torch.sort(x).values
    if pool == "median":
        return (s[(n - 1) // 2] + s[n // 2]) / 2
    if pool == "trim25":
        k = n // 4
        return s[k:n - k].mean()
    if pool == "top50":
        return s[n // 2:].mean()
    if pool == "prob":
        p = torch.sigmoid(x.double()).mean().clamp(1e-12, 1 - 1e-12)
        return torch.log(p / (1 - p)).to(x.dtype)
    return torch.logsumexp(x, 0) - math.log(n)   # lme


def aggregate_logits(logits: torch.Tensor, counts: list[int], pool: str | list[str] = "mean") -> torch.Tensor:
    """One logit per image when images contributed several views: their mean, or ``pool_logits(..., pool)`` (one
    pooling for all, or one per image)."""
    if all(c == 1 for c in counts):
        return logits
    pools = [pool] * len(counts) if isinstance(pool, str) else pool
    if all(p == "mean" for p in pools):
        return torch.stack([part.mean() for part in torch.split(logits, counts)])
    return torch.stack([pool_logits(part, p) for part, p in zip(torch.split(logits, counts), pools)])
