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


def _hostile_process_file(original):
    """A test-only decoder hook: files named crash/abort/oom/hang misbehave the way native decoders do."""
    import os
    import signal
    import threading

    def process(path, explicit, cfg, settings):
        name = os.path.basename(path)
        if name.startswith("crash"):
            os.kill(os.getpid(), signal.SIGSEGV)
        if name.startswith("abort"):
            os.abort()
        if name.startswith("oom"):            # what the kernel's OOM killer does to a worker
            os.kill(os.getpid(), signal.SIGKILL)
        if name.startswith("hang"):
            threading.Event().wait()           # never returns: only the time limit ends it
        return original(path, explicit, cfg, settings)
    return process


def test_crashing_hanging_and_killed_workers_cost_one_row_each(runner, cli, tmp_path, monkeypatch):
    import time

    import ganscan.detectors.inference as inference
    from conftest import write_images

    monkeypatch.setattr(inference, "process_file", _hostile_process_file(inference.process_file))
    folder = tmp_path / "mixed"
    write_images(folder, 40, size=(48, 40))
    for bad in ("crash.png", "abort.png", "oom.png", "hang.png"):
        (folder / bad).write_bytes((folder / "img00000.png").read_bytes())
    t0 = time.monotonic()
    res = run_ok(runner, cli, ["scan", str(folder), "--model", "placeholder", "--workers", "2", "--batch-size", "8",
                               "--file-timeout", "3", "--format", "jsonl", "-q"])
    elapsed = time.monotonic() - t0
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    paths = [r["path"] for r in rows]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())  # one row per file, none twice
    assert paths == sorted(paths)                                      # in discovery order
    by = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    assert by["crash.png"]["error"] == "decoder crashed (signal 11, SIGSEGV)"
    assert by["abort.png"]["error"] == "decoder crashed (signal 6, SIGABRT)"
    assert by["oom.png"]["error"] == "decoder crashed (signal 9, SIGKILL)"
    assert by["hang.png"]["error"] == "timed out after 3 s"
    assert all(by[n]["verdict"] == "error" and by[n]["bytes"] > 0 for n in ("crash.png", "hang.png"))
    assert sum(r["verdict"] in ("real", "fake") for r in rows) == 40
    assert elapsed < 60   # the hang costs its time limit, not the scan


def test_worker_killed_from_outside_mid_scan(tmp_path):
    """kill -9 of a decoding worker while ganscan scan runs: its file gets an error row, the scan exits 0."""
    import subprocess
    import time

    from conftest import slow_scan_argv, write_images

    write_images(tmp_path / "many", 300, size=(64, 64))
    # slow batches: the kill lands mid-scan
    proc = subprocess.Popen(slow_scan_argv(0.1) + ["scan", str(tmp_path / "many"), "--model", "placeholder",
                                                   "--workers", "2", "--batch-size", "8", "--format", "jsonl", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if len(kids) >= 2:
            killed = int(kids[0])
            __import__("os").kill(killed, 9)
        else:
            time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert killed is not None, "no worker seen"
    assert proc.returncode == 0, err[-2000:]
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(rows) == 300 and len({r["path"] for r in rows}) == 300
    crashed = [r for r in rows if (r.get("error") or "").startswith("decoder crashed")]
    assert len(crashed) <= 1   # the file it held, if it held one at that moment


def test_a_worker_killed_while_idle_does_not_end_the_stream():
    """A worker killed between two files (nothing in hand) is replaced when the next file is handed out: every
    item still comes back, none as an error (the broken pipe of the dead worker is not the caller's)."""
    import multiprocessing as mp
    import os
    import signal
    import time

    from ganscan.data.supervise import supervised_items

    def jobs():
        for i in range(6):
            if i == 3:   # kill every worker while it waits for work, and wait until it is gone
                for child in mp.active_children():
                    os.kill(child.pid, signal.SIGKILL)
                    child.join(timeout=10)
                time.sleep(0.1)
            yield f"item{i}", False

    def process(path, _explicit):
        return {"path": path, "error": None}, None

    def failed(path, reason):
        return {"path": path, "error": reason}

    rows = [row for batch in supervised_items(jobs(), process, failed, workers=1, batch_size=2, file_timeout=30)
            for row, _ in batch]
    assert [r["path"] for r in rows] == [f"item{i}" for i in range(6)]
    assert all(r["error"] is None for r in rows)
