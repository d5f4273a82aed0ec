"""Training throughput on CPU: `ganscan train` vs a straightforward loop over pre-decoded tensors.

ResNet-18 at 128 px on the same 160 px JPEGs. The reference decodes every image once into memory and
then only steps the model (forward, backward, Adam), one process, the same threads and memory
format: its images/s is the model-only step rate, an upper bound for any loader. ganscan's rate is
the second epoch of a real run (decode + blur/JPEG augmentation + crop + flip in loader workers,
metrics, progress), timed by the trainer itself without validation. Target: >= 0.9x.

Run with `make bench`, or: BENCH_TRAIN_IMAGES=512 .venv/bin/python -m pytest tests/benchmarks/test_bench_train.py -s -q -p no:cacheprovider --override-ini addopts=
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ARCH = os.environ.get("BENCH_TRAIN_ARCH", "resnet18")
N_IMAGES = int(os.environ.get("BENCH_TRAIN_IMAGES", "384"))
BATCH = int(os.environ.get("BENCH_TRAIN_BATCH", "32"))
CROP = 128


def _corpus(root, n, seed=0):
    rng = np.random.default_rng(seed)
    for label, name in ((0, "0_real"), (1, "1_fake")):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            low = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            img = np.asarray(Image.fromarray(low).resize((160, 160), Image.BICUBIC)).astype(np.float32)
            img += rng.normal(0, 4, img.shape)
            if label:
                yy, xx = np.mgrid[:160, :160]
                img += (((yy + xx) % 2) * 2 - 1)[..., None] * 6.0
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{i:05d}.jpg", quality=92)
    return root


def _reference_rate(files, labels, steps_warmup=2):
    """Decode + centre-crop everything once, then time the model-only training steps."""
    from ganscan.detectors.preprocess import center_crop_array
    from ganscan.detectors.registry import build_detector, get_config

    cfg = get_config(ARCH)
    arrs = np.stack([center_crop_array(np.asarray(Image.open(f).convert("RGB")), CROP) for f in files])
    x_all = torch.from_numpy(arrs).permute(0, 3, 1, 2).float().div(255)
    x_all = (x_all - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)
    x_all = x_all.contiguous(memory_format=torch.channels_last)
    y_all = torch.tensor(labels, dtype=torch.float32)
    torch.manual_seed(0)
    model = build_detector(ARCH).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    order = torch.randperm(len(files))
    n_steps = len(files) // BATCH
    t0, seen = None, 0
    for step in range(n_steps):
        idx = order[step * BATCH:(step + 1) * BATCH]
        if step == steps_warmup:
            t0, seen = time.perf_counter(), 0
        x = x_all[idx].contiguous(memory_format=torch.channels_last)
        loss = F.binary_cross_entropy_with_logits(model(x).reshape(-1), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(idx)
    return seen / (time.perf_counter() - t0)


def test_train_throughput(tmp_path):
    from ganscan.data.datasets import training_set
    from ganscan.core.device import configure_threads
    from ganscan.detectors.train.data import DataSpec
    from ganscan.detectors.train.options import resolve_options
    from ganscan.detectors.train.trainer import Runtime, train

    data = _corpus(tmp_path / "data", N_IMAGES)
    val = _corpus(tmp_path / "val", 16, seed=1)
    s = training_set([str(data)])
    threads = configure_threads()
    ref = _reference_rate(s.paths, s.labels)

    opts = resolve_options("trieste", {"arch": ARCH, "crop": CROP, "batch_size": BATCH, "epochs": 2,
                                       "schedule": "none"})  # blur + JPEG at p 0.5, flips: the full loader
    workers = os.environ.get("BENCH_TRAIN_WORKERS")
    result = train(DataSpec(data=[str(data)], val=[str(val)]), opts, tmp_path / "run",
                   Runtime(workers=int(workers) if workers else None, threads=threads), recipe="trieste")
    rate = [r for r in result.rows if r["kind"] == "epoch"][-1]["train_images_per_s"]
    ratio = rate / ref
    print(f"\n[bench_train] {ARCH} {CROP}px batch {BATCH}, {len(s)} images, {threads} threads: "
          f"reference model-only {ref:.1f} img/s, ganscan train {rate:.1f} img/s -> {ratio:.2f}x (target >= 0.9x)")
    assert rate > 0
