"""A threshold of their own for low-quality JPEG files: the checkpoint key, scan's and evaluate's per-file verdicts,
and `ganscan models calibrate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_ok


def _checkpoint(path, threshold: float, low: dict | None = None):
    import torch

    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.detectors.registry import build_detector, get_config

    torch.manual_seed(0)
    net = build_detector("test-cnn")
    meta = {"kind": "detector", "arch": "test-cnn", "name": path.stem, "threshold": threshold,
            "preprocessing": get_config("test-cnn").preprocessing()}
    if low:
        meta["threshold_low_jpeg"] = low
    save_checkpoint(path, net.state_dict(), meta)
    return path


@pytest.fixture
def photos(tmp_path):
    """A labelled set: each class holds a JPEG at quality 70, one at 95 and a PNG."""
    rng = np.random.default_rng(0)
    for cls in ("0_real", "1_fake"):
        d = tmp_path / "set" / cls
        d.mkdir(parents=True)
        for name, opts in (("q70.jpg", {"quality": 70}), ("q95.jpg", {"quality": 95}), ("a.png", {})):
            Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8)).save(d / name, **opts)
    return tmp_path / "set"


def test_threshold_for_a_file():
    from ganscan.detectors.load import LoadedDetector

    det = LoadedDetector(model=None, config=None, meta={"threshold_low_jpeg": {"threshold": 0.8, "max_quality": 80}},
                         path=None, sha256="", threshold=0.6)
    assert det.low_jpeg == {"threshold": 0.8, "max_quality": 80}
    assert det.threshold_for("JPEG", 80) == 0.8 and det.threshold_for("JPEG", 81) == 0.6
    assert det.threshold_for("JPEG", None) == 0.6 and det.threshold_for("PNG", 50) == 0.6
    plain = LoadedDetector(model=None, config=None, meta={}, path=None, sha256="", threshold=0.6)
    assert plain.low_jpeg is None and plain.threshold_for("JPEG", 50) == 0.6


def test_low_jpeg_threshold_keeps_each_kinds_low_quality_files_at_the_rate():
    from ganscan.detectors.lowjpeg import file_quality, low_jpeg_threshold, low_quality

    scores = {"enlarged": [(i / 100, 75) for i in range(100)], "png": [(0.99, None)] * 20, "hq": [(0.97, 95)] * 20}
    t, rates = low_jpeg_threshold(scores, 0.5, 0.05)
    assert 0.94 < t <= 0.95 and rates == {"enlarged": 0.05}   # the PNG and the quality-95 files do not count
    assert low_jpeg_threshold({"k": [(0.1, 70)] * 30}, 0.5, 0.05)[0] == 0.5   # never below the main threshold
    assert low_quality(80) and not low_quality(81) and not low_quality(None)
    assert file_quality("/nonexistent.jpg") is None


def test_scan_and_evaluate_call_each_file_at_its_own_threshold(runner, cli, photos, tmp_path):
    # everything is fake at threshold 0 except a low-quality JPEG, whose threshold (1.0 + nothing) no score reaches
    model = _checkpoint(tmp_path / "m.safetensors", 0.0, {"threshold": 1.0, "max_quality": 80})
    res = run_ok(runner, cli, ["scan", str(photos), "--model", str(model), "-f", "jsonl", "--workers", "0"])
    rows = {r["path"].split("set/")[1]: r for r in map(json.loads, res.stdout.splitlines())}
    assert len(rows) == 6
    for name, r in rows.items():
        low = name.endswith("q70.jpg")
        assert r["verdict"] == ("real" if low else "fake") and r["threshold"] == (1.0 if low else 0.0)
        assert (r["jpeg_quality"] is not None) == name.endswith(".jpg")
    # --threshold replaces both
    res = run_ok(runner, cli, ["scan", str(photos), "--model", str(model), "-f", "jsonl", "--workers", "0",
                               "--threshold", "0.0"])
    assert {r["verdict"] for r in map(json.loads, res.stdout.splitlines())} == {"fake"}
    res = run_ok(runner, cli, ["evaluate", str(model), str(photos), "-f", "json", "--workers", "0"])
    out = json.loads(res.stdout[res.stdout.index("{"):])
    row = out["sets"][0]
    assert row["fake_acc"] == pytest.approx(2 / 3) and row["real_acc"] == pytest.approx(1 / 3)
    res = run_ok(runner, cli, ["models", "show", str(model)])
    assert "JPEG quality <= 80: 1" in res.output


def test_low_jpeg_threshold_options(runner, cli, photos, tmp_path):
    from ganscan.detectors.load import LoadedDetector

    det = LoadedDetector(model=None, config=None, meta={"threshold_low_jpeg": {"threshold": 0.8, "max_quality": 80}},
                         path=None, sha256="", threshold=0.6)
    given = {"threshold": 0.9, "max_quality": 96}
    assert det.threshold_for("JPEG", 95, low_jpeg=given) == 0.9 and det.threshold_for("PNG", None, 0.3, given) == 0.3
    assert det.threshold_for("JPEG", 70, threshold=0.3) == 0.3   # --threshold alone replaces both
    # a model with one threshold (0: everything fake); --low-jpeg-threshold 1 keeps low-quality JPEGs real
    model = _checkpoint(tmp_path / "one.safetensors", 0.0)
    res = run_ok(runner, cli, ["scan", str(photos), "--model", str(model), "-f", "jsonl", "--workers", "0",
                               "--low-jpeg-threshold", "1.0"])
    verdicts = {r["path"].split("set/")[1]: r["verdict"] for r in map(json.loads, res.stdout.splitlines())}
    assert [n for n, v in sorted(verdicts.items()) if v == "real"] == ["0_real/q70.jpg", "1_fake/q70.jpg"]
    res = run_ok(runner, cli, ["scan", str(photos), "--model", str(model), "-f", "jsonl", "--workers", "0",
                               "--low-jpeg-threshold", "1.0", "--low-jpeg-quality", "96"])
    assert sum(json.loads(x)["verdict"] == "real" for x in res.stdout.splitlines()) == 4   # both JPEGs of each class
    res = run_ok(runner, cli, ["evaluate", str(model), str(photos), "-f", "json", "--workers", "0",
                               "--low-jpeg-threshold", "1.0"])
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["sets"][0]["fake_acc"] == pytest.approx(2 / 3)
    assert out["threshold_low_jpeg"] == {"threshold": 1.0, "max_quality": 80}
    res = run_ok(runner, cli, ["evaluate", str(model), str(photos), "--workers", "0", "--low-jpeg-threshold", "1.0",
                               "-f", "table"])
    assert "JPEG quality <= 80: 1" in res.output


def test_models_calibrate(runner, cli, photos, tmp_path):
    from ganscan.core.checkpoint import read_metadata, load_checkpoint

    model = _checkpoint(tmp_path / "m.safetensors", 0.5)
    out = tmp_path / "cal.safetensors"
    res = run_ok(runner, cli, ["models", "calibrate", str(model), "--calibrate", str(photos), "--fpr", "0.4",
                               "--low-jpeg-quality", "80", "--precision", "fp32", "--workers", "0", "-o", str(out)])
    assert "JPEG quality <= 80" in res.output
    meta = read_metadata(out)
    assert meta["calibrated_from"]["name"] == "m" and meta["threshold_precision"] == "fp32"
    assert meta["threshold_low_jpeg"]["max_quality"] == 80 and meta["threshold_low_jpeg"]["n_by_kind"] == {"set": 1}
    assert meta["threshold_low_jpeg"]["threshold"] >= meta["threshold"]
    a, b = load_checkpoint(model)[0], load_checkpoint(out)[0]
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)   # the same tensors
    kept = tmp_path / "kept.safetensors"
    run_ok(runner, cli, ["models", "calibrate", str(model), "--calibrate", str(photos), "--keep-threshold",
                         "--low-jpeg-quality", "90", "--precision", "fp32", "--workers", "0", "-o", str(kept)])
    assert read_metadata(kept)["threshold"] == 0.5
    res = runner.invoke(cli, ["models", "calibrate", str(model), "--calibrate", str(photos), "--keep-threshold",
                              "-o", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 2 and "--low-jpeg-quality" in res.output
    res = runner.invoke(cli, ["models", "calibrate", str(model), "--calibrate", str(photos), "--keep-threshold",
                              "--low-jpeg-quality", "50", "--workers", "0", "-o", str(tmp_path / "y.safetensors")])
    assert res.exit_code == 1 and "quality 50 or less" in res.output
