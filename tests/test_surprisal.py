"""zed64: the real-only coding-surprisal detector (after ZED)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_ok
from test_selfdesc import as_input, smooth_tiles


def test_discretized_logistic_is_a_distribution_and_its_entropy_table_holds():
    from ganscan.detectors.zoo.surprisal import LN2, entropy_table, expected_bits, log_prob

    v = torch.arange(256.0).view(-1, 1)
    for mean, ls in ((100.3, 1.2), (3.0, 2.5), (250.0, -1.0), (128.0, -3.0)):
        p = torch.exp(log_prob(v, torch.full_like(v, mean), torch.full_like(v, ls)))
        assert abs(p.sum().item() - 1.0) < 1e-4
    # the table's entropy of an interior logistic is the sum over its bins, averaged over where the mean falls in
    # its bin; wide ones cost log2(s) + 2 / ln 2 bits
    for ls in (-2.0, 0.0, 1.5, 2.5):   # narrow enough that the end bins hold no tail
        hs = []
        for off in range(8):
            p = torch.exp(log_prob(v, torch.full_like(v, 127.0 + off / 8), torch.full_like(v, ls)))
            hs.append(-(p * torch.log2(p.clamp(min=1e-30))).sum().item())
        assert abs(expected_bits(torch.tensor([ls]), entropy_table()[1]).item() - sum(hs) / 8) < 0.02
    assert abs(entropy_table()[1][-1].item() - (5.0 + 2.0) / LN2) < 0.01
    assert entropy_table()[1].diff().min() > 0   # wider is costlier


def test_phases_and_the_coder_sees_only_what_comes_before_its_target():
    from ganscan.detectors.zoo.surprisal import Coder, coder_input, phases

    x = torch.arange(16.0).view(1, 1, 4, 4)
    ph = phases(x)
    assert ph[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    coder = Coder().eval()
    base = torch.rand(2, 4, 8, 8) * 255
    for target in (1, 2, 3):
        t = torch.full((2,), target)
        changed = base.clone()
        changed[:, target:] = torch.rand(2, 4 - target, 8, 8) * 255   # the target and what follows it
        with torch.no_grad():
            a, b = coder(base, t), coder(changed, t)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        if target > 1:   # ... but what comes before it is read
            earlier = base.clone()
            earlier[:, target - 1] = 255 - earlier[:, target - 1]
            with torch.no_grad():
                assert not torch.equal(coder(earlier, t)[0], a[0])
    planes = coder_input(base, torch.tensor([1, 3]))
    assert planes.shape == (2, 7, 8, 8) and planes[0, 1:4].abs().max() == 0 and planes[1, 3].abs().max() == 0


def test_trained_on_reals_it_codes_them_and_reads_them_as_typical():
    from ganscan.detectors.zoo.surprisal import Surprisal, fit_state

    state, curve = fit_state(smooth_tiles(400, 1), seed=0, steps=300)
    assert curve[-1] < curve[0]   # it learns to code them
    model = Surprisal()
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        real = model(as_input(smooth_tiles(60, 2))).view(-1)
        noise = model(as_input((np.random.default_rng(0).random((20, 64, 64, 3)) * 255).astype(np.uint8))).view(-1)
        flat = model(as_input(np.full((2, 64, 64, 3), 255, np.uint8))).view(-1)
    assert torch.isfinite(real).all() and torch.isfinite(noise).all()
    assert real.median().abs() < 2.0   # held-out reals of the fitting kind sit near 0
    assert (noise - real.median()).abs().min() > 2.0   # noise is not coded as the coder expects reals to be
    assert flat.abs().max() == 0   # a saturated tile has no pixel to judge: typical
    # float32 under autocast too
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        again = model(as_input(smooth_tiles(60, 2))).view(-1)
    assert torch.allclose(again, real, atol=1e-3)
    with pytest.raises(ValueError, match="too few"):
        fit_state(smooth_tiles(20, 0), steps=100)


def test_fit_zed_command(runner, cli, tmp_path):
    from ganscan.core.checkpoint import read_metadata
    from ganscan.detectors.load import load_detector

    real = tmp_path / "real"
    real.mkdir()
    for i, a in enumerate(smooth_tiles(60, 5)):
        Image.fromarray(a).resize((160, 160), Image.BICUBIC).save(real / f"r{i:03d}.png")
    res = runner.invoke(cli, ["models", "fit-zed", str(real), "--variants", "1", "--steps", "100",
                              "-o", str(tmp_path / "few.safetensors")])
    assert res.exit_code == 1 and "too few" in res.output and "internal" not in res.output
    (real / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    calib = tmp_path / "calib" / "web" / "0_real"
    calib.mkdir(parents=True)
    for i, a in enumerate(smooth_tiles(8, 7)):
        Image.fromarray(a).resize((128, 128), Image.BICUBIC).save(calib / f"c{i}.jpg", quality=80)
    out = tmp_path / "zed.safetensors"
    res = run_ok(runner, cli, ["models", "fit-zed", str(real), "--calibrate", str(tmp_path / "calib"), "--fpr", "0.25",
                               "--variants", "4", "--steps", "100", "-o", str(out), "--workers", "0"])
    assert "zed64" in res.output
    meta = read_metadata(out)
    assert meta["arch"] == "zed64" and meta["training"]["real_images"] == 60 and meta["training"]["unreadable"] == 1
    assert meta["training"]["steps"] == 100 and len(meta["training"]["bits_per_pixel_curve"]) == 1
    assert meta["threshold_precision"] == "fp32"
    assert all(r <= 0.25 for r in meta["threshold_calibration"]["fpr_by_kind"].values())
    det = load_detector(str(out))
    assert det.config.name == "zed64" and math.isfinite(det.threshold)
    res = run_ok(runner, cli, ["scan", str(real), "--model", str(out), "--format", "jsonl"])
    assert res.output.count('"path"') == 61   # the broken file is a row too
