"""Seeded fuzzing of the scanner: a few hundred mutated small images of every common format, one row each."""

import io
import json

import numpy as np
from PIL import Image

from conftest import EDGE, run_ok

FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "tif": "TIFF", "bmp": "BMP"}


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    out = {}
    for ext, fmt in FORMATS.items():
        buf = io.BytesIO()
        img.save(buf, fmt)
        out[ext] = buf.getvalue()
    out["heic"] = (EDGE / "cheers_1440x960.heic").read_bytes() if (EDGE / "cheers_1440x960.heic").exists() else out["png"]
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(0, 4))
    if kind == 0:                       # truncation
        return bytes(b[: int(rng.integers(1, max(2, len(b))))])
    if kind == 1:                       # byte flips
        for _ in range(int(rng.integers(1, 12))):
            i = int(rng.integers(0, len(b)))
            b[i] = int(rng.integers(0, 256))
        return bytes(b)
    if kind == 2:                       # a chunk duplicated in place
        i = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, min(512, len(b) - i) + 1))
        return bytes(b[: i + n] + b[i: i + n] + b[i + n:])
    i = int(rng.integers(0, len(b)))    # garbage inserted
    return bytes(b[:i] + rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes() + b[i:])


def test_mutated_files_each_get_one_row_and_the_scan_exits_0(runner, cli, tmp_path):
    rng = np.random.default_rng(1234)
    seeds = _seeds()
    folder = tmp_path / "fuzz"
    folder.mkdir()
    names = []
    for i in range(280):
        ext = list(seeds)[i % len(seeds)]
        p = folder / f"m{i:04d}.{ext}"
        p.write_bytes(_mutate(seeds[ext], rng))
        names.append(str(p))
    res = run_ok(runner, cli, ["scan", *names, "--model", "placeholder", "--workers", "2", "--format", "jsonl", "-q"])
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    assert sorted(r["path"] for r in rows) == sorted(names)      # one row per file, none lost, none twice
    assert all(r["verdict"] in ("real", "fake", "error") for r in rows)
    errors = [r for r in rows if r["verdict"] == "error"]
    assert errors and all(r["error"] and "\n" not in r["error"] for r in errors)
    assert any(r["verdict"] != "error" for r in rows)            # some mutations still decode
