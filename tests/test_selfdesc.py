"""fsd64: the real-only detector (forensic self-descriptions) and the three-member fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_ok


def smooth_tiles(n: int, seed: int) -> np.ndarray:
    """Photo-like tiles: low-pass noise with a little sensor noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=g)
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bicubic", align_corners=False)
    x = x + 0.02 * torch.randn(n, 3, 64, 64, generator=g)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def upsampled_tiles(n: int, seed: int) -> np.ndarray:
    """Tiles with a generator-like trace: nearest 2x up-sampling of a noisy half-size image."""
    half = smooth_tiles(n, seed)[:, ::2, ::2]
    return half.repeat(2, axis=1).repeat(2, axis=2)


def as_input(u8: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5


def test_residual_filters_and_descriptions():
    from ganscan.detectors.zoo.selfdesc import N_FEATURES, describe, grey255, prediction_filters

    tiles = torch.from_numpy(smooth_tiles(40, 0)).permute(0, 3, 1, 2).float() / 255
    grey = grey255(tiles)
    filt = prediction_filters(grey)
    # a prediction-error filter: the centre minus weights summing to one, so flat images leave no residual
    assert filt.sum(dim=(1, 2, 3)).abs().max() < 1e-4
    flat = torch.full((1, 1, 20, 20), 117.0)
    assert torch.nn.functional.conv2d(flat, filt).abs().max() < 1e-3
    # the residuals of smooth tiles are much smaller than the tiles' own variation
    res = torch.nn.functional.conv2d(grey, filt)
    assert res.std() < 0.5 * grey.std()
    d = describe(res)
    assert d.shape == (40, N_FEATURES) and torch.isfinite(d).all()
    # each residual's coefficients sum to one, and a contrast change leaves the description unchanged
    assert torch.allclose(d.view(40, -1, 8).sum(2), torch.ones(40, N_FEATURES // 8, dtype=d.dtype), atol=1e-6)
    assert (describe(3.0 * res) - d).abs().max() < 1e-3 * d.abs().max()


def test_fitted_on_reals_it_scores_a_generator_trace_higher():
    from ganscan.detectors.zoo.selfdesc import SelfDescription, fit_state

    state = fit_state(smooth_tiles(900, 1), seed=0)
    model = SelfDescription()
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        real = model(as_input(smooth_tiles(60, 2))).view(-1)
        fake = model(as_input(upsampled_tiles(60, 3))).view(-1)
    assert torch.isfinite(real).all() and torch.isfinite(fake).all()
    assert fake.median() > real.median() + 1.0
    # robust z-scores: held-out reals of the fitting kind sit near 0
    assert real.median().abs() < 2.0
    # the forward pass runs in float32/64 even under autocast (least squares in bf16 would be noise)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        again = model(as_input(smooth_tiles(60, 2))).view(-1)
    assert torch.allclose(again, real, atol=1e-3)


def test_too_few_tiles_is_a_clear_error():
    from ganscan.detectors.zoo.selfdesc import fit_state

    with pytest.raises(ValueError, match="too few"):
        fit_state(smooth_tiles(20, 0))


def test_processed_variants_keep_reals_real_sized():
    from ganscan.detectors.zoo.selfdesc import real_tiles

    imgs = [Image.fromarray(smooth_tiles(1, i)[0]).resize((200, 150)) for i in range(6)]
    t = real_tiles(imgs, seed=0, variants=3)
    assert t.dtype == np.uint8 and t.shape[1:] == (64, 64, 3)
    assert len(t) >= 6 * 3 * 2 * 0.5   # every variant of at least 64 px gives two tiles or more
    assert np.array_equal(real_tiles(imgs, seed=0, variants=3), t)   # seeded


def test_fit_fsd_command_and_three_member_fusion(runner, cli, tmp_path):
    from ganscan.detectors.zoo.autogan import ImageClassifier
    from ganscan.detectors.zoo.families import NPRNet
    from ganscan.detectors.zoo.fusion import CLAMP, SpectrumNPRFSDFusion, fused_state
    from ganscan.detectors.load import load_detector
    from ganscan.core.checkpoint import read_metadata, save_checkpoint

    real = tmp_path / "real"
    real.mkdir()
    for i, a in enumerate(smooth_tiles(100, 5)):
        Image.fromarray(a).resize((256, 256), Image.BICUBIC).save(real / f"r{i:03d}.png")
    res = runner.invoke(cli, ["models", "fit-fsd", str(real), "--variants", "1", "-o", str(tmp_path / "few.safetensors")])
    assert res.exit_code == 1 and "too few" in res.output and "internal" not in res.output
    (real / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    calib = tmp_path / "calib"
    calib.mkdir()
    for kind in ("lossless", "web"):
        (calib / kind / "0_real").mkdir(parents=True)
        for i, a in enumerate(smooth_tiles(8, 7)):
            im = Image.fromarray(a).resize((128, 128), Image.BICUBIC)
            im.save(calib / kind / "0_real" / (f"c{i}.png" if kind == "lossless" else f"c{i}.jpg"))
    out = tmp_path / "fsd.safetensors"
    res = run_ok(runner, cli, ["models", "fit-fsd", str(real), "--calibrate", str(calib), "--fpr", "0.25",
                               "--variants", "4", "-o", str(out), "--workers", "0"])
    assert "fsd64" in res.output
    meta = read_metadata(out)
    assert meta["arch"] == "fsd64" and meta["training"]["real_images"] == 100
    assert meta["training"]["unreadable"] == 1
    assert set(meta["threshold_calibration"]["fpr_by_kind"]) == {"lossless", "web"}
    assert meta["threshold_precision"] == "fp32"
    assert all(r <= 0.25 for r in meta["threshold_calibration"]["fpr_by_kind"].values())
    fsd = load_detector(str(out))
    assert fsd.threshold == pytest.approx(meta["threshold"])
    res = runner.invoke(cli, ["models", "fit-fsd", str(real), "-o", str(out)])
    assert res.exit_code == 1 and "exists" in res.output
    res = runner.invoke(cli, ["models", "fit-fsd", str(real), "-o", str(tmp_path / "no" / "x.safetensors")])
    assert res.exit_code == 1 and "folder does not exist" in res.output   # refused before the fit

    # the three-member fusion: members clipped to +-CLAMP, then combined linearly
    torch.manual_seed(0)
    spec, npr = ImageClassifier(True).eval(), NPRNet().eval()
    state = fused_state(spec.state_dict(), npr.state_dict(), [0.5, 0.25, 1.0], -0.5, fsd.model.state_dict())
    path = tmp_path / "fused3.safetensors"
    save_checkpoint(path, state, {"kind": "detector", "arch": "fusion-spectrum-npr-fsd", "threshold": 0.5})
    det = load_detector(str(path))
    assert isinstance(det.model, SpectrumNPRFSDFusion)
    x = as_input(upsampled_tiles(4, 9))
    imagenet_mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    imagenet_std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        members = torch.cat([spec(x).view(-1, 1), npr(((x * 0.5 + 0.5) - imagenet_mean) / imagenet_std).view(-1, 1),
                             fsd.model(x).view(-1, 1)], 1)
        expect = members.clamp(-CLAMP, CLAMP) @ torch.tensor([[0.5], [0.25], [1.0]]) - 0.5
        got = det.model(x)
    assert torch.allclose(got, expect, atol=1e-4)
    assert det.model.member_logits(x).abs().max() <= CLAMP
    det.model.fsd.scale.fill_(1e-6)   # an extreme member is clipped, not allowed to outvote the others
    with torch.no_grad():
        assert torch.equal(det.model.member_logits(x)[:, 2].abs(), torch.full((4,), CLAMP))
