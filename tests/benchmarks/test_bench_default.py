"""Scan speed of a candidate default detector against ganscan-spectrum-v1, side by side in one run.

    BENCH_MODEL=weights/ganscan-fusion-v1.safetensors make bench      # default: the shipped default

Each model scans the scan benchmark's mixed corpus (12 MP and 1 MP JPEGs, PNGs, a few hostile files)
with `ganscan scan` (hashes and EXIF included), alternating A B A B; the faster of each model's two runs
counts. Prints images/s of both and the ratio (target for a new default: >= 0.7x).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .corpus import build_corpus

BASELINE = "ganscan-spectrum-v1"


def _scan(corpus, model, out):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ganscan", "scan", str(corpus), "--model", model, "-o", str(out),
                    "--force", "-q"], check=True)
    return time.perf_counter() - t0


def test_default_detector_scan_speed(tmp_path):
    from ganscan.detectors.load import default_detector_name

    corpus = build_corpus(tmp_path / "corpus")
    n = len(corpus["files"])
    candidate = os.environ.get("BENCH_MODEL") or default_detector_name()
    times = {BASELINE: [], candidate: []}
    for i in range(2):
        for m in (BASELINE, candidate):
            times[m].append(_scan(tmp_path / "corpus", m, tmp_path / f"r{i}-{len(times[m])}.parquet"))
    rate = {m: n / min(t) for m, t in times.items()}
    ratio = rate[candidate] / rate[BASELINE]
    print(f"\n{n} files: {BASELINE} {rate[BASELINE]:.1f} images/s, {candidate} {rate[candidate]:.1f} images/s, "
          f"ratio {ratio:.2f} (target >= 0.7)")
    assert ratio > 0
