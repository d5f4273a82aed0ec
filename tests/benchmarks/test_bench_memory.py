"""Peak RSS: scanning 20,000 small files vs 2,000 (target: within 10%); one image at the 150 MP pixel limit vs a
small one. Run with `make bench`, or one of them: `pytest tests/benchmarks/test_bench_memory.py -s -k pixel_limit`."""

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


def zero_png(path: Path, width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> Path:
    """A valid PNG written row by row, never held in memory: small on disk whatever its pixel count
    (rows of a repeating pattern for RGB, zeros for 16-bit grey)."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    channels = {0: 1, 2: 3, 6: 4}[color_type]
    pattern = np.random.default_rng(0).integers(0, 256, 96, dtype=np.uint8).tobytes()
    width_bytes = width * channels * bit_depth // 8
    z = zlib.compressobj(6)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type,
                                                                     0, 0, 0)))
        body = []
        for y in range(height):
            row = bytes(width_bytes) if bit_depth == 16 else (pattern[y % 96:] + pattern * (width_bytes // 96 + 1))[:width_bytes]
            body.append(z.compress(b"\x00" + row))
            if len(body) >= 256:
                fh.write(chunk(b"IDAT", b"".join(body)))
                body = []
        body.append(z.flush())
        fh.write(chunk(b"IDAT", b"".join(body)) + chunk(b"IEND", b""))
    return path


def _scan_peak_kb(path: Path, out: Path, *extra: str) -> tuple[int, dict]:
    cmd = [sys.executable, "-m", "ganscan", "scan", str(path), "-o", str(out), "-q", "--model", "placeholder",
           "--workers", "1", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, env=env, check=True)
    import json

    return int(res.stdout.strip().splitlines()[-1]), json.loads(out.read_text().splitlines()[0])


def test_peak_rss_at_the_pixel_limit(tmp_path):
    """Peak RSS (largest process of the scan: a decoding worker here) for one 150 MP image, the --max-pixels
    limit, vs one small image; and a 150 MP 16-bit grey image that the memory guard refuses by default,
    measured with the guard raised, against the guard's estimate."""
    from ganscan.data.decode import DEFAULT_MAX_DECODE_BYTES, decode_cost

    small = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(small)
    big = zero_png(tmp_path / "big.png", 15000, 10000)                       # 150,000,000 px: exactly the limit
    grey = zero_png(tmp_path / "grey16.png", 15000, 10000, bit_depth=16, color_type=0)
    kb_small, row_small = _scan_peak_kb(small, tmp_path / "s.jsonl")
    kb_big, row_big = _scan_peak_kb(big, tmp_path / "b.jsonl")
    _, row_refused = _scan_peak_kb(grey, tmp_path / "g.jsonl")
    kb_grey, row_grey = _scan_peak_kb(grey, tmp_path / "g2.jsonl", "--max-decode-mb", "100000")
    assert row_small["verdict"] in ("real", "fake") and row_big["verdict"] in ("real", "fake"), row_big
    assert row_big["width"] * row_big["height"] == 150_000_000
    assert row_refused["verdict"] == "error" and "--max-decode-mb" in row_refused["error"]
    assert row_grey["verdict"] in ("real", "fake"), row_grey
    mb = 1024
    print(f"\n[memory benchmark] peak RSS, largest process of one scan: 640x480 PNG {kb_small / mb:.0f} MB; "
          f"15000x10000 RGB PNG (150 MP, the pixel limit) {kb_big / mb:.0f} MB, ratio {kb_big / kb_small:.1f} "
          f"(guard estimate {decode_cost(15000, 10000, 'RGB') / 2 ** 20:.0f} MB); 15000x10000 16-bit grey PNG "
          f"{kb_grey / mb:.0f} MB with the guard raised (estimate {decode_cost(15000, 10000, 'I;16') / 2 ** 20:.0f}"
          f" MB; refused by default: over {DEFAULT_MAX_DECODE_BYTES / 2 ** 20:.0f} MB): {row_refused['error']}")
