"""The detector registry: a name maps to a builder and its preprocessing. It imports no model code: the
model modules in ``ganscan.detectors.zoo`` register themselves, and ``ganscan.detectors`` imports them.

Every detector outputs one logit per image; ``sigmoid(logit)`` is P(fake).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable

from torch import nn

from ganscan.errors import UnknownNameError, suggest

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
TILE_POOLS = ("mean", "median", "trim25", "top50", "lme", "prob")   # ``preprocess.pool_logits``


@dataclass(frozen=True)
class DetectorConfig:
    """What a detector needs from preprocessing.

    policy: ``crop`` = centre crop of ``input_size`` (smaller sides are padded by reflection, never
    resized); ``full`` = the whole image, unresized; ``tiles`` = non-overlapping ``input_size`` tiles
    (at most ``max_tiles``, evenly spread), logits averaged. ``half_tiles`` > 0 (tiles only) adds a second read:
    the image reduced 2x (``half_filter``: 2x2 box averaging or Lanczos), up to ``half_tiles`` tiles of it; the
    image's logit is then the larger of the native mean logit and the second read's less ``half_margin`` (an image
    with a side under twice ``input_size`` has no second read). ``tile_stride`` > 0: a read whose non-overlapping
    grid holds fewer tiles than its cap takes them from the grid at that stride instead (overlapping; at most the
    cap, evenly spread); with ``stride_jpeg_only``, for JPEG files only. ``half_jpeg_side`` > 0 (with
    ``half_lossless``): a JPEG file whose sides are both at least that long gets the half-size read too, at
    ``half_jpeg_margin``. ``tile_pool``: how a read's tile logits become one (``TILE_POOLS``; the mean unless set); with
    ``pool_jpeg_only``, for JPEG files only.
    """

    name: str
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    policy: str = "crop"
    max_tiles: int = 16
    tile_align: int = 1     # the tile grid's origin is a multiple of this (1: centred at any offset)
    tile_stride: int = 0    # overlapping tiles at this stride when the non-overlapping grid is under the cap (0: never)
    stride_jpeg_only: bool = False   # the overlapping tiles for JPEG files only (a lossless file keeps the grid)
    half_tiles: int = 0     # tiles of the image reduced 2x read as well, the larger mean logit kept (0: none)
    half_margin: float = 0.0   # what the half-size read's mean logit must exceed the native one by to count
    half_filter: str = "box"   # the 2x reduction: "box" (2x2 averages) or "lanczos" (PIL's Lanczos resize)
    half_lossless: bool = False   # the half-size read for lossless files only (a JPEG file keeps its native score)
    half_jpeg_side: int = 0       # ... and for JPEG files with both sides at least this long (0: none)
    half_jpeg_margin: float = 0.0   # the margin of a JPEG file's half-size read
    tile_pool: str = "mean"   # how a read's tile logits become one (TILE_POOLS)
    pool_jpeg_only: bool = False   # tile_pool for JPEG files only (any other file: the mean)
    family: str = "cnn"
    description: str = ""
    timm_name: str | None = None

    def preprocessing(self) -> dict:
        pre = {"policy": self.policy, "input_size": self.input_size, "mean": list(self.mean),
               "std": list(self.std), "max_tiles": self.max_tiles}
        if self.tile_align != 1:   # written only when set, so that earlier checkpoints' metadata is unchanged
            pre["tile_align"] = self.tile_align
        if self.tile_stride:
            pre["tile_stride"] = self.tile_stride
            if self.stride_jpeg_only:
                pre["stride_jpeg_only"] = True
        if self.half_tiles:
            pre["half_tiles"] = self.half_tiles
            if self.half_margin:
                pre["half_margin"] = self.half_margin
            if self.half_filter != "box":
                pre["half_filter"] = self.half_filter
            if self.half_lossless:
                pre["half_lossless"] = True
                if self.half_jpeg_side:
                    pre["half_jpeg_side"] = self.half_jpeg_side
                    pre["half_jpeg_margin"] = self.half_jpeg_margin
        if self.tile_pool != "mean":
            pre["tile_pool"] = self.tile_pool
            if self.pool_jpeg_only:
                pre["pool_jpeg_only"] = True
        return pre

    def describe_preprocessing(self) -> str:
        tiles = (f"x{self.max_tiles}" + (f"a{self.tile_align}" if self.tile_align != 1 else "")
                 + (f"s{self.tile_stride}" if self.tile_stride else "")
                 + ("j" if self.tile_stride and self.stride_jpeg_only else "")
                 + (f"+half{self.half_tiles}" if self.half_tiles else "")
                 + (f"-{self.half_margin:g}" if self.half_tiles and self.half_margin else "")
                 + (f"-{self.half_filter}" if self.half_tiles and self.half_filter != "box" else "")
                 + ("-lossless" if self.half_tiles and self.half_lossless else "")
                 + (f"+jpeg{self.half_jpeg_side}-{self.half_jpeg_margin:g}" if self.jpeg_half_read else "")
                 + (f"+pool-{self.tile_pool}" if self.tile_pool != "mean" else "")
                 + ("j" if self.tile_pool != "mean" and self.pool_jpeg_only else ""))
        return f"{self.policy}{self.input_size}" + (tiles if self.policy == "tiles" else "")

    def with_preprocessing(self, pre: dict | None) -> "DetectorConfig":
        if not pre:
            return self
        pool = str(pre.get("tile_pool", self.tile_pool))
        if pool not in TILE_POOLS:
            raise ValueError(f"unknown tile pooling {pool!r} (one of {', '.join(TILE_POOLS)})")
        return replace(self, policy=pre.get("policy", self.policy),
                       input_size=int(pre.get("input_size", self.input_size)),
                       mean=tuple(pre.get("mean", self.mean)), std=tuple(pre.get("std", self.std)),
                       max_tiles=int(pre.get("max_tiles", self.max_tiles)),
                       tile_align=int(pre.get("tile_align", self.tile_align)),
                       tile_stride=int(pre.get("tile_stride", self.tile_stride)),
                       stride_jpeg_only=bool(pre.get("stride_jpeg_only", self.stride_jpeg_only)),
                       half_tiles=int(pre.get("half_tiles", self.half_tiles)),
                       half_margin=float(pre.get("half_margin", self.half_margin)),
                       half_filter=str(pre.get("half_filter", self.half_filter)),
                       half_lossless=bool(pre.get("half_lossless", self.half_lossless)),
                       half_jpeg_side=int(pre.get("half_jpeg_side", self.half_jpeg_side)),
                       half_jpeg_margin=float(pre.get("half_jpeg_margin", self.half_jpeg_margin)),
                       tile_pool=pool, pool_jpeg_only=bool(pre.get("pool_jpeg_only", self.pool_jpeg_only)))

    @property
    def jpeg_half_read(self) -> bool:
        """Whether JPEG files large enough get a half-size read of their own (``half_jpeg_side``)."""
        return bool(self.half_tiles and self.half_lossless and self.half_jpeg_side)

    @property
    def jpeg_margin(self) -> float | None:
        """The margin of a JPEG file's half-size read, for ``forward_logits`` (None: JPEG files have none)."""
        return self.half_jpeg_margin if self.jpeg_half_read else None


