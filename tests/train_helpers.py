"""Tiny synthetic labelled image folders for the training and evaluation tests.

Real images are smooth random fields; fake ones carry a faint 2-pixel checkerboard, the kind of
periodic trace a transposed-convolution upsampler leaves, so the tiny test CNN can learn it in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def synth_image(rng: np.random.Generator, fake: bool, size: int = 40) -> Image.Image:
    low = rng.uniform(40, 215, size=(size // 8 + 1, size // 8 + 1, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC)).astype(np.float32)
    img += rng.normal(0, 2.0, img.shape)
    if fake:
        yy, xx = np.mgrid[:size, :size]
        img += (((yy + xx) % 2) * 2 - 1)[..., None] * 20.0
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8))


def make_folder(folder: Path, n_real: int, n_fake: int, seed: int = 0, size: int = 40,
                real_name: str = "0_real", fake_name: str = "1_fake", fmt: str = "png") -> Path:
    rng = np.random.default_rng(seed)
    for name, n, fake in ((real_name, n_real, False), (fake_name, n_fake, True)):
        if n is None:
            continue
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            synth_image(rng, fake, size).save(d / f"{name}_{i:03d}.{fmt}")
    return folder


def tiny_options(**overrides) -> dict:
    """The trieste recipe shrunk to the test CNN: 32 px crops, no blur/JPEG (they would erase the trace)."""
    from ganscan.detectors.train.options import resolve_options

    opts = dict(arch="test-cnn", crop=32, epochs=2, batch_size=8, lr=3e-3, blur_prob=0.0, jpeg_prob=0.0,
                val_split=0.25, schedule="none")
    opts.update(overrides)
    return resolve_options("trieste", opts)


def train_tiny(data: Path, out: Path, **overrides):
    """Train the test CNN on ``data`` in-process (no loader workers); returns the TrainResult."""
    from ganscan.detectors.train.data import DataSpec
    from ganscan.detectors.train.trainer import Runtime, train

    runtime_keys = {"workers", "threads", "checkpoint_every", "name"}
    rt = {k: overrides.pop(k) for k in list(overrides) if k in runtime_keys}
    rt.setdefault("workers", 0)
    rt.setdefault("threads", 1)  # tiny model: one thread is faster than two fighting over a busy CPU
    return train(DataSpec(data=[str(data)]), tiny_options(**overrides), out, Runtime(**rt), recipe="trieste",
                 force=True)
