"""A regular (non-editable) install carries the shipped weights: the wheel holds every weights file with
the sha256 its card states, and every module of the package."""

import hashlib
import json
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(out)], capture_output=True, text=True)
    if res.returncode != 0 and "No module named pip" in res.stderr:
        pytest.skip("pip is not available in this interpreter")
    assert res.returncode == 0, res.stderr[-2000:]
    wheels = list(out.glob("ganscan-*.whl"))
    assert len(wheels) == 1
    return zipfile.ZipFile(wheels[0])


def test_wheel_holds_every_weights_file_with_its_cards_sha256(wheel):
    names = set(wheel.namelist())
    cards = sorted((ROOT / "weights").glob("*.json"))
    assert cards
    for card_path in cards:
        card = json.loads(card_path.read_text())
        member = f"ganscan/weights/{card_path.stem}.safetensors"
        assert f"ganscan/weights/{card_path.name}" in names
        assert member in names, member
        assert hashlib.sha256(wheel.read(member)).hexdigest() == card["sha256"], member


def test_wheel_holds_every_module(wheel):
    names = set(wheel.namelist())
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "ganscan").rglob("*.py"))
    missing = [m for m in modules if m not in names]
    assert not missing, f"add their packages to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert "ganscan/data/real_spectrum.json" in names