@dataclass
class _Entry:
    config: DetectorConfig
    builder: Callable[[], nn.Module]
    classifier_prefixes: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, _Entry] = {}


def register_detector(name: str, *, input_size: int, classifier: tuple[str, ...] = (), **cfg):
    """Decorator: ``@register_detector("resnet50", input_size=224)`` over a builder returning a module."""

    def wrap(fn: Callable[[], nn.Module]):
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} registered twice")
        _REGISTRY[name] = _Entry(DetectorConfig(name=name, input_size=input_size, **cfg), fn, classifier)
        return fn

    return wrap


def list_detectors() -> list[DetectorConfig]:
    return [e.config for e in _REGISTRY.values()]


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        close = suggest(name, _REGISTRY)
        raise UnknownNameError(f"unknown architecture {name!r}",
                               hint=f"did you mean {close!r}?" if close else "see `ganscan models`")
    return _REGISTRY[name]


def get_config(name: str) -> DetectorConfig:
    return _entry(name).config


def classifier_prefixes(name: str) -> tuple[str, ...]:
    """State-dict key prefixes of the classifier head (the rest is the backbone)."""
    return _entry(name).classifier_prefixes


def build_detector(name: str, pretrained: str | os.PathLike | None = None, **sizes) -> nn.Module:
    """A fresh detector (``sizes``: builder arguments of a parameterised architecture, as a checkpoint's
    ``arch_args`` records them); ``pretrained`` initialises the backbone from a local ImageNet weights file,
    or, given the keyword ``imagenet``, from the ImageNet weights an optional package bundles for ``name``.

    With ``pretrained``, the model carries ``ganscan_pretrained``: the file, its sha256 and the tensor counts.
    """
    entry = _entry(name)
    model = entry.builder(**sizes)
    if pretrained is not None:
        from ganscan.core.checkpoint import sha256_file
        from ganscan.detectors.pretrained import load_backbone, resolve_pretrained

        path, bundled = resolve_pretrained(name, pretrained)
        report = load_backbone(model, path, entry.classifier_prefixes, name, require_all=bundled)

        model.ganscan_pretrained = {"given": str(pretrained), "path": str(path), "sha256": sha256_file(path),
                                    **report}
    return model
