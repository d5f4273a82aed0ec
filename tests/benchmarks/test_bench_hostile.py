"""Hostile files next to 1,000 normal ones: one row per file, exit 0, bounded wall time.

Run: `pytest tests/benchmarks/test_bench_hostile.py -s` (or `make bench`). The decoder that segfaults, hangs or is
killed as by the OOM killer is the test-only hook of tests/test_fuzz.py, patched in for this run; the
memory-hungry file is real: a 150 MP 16-bit grey PNG (a few hundred kB on disk) that the memory guard refuses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from conftest import write_images
from test_fuzz import _hostile_process_file

from .test_bench_memory import zero_png

TIMEOUT_S = 10


def test_hostile_files_among_1000_normal_ones(tmp_path, monkeypatch):
    import ganscan.detectors.inference as inference
    from ganscan.cli import cli

    monkeypatch.setattr(inference, "process_file", _hostile_process_file(inference.process_file))
    folder = tmp_path / "mixed"
    write_images(folder, 1000, size=(64, 48))
    for bad in ("crash.png", "hang.png", "oom.png"):
        (folder / bad).write_bytes((folder / "img00000.png").read_bytes())
    zero_png(folder / "big16.png", 15000, 10000, bit_depth=16, color_type=0)
    report = tmp_path / "report.jsonl"
    args = ["scan", str(folder), "-o", str(report), "--model", "placeholder", "--file-timeout", str(TIMEOUT_S), "-q"]
    t0 = time.monotonic()
    res = CliRunner().invoke(cli, args)
    wall = time.monotonic() - t0
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    by = {Path(r["path"]).name: r for r in rows}
    assert len(rows) == len(by) == 1004 == len(list(folder.iterdir()))        # one row per file, none twice
    assert by["crash.png"]["error"] == "decoder crashed (signal 11, SIGSEGV)"
    assert by["hang.png"]["error"] == f"timed out after {TIMEOUT_S} s"
    assert by["oom.png"]["error"] == "decoder crashed (signal 9, SIGKILL)"
    assert "--max-decode-mb" in by["big16.png"]["error"]
    scored = sum(r["verdict"] in ("real", "fake") for r in rows)
    assert scored == 1000
    print(f"\n[hostile benchmark] ganscan scan {folder.name}/ (1,000 PNGs 64x48 + crash, hang, oom, 150 MP 16-bit "
          f"grey): exit {res.exit_code}, {len(rows)} rows ({scored} scored, {len(rows) - scored} errors), wall "
          f"{wall:.1f} s with --file-timeout {TIMEOUT_S}\n  " + "\n  ".join(
              f"{n}: {by[n]['error']}" for n in ("crash.png", "hang.png", "oom.png", "big16.png")))
    assert wall < 300
