import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
EDGE = DATA / "edge"
PHOTOS = ROOT / "examples" / "photos"


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def cli():
    from ganscan.cli import cli as group

    return group


def write_images(folder: Path, n: int, size=(80, 60), fmt="PNG", seed=0, prefix="img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = size if not callable(size) else size(i)
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = folder / f"{prefix}{i:05d}.{ 'jpg' if fmt == 'JPEG' else fmt.lower()}"
        Image.fromarray(arr).save(p, fmt)
        paths.append(p)
    return paths


@pytest.fixture
def edge_copy(tmp_path):
    dst = tmp_path / "edge"
    shutil.copytree(EDGE, dst)
    return dst


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    yield


def run_ok(runner, cli, args, code=0):
    res = runner.invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == code, (res.exit_code, res.output, getattr(res, "stderr", ""))
    return res


os.environ.setdefault("GANSCAN_ALLOCATOR", "system")


def slow_scan_argv(seconds: float) -> list[str]:
    """The command line of a `ganscan` run whose every forward pass takes ``seconds`` longer (a monkeypatch
    made in the child process), so that a kill from outside lands mid-scan."""
    import sys

    code = ("import sys, time; import ganscan.detectors.inference as inf; forward = inf.forward_logits; "
            f"inf.forward_logits = lambda *a, **k: (time.sleep({seconds}), forward(*a, **k))[1]; "
            "from ganscan.cli import cli; cli.main(args=sys.argv[1:], prog_name='ganscan')")
    return [sys.executable, "-c", code]
