"""Several detectors in one scan: two models in one pass (each file read, hashed and decoded once) vs two
scans, one model each, on the mixed corpus.

Run with `make bench`, or: .venv/bin/python -m pytest tests/benchmarks/test_bench_multi.py -s -q
-p no:cacheprovider --override-ini addopts=   (BENCH_MODELS=a,b picks the two shipped detectors).
Prints the times (the faster of two runs each, against the noise of a shared machine) and their ratio,
measured in one run. Target: two scans / one two-model scan > 1.
"""

from __future__ import annotations

import os
import time

from ganscan.core.device import choose_precision, configure_threads, resolve_device
from ganscan.detectors.inference import ScanSettings, scan_batches
from ganscan.detectors.load import load_detector

from .corpus import build_corpus

MODELS = os.environ.get("BENCH_MODELS", "ganscan-spectrum-v1,ganscan-twins-v1").split(",")
CORES = len(os.sched_getaffinity(0))


def _scan(folder, detectors, precision, repeats: int = 2) -> tuple[float, list[dict]]:
    settings = ScanSettings(paths=(str(folder),), batch_size=32, workers=CORES)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = [r for batch in scan_batches(settings, detectors, precision) for r in batch]
        best = min(best, time.perf_counter() - t0)
    return best, rows


def test_two_models_in_one_scan_cost_less_than_two_scans(tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    configure_threads()
    precision = choose_precision(resolve_device("cpu"), "auto")
    a, b = (load_detector(m) for m in MODELS)
    _scan(tmp_path / "corpus", [a], precision, repeats=1)   # warm-up: page cache, allocator, first-call costs

    t_a, rows_a = _scan(tmp_path / "corpus", [a], precision)
    t_b, rows_b = _scan(tmp_path / "corpus", [b], precision)
    t_ab, rows_ab = _scan(tmp_path / "corpus", [a, b], precision)

    assert [r["path"] for r in rows_ab] == [r["path"] for r in rows_a] == [r["path"] for r in rows_b]
    for ra, rb, r in zip(rows_a, rows_b, rows_ab):   # the same scores as the single-model scans
        assert (r[f"score_{a.label}"], r[f"score_{b.label}"]) == (ra["score"], rb["score"])
    n = sum(r["verdict"] != "error" for r in rows_ab)
    print(f"\n[multi-model benchmark] {a.label} + {b.label}, {len(rows_ab)} files "
          f"({corpus['bytes'] / 1e6:.0f} MB, {n} images), {CORES} cores, {precision.name}")
    print(f"  scan, {a.label:<22} {t_a:7.2f} s")
    print(f"  scan, {b.label:<22} {t_b:7.2f} s")
    print(f"  two scans              {t_a + t_b:7.2f} s")
    print(f"  one scan, both models  {t_ab:7.2f} s")
    print(f"  two scans / one scan with both: {(t_a + t_b) / t_ab:.2f}x (target > 1)")
