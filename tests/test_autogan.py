"""AutoGAN: autoencoder training, reconstructions of a folder, the reconstruction detectors, the format check."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganscan.data.datasets import LabelledSet
from test_gans import make_folder, run


def ae_args(data, out, steps=4, *extra):
    return ["gan", "train", "--model", "test-autogan", data, "-o", out, "--steps", steps, "--batch-size", 4,
            "--threads", 1, "--sample-every", 2, "--checkpoint-every", 2, *extra]


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("ae")
    data = make_folder(base / "data", n=16, size=16, kind="ramp")
    run(*ae_args(data, base / "run", 4))
    return base


def test_autogan_trains_and_reconstruction_loss_is_recorded(ae_run):
    rows = list(csv.DictReader(open(ae_run / "run" / "losses.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["extra"]) > 0 for r in rows)  # the L1 reconstruction error
    meta = json.loads((ae_run / "run" / "run.json").read_text())
    assert meta["key"]["model"] == "test-autogan"
    from ganscan.gans.registry import load_generator

    gen = load_generator("test-autogan", ae_run / "run" / "generator.safetensors")
    assert gen.meta["options"]["layers"] == 1
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert gen.model(x).shape == x.shape  # an autoencoder: same size out


def test_autogan_resume_is_exact(tmp_path):
    data = make_folder(tmp_path / "d", n=16, size=16, kind="ramp")
    run(*ae_args(data, tmp_path / "a", 4, "--layers", 2))
    run(*ae_args(data, tmp_path / "b", 2, "--layers", 2))
    run(*ae_args(data, tmp_path / "b", 4, "--resume"))  # --layers taken from the run
    from ganscan.core.checkpoint import load_checkpoint

    a = load_checkpoint(tmp_path / "a" / "generator.safetensors", verify=False)[0]
    b = load_checkpoint(tmp_path / "b" / "generator.safetensors", verify=False)[0]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reconstruct_folder_pairs_names_keeps_format_and_reports_bad_files(ae_run, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(src / "sub" / "a.jpg", quality=75)
    Image.fromarray(rng.integers(0, 256, (33, 35, 3), dtype=np.uint8)).save(src / "odd.png")
    Image.fromarray(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)).save(src / "tiny.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    res = run("generate", "--model", "test-autogan", "--weights", ae_run / "run" / "generator.safetensors",
              "--input", src, "-o", out)
    rows = {r["input"]: r for r in csv.DictReader(open(out / "reconstructions.csv"))}
    assert set(rows) == {"sub/a.jpg", "odd.png", "tiny.png", "broken.jpg"}  # one row per input
    assert rows["sub/a.jpg"]["status"] == "ok" and (out / "sub" / "a.jpg").exists()
    with Image.open(src / "sub" / "a.jpg") as a, Image.open(out / "sub" / "a.jpg") as b:
        assert b.format == "JPEG" and b.size == a.size
        assert b.quantization == a.quantization  # the twin is saved with the input's own tables
    assert rows["odd.png"]["status"] == "ok" and "padded" in rows["odd.png"]["note"]
    with Image.open(out / "odd.png") as im:
        assert im.size == (35, 33) and im.format == "PNG"  # cropped back to the input's size
    assert rows["tiny.png"]["status"] == "error" and "smaller than" in rows["tiny.png"]["error"]
    assert rows["broken.jpg"]["status"] == "error" and rows["broken.jpg"]["error"]
    assert "2 errors" in res.output
    again = run("generate", "--model", "test-autogan", "--weights", ae_run / "run" / "generator.safetensors",
                "--input", src, "-o", out, ok=False)
    assert again.exit_code != 0 and "--force" in again.output


def test_tiled_reconstruction_equals_whole_image():
    from ganscan.gans.autogan import AutoEncoder
    from ganscan.gans.reconstruct import reconstruct_array

    torch.manual_seed(0)
    ae = AutoEncoder(layers=2, width=4, blocks=1).eval()
    img = np.random.default_rng(1).integers(0, 256, (100, 90, 3), dtype=np.uint8)
    whole, _ = reconstruct_array(ae, img, tile=4096)
    tiled, _ = reconstruct_array(ae, img, tile=32, margin=24)
    # the receptive field fits inside the margin, so the tiles stitch into the same image
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_generate_usage_errors(ae_run, tmp_path):
    r = run("generate", "--model", "test-autogan", "-o", tmp_path / "o", ok=False)
    assert r.exit_code != 0 and "--input" in r.output
    r = run("generate", "--model", "test-gan", "--untrained", "--input", tmp_path, "-o", tmp_path / "o", ok=False)
    assert r.exit_code != 0 and "autoencoder" in r.output


@pytest.mark.parametrize("name", ["alexnet64", "alexnet64-spectrum", "autogan1-residual", "autogan4-recon-spectrum"])
def test_autogan_detectors_forward_and_freeze_the_autoencoder(name):
    import warnings

    from ganscan.detectors.registry import build_detector, get_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = build_detector(name)
    assert get_config(name).input_size == 64
    m.train()
    x = torch.randn(4, 3, 64, 64)
    y = m(x)
    assert y.shape == (4, 1)
    y.sum().backward()
    if hasattr(m, "ae"):
        assert not m.ae.training  # stays in eval mode inside a training detector
        assert all(p.grad is None for p in m.ae.parameters())
        assert any(p.grad is not None for p in m.net.parameters())


def test_log_spectrum_sees_a_period_two_pattern():
    from ganscan.detectors.zoo.autogan import log_spectrum

    x = torch.zeros(1, 1, 16, 16)
    x[..., ::2, :] = 1.0  # a checkerboard-like row pattern: energy at the Nyquist row
    s = log_spectrum(x)[0, 0]
    assert s[0, 8] > s[4, 8] + 3  # (Nyquist, DC) after fftshift: row 0 is -8 cycles


def test_format_check_flags_a_format_shortcut_and_passes_matched_sets(tmp_path):
    from ganscan.data.shortcut import format_separability

    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(12):
        for label, ext in ((0, "jpg"), (1, "png")):
            p = tmp_path / f"{label}-{i}.{ext}"
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(p)
            paths.append(str(p))
            labels.append(label)
    shortcut = format_separability(LabelledSet("x", paths, labels))
    assert shortcut["balanced_accuracy"] == 1.0
    matched_paths = [p for p in paths if p.endswith(".jpg")]
    matched = format_separability(LabelledSet("y", matched_paths, [i % 2 for i in range(len(matched_paths))]))
    assert matched["balanced_accuracy"] == 0.5


def test_train_logs_the_format_check(tmp_path):
    data = tmp_path / "d"
    for label in ("0_real", "1_fake"):
        make_folder(data / label, n=8, size=32, seed=label == "1_fake", kind="noise")
    out = tmp_path / "run"
    res = run("train", data, "-o", out, "--arch", "test-cnn", "--epochs", "1", "--batch-size", "4", "--crop", "32",
              "--workers", "0", "--val-split", "0.25")
    assert "format check" in res.output
    check = json.loads((out / "format-check.json").read_text())
    assert check["balanced_accuracy"] == 0.5  # same format, same size: nothing to cheat with


def test_gan_evaluate_reports_reconstruction_error_for_an_autoencoder(ae_run):
    res = run("gan", "evaluate", "--model", "test-autogan", "--weights", ae_run / "run" / "generator.safetensors",
              "--real", ae_run / "data", "--resolution", "16", "--baselines", "--json", "--threads", "1")
    out = json.loads(res.stdout)
    names = [r["name"] for r in out["rows"]]
    assert len(names) == 2 and names[1] == "untrained autoencoder"
    for r in out["rows"]:
        assert r["l1"] >= 0 and 0 < r["psnr_db"] < 100
        assert np.isfinite(r["avg"])
    # a perfect reconstruction would have L1 0: the metric is computed against the reals, not itself
    assert out["rows"][1]["l1"] > 1.0
