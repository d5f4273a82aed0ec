"""Scan throughput on CPU: ganscan scan vs a serial loop and vs the decode+model bound.

Run with `make bench` (uses tcmalloc when installed). Prints ratios measured in one run.
Targets: scan >= 2x the serial loop; scan time within 15% of the bound
(decode with all cores + model alone on pre-made tensors).
"""

from __future__ import annotations

import os
import time
from multiprocessing import get_context

import torch
from PIL import Image

from ganscan.data.decode import DecodeError, load_image
from ganscan.detectors.preprocess import preprocess
from ganscan.detectors.load import LoadedDetector
from ganscan.detectors.registry import build_detector, get_config
from ganscan.core.device import Precision, configure_threads, worker_init
from ganscan.detectors.inference import ScanSettings, forward_logits, prepare_model, scan_batches

from .corpus import build_corpus

ARCH = os.environ.get("BENCH_ARCH", "resnet50")
CORES = len(os.sched_getaffinity(0))


def _decode(path):
    try:
        img, _ = load_image(str(path))
    except DecodeError:
        return None
    return preprocess(img, get_config(ARCH))


def test_scan_throughput(tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    files = corpus["files"]
    configure_threads()
    torch.manual_seed(0)
    model = build_detector(ARCH).eval()
    cfg = get_config(ARCH)
    cpu = Precision(torch.device("cpu"), None, channels_last=True)
    model = prepare_model(model, cpu)

    # 1. the straightforward serial loop: PIL decode, crop, forward, one file at a time
    t0 = time.perf_counter()
    n_ok = 0
    with torch.inference_mode():
        for f in files:
            try:
                img = Image.open(f).convert("RGB")
                img.load()
            except Exception:
                continue
            x = preprocess(img, cfg)
            model(x.contiguous(memory_format=torch.channels_last))
            n_ok += 1
    t_serial = time.perf_counter() - t0

    # 2. the bound: decode with all cores, then the model alone on pre-made tensors
    t0 = time.perf_counter()
    # one torch thread per process, as scan's workers: OpenMP after fork would otherwise hang
    with get_context("fork").Pool(CORES, initializer=worker_init, initargs=(0,)) as pool:
        tensors = [t for t in pool.map(_decode, files, chunksize=1) if t is not None]
    t_decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(tensors), 32):
        forward_logits(model, tensors[i:i + 32], cpu, max_batch=32)
    t_model = time.perf_counter() - t0
    bound = t_decode + t_model

    # 3. ganscan scan (library path of the command), workers = cores
    det = LoadedDetector(model=model, config=cfg, meta={"name": ARCH}, path=tmp_path, sha256="-", threshold=0.5)
    settings = ScanSettings(paths=(str(tmp_path / "corpus"),), batch_size=32, workers=CORES)
    t0 = time.perf_counter()
    rows = [r for batch in scan_batches(settings, det, cpu) for r in batch]
    t_scan = time.perf_counter() - t0

    assert len(rows) == len(files)
    assert sum(r["verdict"] != "error" for r in rows) == n_ok == len(tensors)
    print(f"\n[scan benchmark] {ARCH}, {len(files)} files ({corpus['bytes'] / 1e6:.0f} MB), {CORES} cores,"
          f" allocator={'tcmalloc' if 'tcmalloc' in os.environ.get('LD_PRELOAD', '') else 'system'}")
    print(f"  serial loop      {t_serial:7.2f} s  {n_ok / t_serial:6.1f} img/s")
    print(f"  decode (all cores) {t_decode:5.2f} s ; model alone {t_model:5.2f} s ; bound {bound:5.2f} s")
    print(f"  ganscan scan     {t_scan:7.2f} s  {n_ok / t_scan:6.1f} img/s")
    print(f"  speedup vs serial: {t_serial / t_scan:.2f}x (target >= 2)")
    print(f"  scan / bound:      {t_scan / bound:.2f} (target <= 1.15)")
