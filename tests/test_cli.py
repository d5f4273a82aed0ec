"""The CLI as a user meets it: help, version, docs, torchrun and a hard kill."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_ok, slow_scan_argv, write_images
from ganscan import __version__


def _all_commands(cli):
    import click

    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        yield [name], cmd
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                yield [name, sub], cmd.get_command(ctx, sub)


def test_version(runner, cli):
    assert __version__ in run_ok(runner, cli, ["--version"]).output


def test_every_command_has_help_with_an_example_and_is_in_the_readme(runner, cli):
    readme = (ROOT / "README.md").read_text()
    seen = 0
    for path, _ in _all_commands(cli):
        out = run_ok(runner, cli, [*path, "--help"]).output
        assert "Examples:" in out, path
        assert f"ganscan {' '.join(path)}" in readme, f"README does not show `ganscan {' '.join(path)}`"
        seen += 1
    assert seen >= 3


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
    assert "make demo" in readme


def _env():
    env = dict(os.environ, NO_COLOR="1", GANSCAN_ALLOCATOR="system", PYTHONPATH=str(ROOT))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def test_python_dash_m_pipes_jsonl(tmp_path):
    write_images(tmp_path / "d", 2)
    proc = subprocess.run([sys.executable, "-m", "ganscan", "scan", str(tmp_path / "d"), "--workers", "0"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(l) for l in proc.stdout.splitlines()]
    assert len(rows) == 2 and "\x1b[" not in proc.stderr  # NO_COLOR: no escape codes


def test_torchrun_shards_into_one_dataset(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    write_images(tmp_path / "d", 7)
    out = tmp_path / "shards.parquet"
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", "29531", "-m", "ganscan",
                           "scan", str(tmp_path / "d"), "-o", str(out), "--workers", "0", "-q"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parts = sorted(p.name for p in out.iterdir())
    assert parts == ["part-00000.parquet", "part-00000.parquet.sha256", "part-00001.parquet",
                     "part-00001.parquet.sha256"]
    con = duckdb.connect()
    n, distinct = con.execute(f"select count(*), count(distinct path) from '{out}/*.parquet'").fetchall()[0]
    assert (n, distinct) == (7, 7)


def test_sigkill_loses_at_most_the_batch_in_flight(tmp_path):
    files = write_images(tmp_path / "d", 60, size=(64, 64))
    out = tmp_path / "r.jsonl"
    journal = out.with_name(out.name + ".partial.jsonl")
    args = ["scan", str(tmp_path / "d"), "-o", str(out), "--workers", "0", "--batch-size", "4", "-q"]
    # each batch takes a while, so the kill lands mid-scan
    proc = subprocess.Popen(slow_scan_argv(0.2) + args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait (on a condition) until some batches are on disk
        if journal.exists() and journal.read_text().count("\n") >= 8:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = journal.read_text().count("\n")
    assert 8 <= done < 60 and not out.exists()
    res = subprocess.run([sys.executable, "-m", "ganscan", *args[:-1], "--resume"], env=_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert re.search(rf"{done} already reported", res.stderr)
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(map(str, files))


def test_internal_errors_end_in_one_line_unless_debug(runner, cli, monkeypatch):
    """A bug anywhere in a command ends with a one-line message and exit 1; --debug shows the traceback."""
    import ganscan.detectors.registry as registry

    def broken():
        raise KeyError("weights table corrupted")

    monkeypatch.setattr(registry, "list_detectors", broken)
    res = runner.invoke(cli, ["models"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "internal error: KeyError" in lines[0] and "--debug" in lines[0]
    assert "Traceback" not in res.output
    res = runner.invoke(cli, ["--debug", "models"])
    assert res.exit_code == 1 and isinstance(res.exception, KeyError)
