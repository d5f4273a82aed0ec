"""Generation throughput on this CPU (images/s) for the shipped DCGAN and ProGAN generators.

Not part of the default suite. Run:
  .venv/bin/python -m pytest tests/benchmarks/test_bench_generate.py -s -q --override-ini addopts=
(named explicitly: the default suite ignores tests/benchmarks/). Prints one line per model and thread
count: the rate of sampling alone (latents + forward + uint8) and of `generate_images` writing PNG files.
"""

from __future__ import annotations

import time

import pytest
import torch

from ganscan.gans.generate import generate_images, sample
from ganscan.gans.registry import default_weights_for, load_generator

MODELS = ["dcgan", "progan"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("model", MODELS)
def test_generation_throughput(model, threads, tmp_path):
    if default_weights_for(model) is None:
        pytest.skip(f"no shipped {model} weights")
    torch.set_num_threads(threads)
    gen = load_generator(model)
    sample(gen, 0, 0, 8)  # warm-up
    n, batch = 512, 64
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        sample(gen, 0, start, batch)
    sampling = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    generate_images(gen, n, tmp_path / "out", seed=0, batch_size=batch)
    writing = n / (time.perf_counter() - t0)
    print(f"\n{model} {gen.resolution}x{gen.resolution} threads={threads}: sampling {sampling:.0f} images/s, "
          f"sampling + PNG files {writing:.0f} images/s")
    assert len(list((tmp_path / "out").iterdir())) == n
