"""Peak RSS scanning 20,000 small files vs 2,000 (target: within 10%). Run with `make bench`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

WRAPPER = r"""
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _make(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(np.roll(tile, i, axis=1)).save(sub / f"{i:06d}.png", compress_level=1)


def _peak_kb(folder: Path, out: Path) -> int:
    cmd = [sys.executable, "-m", "ganscan", "scan", str(folder), "-o", str(out), "-q", "--model", "placeholder"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, env=env, check=True)
    return int(res.stdout.strip().splitlines()[-1])


def test_memory_flat_in_file_count(tmp_path):
    _make(tmp_path / "small", 2000)
    _make(tmp_path / "large", 20000)
    small = _peak_kb(tmp_path / "small", tmp_path / "s.parquet")
    large = _peak_kb(tmp_path / "large", tmp_path / "l.parquet")
    import pyarrow.parquet as pq

    assert pq.read_metadata(tmp_path / "l.parquet").num_rows == 20000
    print(f"\n[memory benchmark] peak RSS (largest process): 2,000 files {small / 1024:.0f} MB,"
          f" 20,000 files {large / 1024:.0f} MB, ratio {large / small:.3f} (target <= 1.10)")
