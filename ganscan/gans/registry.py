"""The generator registry: one place where a ``--model`` name maps to a builder, resolution and latent size.

``@register_gan("dcgan", family="dcgan", resolution=32, latent_size=100, resolutions=(32, 64))`` over a
builder ``fn(resolution, **options) -> (generator, discriminator)``. Shipped generator weights are found
through their model cards in ``weights/`` (``kind == "gan"``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ganscan.core.checkpoint import load_checkpoint, load_strict, sha256_file
from ganscan.core.weights import resolve_weights, shipped_weights
from ganscan.errors import CheckpointError, GanscanError, UnknownNameError, suggest


@dataclass(frozen=True)
class GanConfig:
    name: str
    family: str  # "dcgan" or "progan": the training loop that fits
    resolution: int  # default output side in pixels
    latent_size: int
    resolutions: tuple[int, ...]  # sides the architecture supports
    options: dict = field(default_factory=dict)  # builder defaults (widths, ...)
    description: str = ""


@dataclass
class _Entry:
    config: GanConfig
    builder: Callable[..., tuple[nn.Module, nn.Module]]


_REGISTRY: dict[str, _Entry] = {}


def register_gan(name: str, *, family: str, resolution: int, latent_size: int, resolutions: tuple[int, ...],
                 description: str = "", **options):
    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"GAN {name!r} registered twice")
        _REGISTRY[name] = _Entry(GanConfig(name, family, resolution, latent_size, tuple(resolutions),
                                           dict(options), description), fn)
        return fn

    return wrap


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        close = suggest(name, _REGISTRY)
        raise UnknownNameError(f"unknown GAN {name!r}",
                               hint=f"did you mean {close!r}?" if close else f"choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def list_gans() -> list[GanConfig]:
    return [e.config for e in _REGISTRY.values()]


def get_gan_config(name: str) -> GanConfig:
    return _entry(name).config


def check_resolution(name: str, resolution: int | None) -> int:
    cfg = get_gan_config(name)
    if resolution is None:
        return cfg.resolution
    if resolution not in cfg.resolutions:
        raise GanscanError(f"{name} does not support {resolution}x{resolution} images",
                           hint=f"supported: {', '.join(str(r) for r in cfg.resolutions)}")
    return resolution


def build_gan(name: str, resolution: int | None = None, **options) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator), freshly initialised (uses the global torch RNG)."""
    entry = _entry(name)
    res = check_resolution(name, resolution)
    opts = {**entry.config.options, **{k: v for k, v in options.items() if v is not None}}
    return entry.builder(res, latent_size=entry.config.latent_size, **opts)


def build_generator(name: str, resolution: int | None = None, **options) -> nn.Module:
    return build_gan(name, resolution, **options)[0]


# --- generator checkpoints -------------------------------------------------------------------------

def generator_meta(model: str, resolution: int, options: dict, **extra) -> dict:
    cfg = get_gan_config(model)
    return {"kind": "gan", "model": model, "family": cfg.family, "resolution": resolution,
            "latent_size": cfg.latent_size, "options": options, **extra}


@dataclass
class LoadedGenerator:
    model: nn.Module
    name: str  # registry name, e.g. "progan"
    resolution: int
    latent_size: int
    path: Path | None
    sha256: str | None
    meta: dict

    @property
    def label(self) -> str:
        """The weights' name, prefixed with the model's when it lacks it (it goes into file names)."""
        name = self.meta.get("name") or (self.path.stem if self.path else self.name)
        return name if name.startswith(self.name) else f"{self.name}-{name}"


def default_weights_for(name: str) -> Path | None:
    """The shipped weights of ``name``: the card marked ``"default": true`` first, else the first found."""
    cards = [c for c in shipped_weights("gan") if c.get("model") == name]
    cards.sort(key=lambda c: not c.get("default"))
    return Path(cards[0]["file"]) if cards else None


def load_generator(name: str, weights: str | os.PathLike | None = None, untrained: bool = False,
                   seed: int = 0) -> LoadedGenerator:
    """A generator ready to sample (eval mode).

    ``weights``: a ``.safetensors`` generator checkpoint or a shipped weights name; default: the shipped
    weights of ``name``. Weights whose metadata names another model are refused. ``untrained``: freshly
    initialised from ``seed`` (a baseline for metrics).
    """
    cfg = get_gan_config(name)
    if untrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            g = build_generator(name)
        g.eval()
        return LoadedGenerator(g, name, cfg.resolution, cfg.latent_size, None, None,
                               {"name": f"{name}-untrained", "untrained": True})
    path = default_weights_for(name) if weights is None else resolve_weights(weights, "gan", label="GAN",
                                                                             missing="weights file")
    if path is None:
        raise CheckpointError(f"no shipped weights for {name!r}",
                              hint="pass --weights RUN/generator.safetensors from `ganscan gan train`")
    state, meta = load_checkpoint(path)
    if meta.get("kind") != "gan":
        what = f"a {meta['kind']} checkpoint" if meta.get("kind") else "not a ganscan generator checkpoint"
        raise CheckpointError(f"{path}: {what}, not GAN generator weights",
                              hint="pass weights written by `ganscan gan train` (RUN/generator.safetensors)")
    if meta.get("model") != name:
        raise CheckpointError(f"{path}: weights of model {meta.get('model')!r}, not {name!r}",
                              hint=f"use --model {meta.get('model')}" if meta.get("model") else None)
    res = int(meta.get("resolution", cfg.resolution))
    g = build_gan(name, res, **(meta.get("options") or {}))[0]
    load_strict(g, state, str(path), f"weights do not fit {name} at {res}x{res}")
    g.eval()
    return LoadedGenerator(g, name, res, cfg.latent_size, path, sha256_file(path),
                           {**meta, "name": meta.get("name") or (path.parent.name if path.stem == "generator" else path.stem)})
