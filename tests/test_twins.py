"""Band-aligned twins (the tail bank and the pairs) and the fusion of detectors."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PHOTOS, run_ok, write_images
from ganscan.detectors.train import twins as T


def _photo_crops(n=4, size=64):
    rng = np.random.default_rng(0)
    crops = []
    for p in sorted(PHOTOS.glob("*.jpg"))[:2]:
        crops += T.random_crops(Image.open(p).convert("RGB"), size, n // 2, rng)
    return crops


@pytest.mark.parametrize("kind", T.TAIL_KINDS)
def test_tail_doubles_the_size_of_every_kind(kind):
    for pre, post in ((False, 0), (True, 2)):
        tail = T.Tail(kind, 8, pre, post, "lrelu", skip=False)
        out = tail(torch.zeros(2, 3, 10, 14))
        assert out.shape == (2, 3, 20, 28), (kind, pre, post)
        assert tail.kind == kind


def test_unknown_tail_kind_is_refused():
    with pytest.raises(ValueError, match="unknown tail kind"):
        T.Tail("bicubic", 8, False, 0, "relu", skip=False)


def test_zero_insertion_keeps_a_flat_image_flat():
    # StyleGAN's up-sampling: zeros between pixels, then a low-pass of gain 4 (DC preserved)
    z = T._ZeroInsert(3)
    out = z(torch.full((1, 3, 6, 6), 0.5))
    assert torch.allclose(out[..., 2:-2, 2:-2], torch.full_like(out[..., 2:-2, 2:-2], 0.5), atol=1e-6)


def test_random_tail_residual_has_the_requested_size():
    spec = T.TailSpec("tconv", 16, True, 1, "relu", "random", seed=3, residual_std=0.03)
    tail = T.build_tail(spec)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        residual = tail(x) - torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert 0.01 < float(residual.std()) < 0.1


def test_trained_tail_learns_to_reconstruct():
    crops = _photo_crops()
    spec = T.TailSpec("nearest", 16, False, 0, "lrelu", "trained", seed=5)
    untrained = T.build_tail(spec, crops, steps=0)
    trained = T.build_tail(spec, crops, steps=60)
    x = T.to_tensor(crops[0])
    d = T.to_tensor(crops[0].resize((32, 32), Image.BOX))
    with torch.no_grad():
        e0 = float((untrained(d) - x).abs().mean())
        e1 = float((trained(d) - x).abs().mean())
    assert e1 < 0.5 * e0


def test_bank_is_reproducible_and_holds_only_the_kinds_asked_for():
    a = T.sample_specs(11, ("tconv", "zeroins"), 3)
    b = T.sample_specs(11, ("tconv", "zeroins"), 3)
    assert a == b
    assert {s.kind for s in a} == {"tconv", "zeroins"} and len(a) == 6
    assert {s.mode for s in a} == {"random", "trained"}
    assert T.sample_specs(12, ("tconv",), 3) != T.sample_specs(11, ("tconv",), 3)


def test_pair_members_share_size_and_processing():
    crop = _photo_crops(2, 64)[0]
    tail = T.build_tail(T.TailSpec("shuffle", 16, False, 0, "relu", "random", seed=1, residual_std=0.03))
    cfg = T.PairConfig(size=64, interp_real_prob=1.0, jpeg_prob=0.0, blur_prob=0.0)
    pair = T.make_pair(crop, tail, cfg, np.random.default_rng(0))
    real, fake = np.asarray(pair["real"], float), np.asarray(pair["fake"], float)
    assert real.shape == fake.shape == (64, 64, 3)
    # band-aligned: the fake differs from its interpolated twin only by a small trace
    diff = np.abs(real - fake).mean()
    assert 0.1 < diff < 12, diff
    # the real twin really is the standard up-scaling of the down-scaled crop (geometry applied to both)
    down = crop.resize((32, 32), T.DOWN_FILTERS[pair["down"]])
    expect = np.asarray(T._geom(down.resize((64, 64), T.UP_FILTERS[pair["up"]]), pair["geom"]), float)
    assert np.array_equal(real, expect)


def test_chained_pair_is_made_at_4x_by_two_tails():
    crop = _photo_crops(2, 64)[0]
    a = T.build_tail(T.TailSpec("tconv", 8, False, 0, "relu", "random", seed=1, residual_std=0.03))
    b = T.build_tail(T.TailSpec("zeroins", 8, False, 0, "relu", "random", seed=2, residual_std=0.03))
    cfg = T.PairConfig(size=64, interp_real_prob=1.0, jpeg_prob=0.0, blur_prob=0.0)
    pair = T.make_pair(crop, a, cfg, np.random.default_rng(0), tail2=b)
    down = crop.resize((16, 16), T.DOWN_FILTERS[pair["down"]])
    with torch.no_grad():
        expect_fake = T.to_image(b(a(T.to_tensor(down)).clamp(-1, 1)))
    assert np.array_equal(np.asarray(pair["fake"]), np.asarray(T._geom(expect_fake, pair["geom"])))
    expect_real = T._geom(down.resize((64, 64), T.UP_FILTERS[pair["up"]]), pair["geom"])
    assert np.array_equal(np.asarray(pair["real"]), np.asarray(expect_real))


def test_rescaled_pair_enlarges_both_members_alike_and_zero_keeps_the_old_pairs():
    crop = _photo_crops(2, 64)[0]
    tail = T.build_tail(T.TailSpec("tconv", 8, False, 0, "relu", "random", seed=1, residual_std=0.03))
    base = dict(size=64, interp_real_prob=0.5, jpeg_prob=0.0, blur_prob=0.0)
    plain = T.make_pair(crop, tail, T.PairConfig(**base), np.random.default_rng(4))
    zero = T.make_pair(crop, tail, T.PairConfig(**base, rescale_prob=0.0), np.random.default_rng(4))
    assert zero["rescale"] == 0.0 and zero["rescale_filter"] == "none"
    assert all(np.array_equal(np.asarray(plain[k]), np.asarray(zero[k])) for k in ("real", "fake"))
    big = T.make_pair(crop, tail, T.PairConfig(**base, rescale_prob=1.0), np.random.default_rng(4))
    assert 1.2 <= big["rescale"] <= 1.8 and big["rescale_filter"] in T.ENLARGE_FILTERS
    for k in ("real", "fake"):   # the same draws as the plain pair, then both members enlarged the same way
        expect = T.enlarge_centre(plain[k], big["rescale"], T.ENLARGE_FILTERS[big["rescale_filter"]])
        assert big[k].size == (64, 64)
        assert np.abs(np.asarray(big[k], float) - np.asarray(expect, float)).max() <= 1   # factor rounded in the record
        assert not np.array_equal(np.asarray(big[k]), np.asarray(plain[k]))


def test_chain_prob_chains_some_tails_and_zero_keeps_the_old_pairs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(PHOTOS.glob("*.jpg"))[:2]:
        (src / p.name).write_bytes(p.read_bytes())
    bank = [(s, T.build_tail(s, _photo_crops(), steps=2)) for s in T.sample_specs(0, ("tconv", "nearest"), 1)]
    sources = sorted(str(p) for p in src.iterdir())
    plain = T.write_twins(sources, tmp_path / "plain", bank, T.PairConfig(size=64), seed=3, max_crops=4)
    zero = T.write_twins(sources, tmp_path / "zero", bank, T.PairConfig(size=64, chain_prob=0.0), seed=3, max_crops=4)
    assert plain == zero
    for f in (tmp_path / "plain" / "1_fake").iterdir():
        assert f.read_bytes() == (tmp_path / "zero" / "1_fake" / f.name).read_bytes()
    T.write_twins(sources, tmp_path / "chain", bank, T.PairConfig(size=64, chain_prob=1.0), seed=3, max_crops=4)
    tails = [r["tail"] for r in csv.DictReader(open(tmp_path / "chain" / "pairs.csv"))]
    assert tails and all(t.count("+") == 1 for t in tails)
    with pytest.raises(ValueError, match="multiple of 4"):
        T.write_twins(sources, tmp_path / "odd", bank, T.PairConfig(size=66, chain_prob=0.5), seed=3)


def test_written_pairs_match_in_format_and_jpeg_tables(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(PHOTOS.glob("*.jpg"))[:2]:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_images(src, 1, size=(40, 40))  # smaller than the pair size: skipped
    bank = [(s, T.build_tail(s, _photo_crops(), steps=5)) for s in T.sample_specs(0, T.TAIL_KINDS, 1)]
    cfg = T.PairConfig(size=64, jpeg_prob=0.5)
    sources = sorted(str(p) for p in src.iterdir())
    errors = []
    counts = T.write_twins(sources, tmp_path / "out", bank, cfg, seed=3, max_crops=6, on_error=errors.append)
    assert counts["errors"] == 1 and len(errors) == 1 and "broken.jpg" in errors[0]
    assert counts["skipped_small"] == 1 and counts["pairs"] >= 4
    rows = list(csv.DictReader(open(tmp_path / "out" / "pairs.csv")))
    assert len(rows) == counts["pairs"]
    kinds_seen = set()
    for r in rows:
        a = Image.open(tmp_path / "out" / "0_real" / r["real"])
        b = Image.open(tmp_path / "out" / "1_fake" / r["fake"])
        assert r["real"] == r["fake"] and a.size == b.size == (64, 64) and a.format == b.format
        if a.format == "JPEG":
            assert a.quantization == b.quantization and int(r["jpeg"]) > 0
        kinds_seen.add(r["tail"].split("-")[0])
    assert kinds_seen <= set(T.TAIL_KINDS)
    again = T.write_twins(sources, tmp_path / "again", bank, cfg, seed=3, max_crops=6)
    assert again == counts
    first = sorted((tmp_path / "out" / "1_fake").iterdir())[0]
    assert first.read_bytes() == (tmp_path / "again" / "1_fake" / first.name).read_bytes()


def test_twins_command(runner, cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    p = sorted(PHOTOS.glob("*.jpg"))[0]
    (src / p.name).write_bytes(p.read_bytes())
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "pairs"
    res = run_ok(runner, cli, ["twins", str(src), "-o", str(out), "--kinds", "tconv,zeroins", "--tails-per-kind", "1",
                               "--size", "64", "--max-crops", "3"])
    assert "bad.png" in res.output and "pairs from" in res.output
    assert len(list((out / "0_real").iterdir())) == len(list((out / "1_fake").iterdir())) == 3
    res = runner.invoke(cli, ["twins", str(src), "-o", str(out)])
    assert res.exit_code == 1 and "already holds pairs" in res.output
    res = runner.invoke(cli, ["twins", str(src), "-o", str(tmp_path / "x"), "--kinds", "tconv,bicubic"])
    assert res.exit_code == 2 and "unknown tail kind bicubic" in res.output
    res = runner.invoke(cli, ["twins", str(src), "-o", str(tmp_path / "y"), "--size", "66", "--chain-prob", "0.5"])
    assert res.exit_code == 2 and "multiple of 4" in res.output
    out4 = tmp_path / "pairs4x"
    run_ok(runner, cli, ["twins", str(src), "-o", str(out4), "--kinds", "tconv", "--tails-per-kind", "1", "--size", "64",
                         "--max-crops", "3", "--chain-prob", "1"])
    rows = list(csv.DictReader(open(out4 / "pairs.csv")))
    assert len(rows) == 3 and all("+" in r["tail"] for r in rows)


# --- fusion ---------------------------------------------------------------------------------------------

def test_fit_logistic_finds_the_informative_feature():
    from ganscan.detectors.zoo.fusion import fit_logistic

    g = torch.Generator().manual_seed(0)
    y = (torch.rand(400, generator=g) < 0.3).float()
    x = torch.stack([torch.randn(400, generator=g), y * 3 + torch.randn(400, generator=g)], dim=1)
    w, b = fit_logistic(x, y)
    assert abs(float(w[1])) > 5 * abs(float(w[0])) and float(w[1]) > 0
    pred = (x @ w + b) > 0
    assert float((pred == y.bool()).float().mean()) > 0.85


def test_threshold_at_fpr_holds_every_kind_to_the_target():
    from ganscan.detectors.zoo.fusion import threshold_at_fpr

    rng = np.random.default_rng(0)
    kinds = {"camera": rng.uniform(0, 0.5, 200).tolist(), "web": rng.uniform(0.2, 0.9, 100).tolist()}
    t, rates = threshold_at_fpr(kinds, 0.05)
    assert all(r <= 0.05 for r in rates.values())
    assert max(rates.values()) >= 0.04  # as low as the strictest kind allows
    s = np.sort(kinds["web"])
    assert s[-5] < t <= s[-4] + 1e-12 or rates["web"] == 0.05


def test_fused_detector_combines_its_members(tmp_path):
    from ganscan.detectors.zoo.autogan import ImageClassifier
    from ganscan.detectors.zoo.families import NPRNet
    from ganscan.detectors.zoo.fusion import SpectrumNPRFusion, fused_state
    from ganscan.detectors.load import load_detector
    from ganscan.core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    spec, npr = ImageClassifier(True).eval(), NPRNet().eval()
    state = fused_state(spec.state_dict(), npr.state_dict(), [0.7, -1.3], 0.25)
    path = tmp_path / "fused.safetensors"
    save_checkpoint(path, state, {"kind": "detector", "arch": "fusion-spectrum-npr", "threshold": 0.5})
    det = load_detector(str(path))
    assert isinstance(det.model, SpectrumNPRFusion) and det.config.policy == "tiles"
    x = torch.rand(3, 3, 64, 64)
    x_in = (x - 0.5) / 0.5
    imagenet = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expect = 0.7 * spec(x_in) - 1.3 * npr(imagenet) + 0.25
        got = det.model(x_in)
    assert torch.allclose(got, expect, atol=1e-4)
    with pytest.raises(Exception, match="do not fit"):
        fused_state({"bogus": torch.zeros(1)}, npr.state_dict(), [1, 1], 0)


def test_fusion_with_the_half_width_member(tmp_path):
    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.zoo.autogan import ImageClassifier
    from ganscan.detectors.zoo.families import NPRNet, NPRNet32
    from ganscan.detectors.zoo.fusion import SpectrumNPR32Fusion, fused_state

    torch.manual_seed(0)
    spec, npr = ImageClassifier(True).eval(), NPRNet32().eval()
    assert npr.stem[0].out_channels == 32
    state = fused_state(spec.state_dict(), npr.state_dict(), [0.5, 2.0], -0.1, npr_arch="npr32")
    path = tmp_path / "fused32.safetensors"
    save_checkpoint(path, state, {"kind": "detector", "arch": "fusion-spectrum-npr32", "threshold": 0.5})
    det = load_detector(str(path))
    assert isinstance(det.model, SpectrumNPR32Fusion)
    x = torch.rand(2, 3, 64, 64)
    imagenet = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expect = 0.5 * spec((x - 0.5) / 0.5) + 2.0 * npr(imagenet) - 0.1
        assert torch.allclose(det.model((x - 0.5) / 0.5), expect, atol=1e-4)
    with pytest.raises(Exception, match="do not fit"):   # a full-width member is not an npr32 one
        fused_state(spec.state_dict(), NPRNet().state_dict(), [1, 1], 0, npr_arch="npr32")


def test_fusion_with_an_ensemble_of_npr32_members(tmp_path):
    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.zoo.autogan import ImageClassifier
    from ganscan.detectors.zoo.families import NPRNet32
    from ganscan.detectors.zoo.fusion import SpectrumNPR32EnsembleFusion, fused_state

    torch.manual_seed(0)
    spec, nets = ImageClassifier(True).eval(), [NPRNet32().eval() for _ in range(3)]
    state = fused_state(spec.state_dict(), [n.state_dict() for n in nets], [0.5, 2.0], -0.1, npr_arch="npr32")
    path = tmp_path / "ens.safetensors"
    save_checkpoint(path, state, {"kind": "detector", "arch": "fusion-spectrum-npr32-ens", "threshold": 0.5,
                                  "arch_args": {"npr_members": 3}})
    det = load_detector(str(path))
    assert isinstance(det.model, SpectrumNPR32EnsembleFusion) and len(det.model.npr.members) == 3
    x = torch.rand(2, 3, 64, 64)
    imagenet = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        mean_npr = sum(n(imagenet) for n in nets) / 3
        expect = 0.5 * spec((x - 0.5) / 0.5) + 2.0 * mean_npr - 0.1
        assert torch.allclose(det.model((x - 0.5) / 0.5), expect, atol=1e-4)
        # each network's own weights: not three copies of one
        assert not torch.allclose(nets[0](imagenet), nets[1](imagenet))
    with pytest.raises(Exception, match="do not fit"):   # two networks' tensors are not a three-member ensemble
        save_checkpoint(tmp_path / "two.safetensors", fused_state(spec.state_dict(), [n.state_dict() for n in nets[:2]],
                                                                  [1, 1], 0, npr_arch="npr32"),
                        {"kind": "detector", "arch": "fusion-spectrum-npr32-ens", "arch_args": {"npr_members": 3}})
        load_detector(str(tmp_path / "two.safetensors"))


def test_models_fuse_an_ensemble(runner, cli, tmp_path):
    from ganscan.core.checkpoint import read_metadata, save_checkpoint
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.registry import get_config
    from ganscan.detectors.zoo.families import NPRNet, NPRNet32

    paths = []
    for i in range(3):
        torch.manual_seed(10 + i)
        p = tmp_path / f"npr32-{i}.safetensors"
        save_checkpoint(p, NPRNet32().state_dict(), {"kind": "detector", "arch": "npr32", "threshold": 0.5, "name": f"m{i}",
                                                      "preprocessing": get_config("npr32").preprocessing()})
        paths.append(str(p))
    fit = tmp_path / "fit"
    write_images(fit / "0_real", 6, size=(64, 64), seed=1)
    write_images(fit / "1_fake", 6, size=(64, 64), seed=2)
    calib = tmp_path / "calib"
    write_images(calib / "lossless" / "0_real", 5, size=(70, 70), seed=3)
    out = tmp_path / "ens.safetensors"
    run_ok(runner, cli, ["models", "fuse", *[a for p in paths for a in ("--npr", p)], "--fit", str(fit),
                         "--calibrate", str(calib), "--fpr", "0.2", "-o", str(out), "--workers", "0"])
    meta = read_metadata(out)
    assert meta["arch"] == "fusion-spectrum-npr32-ens" and meta["arch_args"] == {"npr_members": 3}
    assert [m["name"] for m in meta["members"]["npr"]["ensemble"]] == ["m0", "m1", "m2"]
    assert len(meta["fusion"]["weight"]) == 2 and meta["fusion"]["n_fit"] == 12
    det = load_detector(str(out))
    assert len(det.model.npr.members) == 3
    for i, p in enumerate(paths):   # each network's tensors, in the order given
        member = load_detector(p).model.state_dict()
        got = det.model.npr.members[i].state_dict()
        assert all(torch.equal(member[k], got[k]) for k in member)
    full = tmp_path / "npr.safetensors"
    save_checkpoint(full, NPRNet().state_dict(), {"kind": "detector", "arch": "npr", "threshold": 0.5,
                                                  "preprocessing": get_config("npr").preprocessing()})
    res = runner.invoke(cli, ["models", "fuse", "--npr", paths[0], "--npr", str(full), "--fit", str(fit),
                              "--calibrate", str(calib), "-o", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 1 and "must be npr32" in res.output
    res = runner.invoke(cli, ["models", "fuse", "--npr", str(full), "--npr", str(full), "--fit", str(fit),
                              "--calibrate", str(calib), "-o", str(tmp_path / "y.safetensors")])
    assert res.exit_code == 1 and "ensemble of NPR members must be npr32" in res.output


def test_the_luminance_member_reads_no_chroma_and_shares_npr32_tensors(tmp_path):
    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.detectors.registry import IMAGENET_MEAN, IMAGENET_STD
    from ganscan.detectors.train.model import load_init
    from ganscan.detectors.zoo.families import NPRNet32, NPRNet32Luma, luma_views

    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    norm = lambda x01: (x01 - mean) / std   # noqa: E731
    torch.manual_seed(0)
    grey = torch.rand(2, 1, 64, 64).repeat(1, 3, 1, 1)
    assert torch.allclose(luma_views(norm(grey)), norm(grey), atol=1e-5)   # a grey image is its own luminance
    colour = torch.rand(2, 3, 64, 64) * 0.5 + 0.25
    v = luma_views(norm(colour)) * std + mean
    assert torch.allclose(v[:, 0], v[:, 1], atol=1e-5) and torch.allclose(v[:, 1], v[:, 2], atol=1e-5)
    # a change of chroma alone (orthogonal to the luminance weights) does not move the luminance member's logit
    chroma = torch.zeros_like(colour)
    chroma[:, 0], chroma[:, 1] = 0.587 * 0.2 * torch.rand(64, 64), 0.0
    chroma[:, 1] = -chroma[:, 0] * 0.299 / 0.587
    net, rgb = NPRNet32Luma().eval(), NPRNet32().eval()
    rgb.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.allclose(net(norm(colour)), net(norm(colour + chroma)), atol=1e-4)
        assert not torch.allclose(rgb(norm(colour)), rgb(norm(colour + chroma)), atol=1e-4)
    # an npr32 checkpoint initialises it (the same tensors); another architecture's does not
    path = tmp_path / "rgb.safetensors"
    save_checkpoint(path, rgb.state_dict(), {"kind": "detector", "arch": "npr32"})
    fresh = NPRNet32Luma()
    load_init(fresh, str(path), "npr32-luma")
    assert all(torch.equal(fresh.state_dict()[k], rgb.state_dict()[k]) for k in rgb.state_dict())


def test_the_two_octave_member_reads_the_second_octave_and_starts_as_its_npr32(tmp_path):
    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.detectors.train.model import load_init
    from ganscan.detectors.zoo.families import NPRNet32, NPRNet32TwoOctave, npr_residual, octave_residuals
    from ganscan.errors import CheckpointError

    torch.manual_seed(0)
    up = lambda t, k: t.repeat_interleave(k, -2).repeat_interleave(k, -1)   # noqa: E731
    low = torch.rand(2, 3, 32, 32)
    r = octave_residuals(up(low, 2))    # an image nearest-enlarged 2x: no top octave, a second one
    assert r.shape == (2, 6, 64, 64)
    assert r[:, :3].abs().max() == 0 and r[:, 3:].abs().max() > 0.1
    assert octave_residuals(up(torch.rand(2, 3, 16, 16), 4)).abs().max() == 0   # enlarged 4x: neither
    x = torch.rand(2, 3, 66, 67)   # cut to multiples of 4; the first three channels are npr_residual's
    r = octave_residuals(x)
    assert r.shape == (2, 6, 64, 64) and torch.equal(r[:, :3], npr_residual(x[..., :64, :64]))
    assert torch.allclose(r[:, 3:], up(x[..., :64:2, :64:2], 2) - up(x[..., :64:4, :64:4], 4))
    # an npr32 checkpoint initialises it with zero weights for the second octave: the same logits at first
    src = NPRNet32()
    for m in src.modules():   # non-trivial BatchNorm statistics, so that eval mode means something
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    path = tmp_path / "npr32.safetensors"
    save_checkpoint(path, src.state_dict(), {"kind": "detector", "arch": "npr32"})
    net = NPRNet32TwoOctave()
    load_init(net, str(path), "npr32-2oct")
    assert net.stem[0].weight.shape[1] == 6 and net.stem[0].weight[:, 3:].abs().max() == 0
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), src.eval()(x), atol=1e-5)
        net.stem[0].weight[:, 3:].normal_()   # once trained, the second octave moves the logit
        assert not torch.allclose(net(x), src(x), atol=1e-3)
    # but an npr32-2oct checkpoint cannot initialise an npr32
    wide = tmp_path / "wide.safetensors"
    save_checkpoint(wide, net.state_dict(), {"kind": "detector", "arch": "npr32-2oct"})
    with pytest.raises(CheckpointError, match="cannot initialise"):
        load_init(NPRNet32(), str(wide), "npr32")


def test_the_reference_member_reads_a_tile_against_its_own_enlargement(tmp_path):
    from torch.nn import functional as F

    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.detectors.train.model import load_init
    from ganscan.detectors.zoo.families import NPRNet32, NPRNet32Reference, enlarged_twin

    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 64)
    assert enlarged_twin(x).shape == x.shape and enlarged_twin(torch.randn(1, 3, 65, 63)).shape == (1, 3, 64, 62)
    up = F.interpolate(torch.randn(4, 3, 32, 32), size=(64, 64), mode="bicubic", align_corners=False)
    # a tile that is already a bicubic enlargement is close to its own twin; a detailed one is not
    assert (up - enlarged_twin(up)).abs().mean() < 0.5 * (x - enlarged_twin(x)).abs().mean()
    g = NPRNet32()
    path = tmp_path / "g.safetensors"
    save_checkpoint(path, g.state_dict(), {"kind": "detector", "arch": "npr32"})
    ref = NPRNet32Reference()
    load_init(ref, str(path), "npr32-ref")   # the same tensors as npr32
    g.eval(), ref.eval()
    with torch.no_grad():
        assert torch.allclose(ref(x), g(x) - g(enlarged_twin(x)), atol=1e-5)
        assert torch.allclose(ref(torch.zeros(2, 3, 64, 64)), torch.zeros(2, 1), atol=1e-6)   # a flat tile is its own twin


def test_models_fuse_command(runner, cli, tmp_path):
    from ganscan.detectors.zoo.families import NPRNet
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.registry import get_config
    from ganscan.core.checkpoint import read_metadata, save_checkpoint

    torch.manual_seed(1)
    npr_path = tmp_path / "npr.safetensors"
    save_checkpoint(npr_path, NPRNet().state_dict(), {"kind": "detector", "arch": "npr", "threshold": 0.5,
                                                      "preprocessing": get_config("npr").preprocessing()})
    fit = tmp_path / "fit"
    write_images(fit / "0_real", 6, size=(64, 64), seed=1)
    write_images(fit / "1_fake", 6, size=(64, 64), seed=2)
    (fit / "1_fake" / "broken.png").write_bytes(b"\x89PNG broken")
    calib = tmp_path / "calib"
    write_images(calib / "lossless" / "0_real", 5, size=(70, 70), seed=3)
    write_images(calib / "jpeg" / "0_real", 5, size=(70, 70), fmt="JPEG", seed=4)
    out = tmp_path / "fused.safetensors"
    run_ok(runner, cli, ["models", "fuse", "--npr", str(npr_path), "--fit", str(fit), "--calibrate", str(calib),
                         "--fpr", "0.2", "-o", str(out), "--workers", "0", "--precision", "fp32"])
    meta = read_metadata(out)
    assert meta["arch"] == "fusion-spectrum-npr"
    assert meta["threshold_precision"] == "fp32"   # the calibration scores' precision is recorded, and shown
    assert f"{meta['threshold']:.4g} (fp32)" in run_ok(runner, cli, ["models", "show", str(out)]).stdout
    assert meta["fusion"]["n_fit"] == 12 and meta["fusion"]["unreadable"] == 1
    assert set(meta["threshold_calibration"]["fpr_by_kind"]) == {"lossless", "jpeg"}
    assert all(r <= 0.2 for r in meta["threshold_calibration"]["fpr_by_kind"].values())
    assert meta["members"]["spectrum"]["name"] == "ganscan-spectrum-v1"
    det = load_detector(str(out))
    assert det.threshold == pytest.approx(meta["threshold"])
    assert "tile_align" not in meta["preprocessing"]
    res = runner.invoke(cli, ["models", "fuse", "--npr", str(npr_path), "--fit", str(fit), "--calibrate", str(calib),
                              "-o", str(out)])
    assert res.exit_code == 1 and "exists" in res.output
    # a member trained on aligned crops (ganscan train --crop-align 8): the fused model's tiles are on its grid
    aligned = tmp_path / "npr8.safetensors"
    save_checkpoint(aligned, NPRNet().state_dict(), {"kind": "detector", "arch": "npr", "threshold": 0.5,
                                                     "preprocessing": {**get_config("npr").preprocessing(),
                                                                       "tile_align": 8}})
    out8 = tmp_path / "fused8.safetensors"
    run_ok(runner, cli, ["models", "fuse", "--npr", str(aligned), "--fit", str(fit), "--calibrate", str(calib),
                         "--fpr", "0.2", "-o", str(out8), "--workers", "0"])
    assert read_metadata(out8)["preprocessing"]["tile_align"] == 8
    # a luminance member (npr32-luma), a two-octave one (npr32-2oct) and a reference one (npr32-ref) each get their
    # own fusion
    from ganscan.detectors.zoo.families import NPRNet32Luma, NPRNet32Reference, NPRNet32TwoOctave

    def fuse_one(net, arch):
        member = tmp_path / f"{arch}.safetensors"
        save_checkpoint(member, net.state_dict(), {"kind": "detector", "arch": arch, "threshold": 0.5,
                                                   "preprocessing": get_config(arch).preprocessing()})
        fused = tmp_path / f"fused-{arch}.safetensors"
        run_ok(runner, cli, ["models", "fuse", "--npr", str(member), "--fit", str(fit), "--calibrate", str(calib),
                             "--fpr", "0.2", "-o", str(fused), "--workers", "0"])
        meta = read_metadata(fused)
        assert meta["arch"] == f"fusion-spectrum-{arch}" and meta["members"]["npr"]["arch"] == arch
        return member, fused

    fuse_one(NPRNet32Luma(), "npr32-luma")
    fuse_one(NPRNet32Reference(), "npr32-ref")
    two, out2 = fuse_one(NPRNet32TwoOctave(), "npr32-2oct")   # whose fused model scores as its members do
    fused2, member2 = load_detector(str(out2)), load_detector(str(two))
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64)
        logits = fused2.model.member_logits(x)
        xn = (x * fused2.model.in_std + fused2.model.in_mean - fused2.model.npr_mean) / fused2.model.npr_std
        assert torch.allclose(logits[:, 1], member2.model(xn).reshape(-1), atol=1e-4)
    assert load_detector(str(out8)).config.describe_preprocessing() == "tiles64x16a8"
    res = runner.invoke(cli, ["models", "fuse", "--npr", "ganscan-spectrum-v1", "--fit", str(fit),
                              "--calibrate", str(calib), "-o", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 1 and "must be npr or npr32" in res.output


def test_shipped_default_is_the_fusion_of_the_shipped_members():
    """The default detector is the fusion; its members are ganscan-spectrum-v1 and ganscan-twins-v1 (both
    still load by name), and its score is the logistic combination of theirs on a real photo."""
    import json

    from ganscan.data.decode import load_image
    from ganscan.core.device import Precision
    from ganscan.core.weights import weights_dir
    from ganscan.detectors.inference import forward_logits
    from ganscan.detectors.load import default_detector_name, load_detector
    from ganscan.detectors.preprocess import ScaleViews, preprocess

    from ganscan.detectors.zoo.fusion import FUSIONS

    name = default_detector_name()
    card = json.loads((weights_dir() / f"{name}.json").read_text())
    assert card["arch"] in FUSIONS and len(card["members"]) == 2
    fused = load_detector(None)
    spec, npr = load_detector(card["members"]["spectrum"]["name"]), load_detector(card["members"]["npr"]["name"])
    assert spec.label == "ganscan-spectrum-v1" and load_detector("ganscan-twins-v1").config.name == "npr"
    for member, det in (("spectrum", spec), ("npr", npr)):   # the shipped members are the fused ones
        assert det.sha256 == card["members"][member]["weights_sha256"]
    img, _ = load_image(str(sorted(PHOTOS.glob("*.jpg"))[0]))
    with torch.inference_mode():
        ls = spec.model(preprocess(img, spec.config)).mean()
        ln = npr.model(preprocess(img, npr.config)).mean()
        views = preprocess(img, fused.config)   # the default also reads lossless images at half size
        native = views.native if isinstance(views, ScaleViews) else views
        lf = fused.model(native).mean()
    w, b = card["fusion"]["weight"], card["fusion"]["bias"]
    assert float(lf) == pytest.approx(w[0] * float(ls) + w[1] * float(ln) + b, abs=1e-3)
    # a JPEG photo: the score is the native read's, whatever the half-size read says
    prec = Precision(device=torch.device("cpu"), autocast_dtype=None, channels_last=False)
    got = forward_logits(fused.model, [views], prec, jpeg=[True], half_margin=fused.config.half_margin,
                         half_lossless=fused.config.half_lossless)
    assert got[0] == pytest.approx(float(lf), abs=1e-4) and fused.config.half_lossless
    # every real kind the threshold was calibrated on stays at or under the target
    cal = card["threshold_calibration"]
    assert all(r <= cal["fpr_target"] for r in cal["fpr_by_kind"].values())


def test_train_crops_small_input_detectors_at_their_own_size(runner, cli, tmp_path):
    """Without --crop, a recipe's 224 px crop does not override a 64 px tile detector's input size."""
    from ganscan.core.checkpoint import read_metadata

    write_images(tmp_path / "d" / "0_real", 16, size=(72, 72), seed=1)
    write_images(tmp_path / "d" / "1_fake", 16, size=(72, 72), seed=2)
    res = run_ok(runner, cli, ["train", str(tmp_path / "d"), "--arch", "spectral-lr", "--epochs", "1",
                               "--batch-size", "8", "--workers", "0", "--val-split", "0.25", "-o", str(tmp_path / "run")])
    assert "training at --crop 64" in res.output
    meta = read_metadata(tmp_path / "run" / "best.safetensors")
    assert meta["training"]["options"]["crop"] == 64 and meta["preprocessing"]["input_size"] == 64


def _jpeg_fusion_checkpoint(path, w=(0.0, 0.0), b=-5.0, wj=(0.0, 0.0), bj=5.0, seed=0):
    """A fusion-spectrum-npr32-jpeg checkpoint with random members and the given branch weights."""
    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.detectors.zoo.fusion import SpectrumNPR32JpegFusion

    torch.manual_seed(seed)
    model = SpectrumNPR32JpegFusion()
    state = model.state_dict()
    state.update(weight=torch.tensor(w, dtype=torch.float32), bias=torch.tensor([b], dtype=torch.float32),
                 weight_jpeg=torch.tensor(wj, dtype=torch.float32), bias_jpeg=torch.tensor([bj], dtype=torch.float32))
    save_checkpoint(path, state, {"kind": "detector", "arch": "fusion-spectrum-npr32-jpeg", "threshold": 0.5})
    return path


def test_the_jpeg_fusion_reads_each_tile_with_its_formats_branch(tmp_path):
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.zoo.fusion import SpectrumNPR32JpegFusion

    det = load_detector(str(_jpeg_fusion_checkpoint(tmp_path / "j.safetensors", (0.5, 2.0), -0.1, (1.5, -0.7), 0.3)))
    m = det.model.eval()
    assert isinstance(m, SpectrumNPR32JpegFusion) and m.format_aware
    # the two NPR networks hold their own tensors
    assert not torch.equal(m.npr.stem[0].weight, m.npr_jpeg.stem[0].weight)
    x01 = torch.rand(4, 3, 64, 64)
    x = (x01 - 0.5) / 0.5
    imagenet = (x01 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        a, n, nj = m.spectrum(x).reshape(-1), m.npr(imagenet).reshape(-1), m.npr_jpeg(imagenet).reshape(-1)
        lossless = 0.5 * a + 2.0 * n - 0.1
        jpeg = 1.5 * a - 0.7 * nj + 0.3
        assert torch.allclose(m(x).reshape(-1), lossless, atol=1e-4)   # no formats: the lossless branch
        assert torch.allclose(m(x, jpeg=torch.zeros(4, dtype=torch.bool)).reshape(-1), lossless, atol=1e-4)
        assert torch.allclose(m(x, jpeg=torch.ones(4, dtype=torch.bool)).reshape(-1), jpeg, atol=1e-4)
        mixed = torch.tensor([True, False, False, True])
        assert torch.allclose(m(x, jpeg=mixed).reshape(-1), torch.where(mixed, jpeg, lossless), atol=1e-4)
        with pytest.raises(ValueError, match="3 format flags for 4 tiles"):
            m(x, jpeg=mixed[:3])


def test_forward_logits_gives_each_images_tiles_its_format():
    from ganscan.core.device import Precision
    from ganscan.detectors.inference import forward_logits

    class Probe(torch.nn.Module):   # logit = 1 for a tile flagged JPEG, 0 otherwise
        format_aware = True

        def forward(self, x, jpeg=None):
            return (jpeg.float() if jpeg is not None else torch.zeros(x.shape[0])).reshape(-1, 1)

    prec = Precision(device=torch.device("cpu"), autocast_dtype=None, channels_last=False)
    tensors = [torch.zeros(3, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.zeros(2, 3, 8, 8)]
    assert forward_logits(Probe(), tensors, prec, max_batch=2, jpeg=[True, False, True]) == [1.0, 0.0, 1.0]
    assert forward_logits(Probe(), tensors, prec) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="2 format flags for 3 images"):
        forward_logits(Probe(), tensors, prec, jpeg=[True, False])

    class Plain(torch.nn.Module):   # not format-aware: never given the flags
        def forward(self, x):
            return torch.ones(x.shape[0], 1)

    assert forward_logits(Plain(), tensors, prec, jpeg=[True, False, True]) == [1.0, 1.0, 1.0]


def test_scan_evaluate_and_explain_read_a_jpeg_with_the_jpeg_branch(runner, cli, tmp_path):
    import json

    model = _jpeg_fusion_checkpoint(tmp_path / "j.safetensors")   # lossless files score 0.0067, JPEG files 0.9933
    photos = tmp_path / "photos"
    write_images(photos, 2, size=(96, 80), fmt="JPEG", seed=1, prefix="j")
    write_images(photos, 2, size=(96, 80), fmt="PNG", seed=2, prefix="p")
    res = run_ok(runner, cli, ["scan", str(photos), "--model", str(model), "--format", "jsonl", "--workers", "0"])
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 4
    for r in rows:
        jpeg = r["path"].endswith(".jpg")
        assert r["format"] == ("JPEG" if jpeg else "PNG")
        assert r["score"] == pytest.approx(0.993307 if jpeg else 0.006693, abs=1e-5)
        assert r["verdict"] == ("fake" if jpeg else "real")
    # evaluate: a set of JPEG fakes and PNG reals is perfectly separated only through the branches
    data = tmp_path / "set"
    write_images(data / "0_real", 3, size=(70, 70), fmt="PNG", seed=3)
    write_images(data / "1_fake", 3, size=(70, 70), fmt="JPEG", seed=4)
    out = tmp_path / "eval.json"
    run_ok(runner, cli, ["evaluate", "-m", str(model), str(data), "-o", str(out), "--workers", "0"])
    row = json.loads(out.read_text())["sets"][0]
    assert row["auc"] == pytest.approx(1.0) and row["fake_acc"] == pytest.approx(1.0) and row["real_acc"] == pytest.approx(1.0)
    # explain: the heatmap of a JPEG is read by the JPEG branch
    ex = tmp_path / "explain"
    run_ok(runner, cli, ["explain", str(photos / "j00000.jpg"), str(photos / "p00000.png"), "--model", str(model),
                         "-o", str(ex)])
    got = {Path(s["path"]).suffix: s for s in json.loads((ex / "summary.json").read_text())}
    assert got[".jpg"]["patch_score_mean"] == pytest.approx(0.9933, abs=1e-3)
    assert got[".png"]["patch_score_mean"] == pytest.approx(0.0067, abs=1e-3)


def test_models_fuse_with_a_jpeg_branch(runner, cli, tmp_path):
    from ganscan.core.checkpoint import read_metadata, save_checkpoint
    from ganscan.core.device import choose_precision
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.registry import get_config
    from ganscan.detectors.zoo.families import NPRNet32

    paths = []
    for i in range(2):
        torch.manual_seed(20 + i)
        p = tmp_path / f"npr32-{i}.safetensors"
        save_checkpoint(p, NPRNet32().state_dict(), {"kind": "detector", "arch": "npr32", "threshold": 0.5,
                                                      "name": f"m{i}", "preprocessing": get_config("npr32").preprocessing()})
        paths.append(str(p))
    fit = tmp_path / "fit"
    for fmt, seed in (("PNG", 1), ("JPEG", 3)):
        write_images(fit / "0_real", 5, size=(64, 64), fmt=fmt, seed=seed, prefix=f"r{fmt}")
        write_images(fit / "1_fake", 5, size=(64, 64), fmt=fmt, seed=seed + 1, prefix=f"f{fmt}")
    fit_jpeg = tmp_path / "fitj"
    write_images(fit_jpeg / "0_real", 4, size=(64, 64), fmt="JPEG", seed=5)
    write_images(fit_jpeg / "1_fake", 4, size=(64, 64), fmt="JPEG", seed=6)
    calib = tmp_path / "calib"
    write_images(calib / "lossless" / "0_real", 5, size=(70, 70), seed=7)
    write_images(calib / "camera" / "0_real", 5, size=(70, 70), fmt="JPEG", seed=8)
    write_images(calib / "mixed" / "0_real", 3, size=(70, 70), seed=9, prefix="a")
    write_images(calib / "mixed" / "0_real", 3, size=(70, 70), fmt="JPEG", seed=10, prefix="b")
    u2j = tmp_path / "u2j"
    write_images(u2j / "enlarged" / "0_real", 5, size=(70, 70), fmt="JPEG", seed=11)
    out = tmp_path / "fusedj.safetensors"
    run_ok(runner, cli, ["models", "fuse", "--npr", paths[0], "--npr-jpeg", paths[1], "--fit", str(fit),
                         "--fit-jpeg", str(fit_jpeg), "--calibrate", str(calib), "--calibrate-jpeg", str(u2j),
                         "--fpr", "0.2", "-o", str(out), "--workers", "0"])
    meta = read_metadata(out)
    assert meta["arch"] == "fusion-spectrum-npr32-jpeg"
    assert meta["threshold_precision"] == choose_precision(torch.device("cpu"), "auto").name
    assert [meta["members"][k]["name"] for k in ("npr", "npr_jpeg")] == ["m0", "m1"]
    assert meta["fusion"]["n_fit"] == 10 and meta["fusion"]["jpeg"]["n_fit"] == 18
    cal = meta["threshold_calibration"]
    assert set(cal["fpr_by_kind"]) == {"lossless (lossless)", "mixed (lossless)", "camera (JPEG)", "mixed (JPEG)",
                                       "enlarged (JPEG)"}
    assert cal["n_by_kind"]["mixed (JPEG)"] == 3 and cal["jpeg_only_kinds"] == ["enlarged"]
    assert all(r <= 0.2 for r in cal["fpr_by_kind"].values())
    assert meta["threshold"] == pytest.approx(cal["threshold_lossless"])
    # the JPEG branch's bias carries its own threshold: at the shipped one, its logit sits where the JPEG one did
    shift = meta["fusion"]["jpeg"]["bias"] - meta["fusion"]["jpeg"]["bias_fitted"]
    logit = lambda p: np.log(p / (1 - p))   # noqa: E731
    assert shift == pytest.approx(logit(cal["threshold_lossless"]) - logit(cal["threshold_jpeg"]), abs=1e-6)
    det = load_detector(str(out))
    for k, v in load_detector(paths[1]).model.state_dict().items():
        assert torch.equal(det.model.npr_jpeg.state_dict()[k], v)
    base = ["models", "fuse", "--fit", str(fit), "--calibrate", str(calib), "-o", str(tmp_path / "x.safetensors")]
    res = runner.invoke(cli, [*base, "--npr", paths[0], "--fit-jpeg", str(fit_jpeg)])
    assert res.exit_code == 2 and "needs --npr-jpeg" in res.output
    res = runner.invoke(cli, [*base, "--npr", paths[0], "--calibrate-jpeg", str(u2j)])
    assert res.exit_code == 2 and "needs --npr-jpeg or --by-format" in res.output
    res = runner.invoke(cli, [*base, "--npr", paths[0], "--npr", paths[1], "--npr-jpeg", paths[1]])
    assert res.exit_code == 2 and "one --npr member" in res.output
    only_png = tmp_path / "calibpng"
    write_images(only_png / "lossless" / "0_real", 5, size=(70, 70), seed=12)
    res = runner.invoke(cli, ["models", "fuse", "--npr", paths[0], "--npr-jpeg", paths[1], "--fit", str(fit),
                              "--calibrate", str(only_png), "-o", str(tmp_path / "y.safetensors"), "--workers", "0"])
    assert res.exit_code == 1 and "no JPEG real photos" in res.output
    lopsided = tmp_path / "fit2"   # its JPEG files are all real: the JPEG branch cannot be fitted
    write_images(lopsided / "0_real", 3, size=(64, 64), seed=13, prefix="a")
    write_images(lopsided / "0_real", 3, size=(64, 64), fmt="JPEG", seed=14, prefix="b")
    write_images(lopsided / "1_fake", 3, size=(64, 64), seed=15)
    res = runner.invoke(cli, ["models", "fuse", "--npr", paths[0], "--npr-jpeg", paths[1], "--fit", str(lopsided),
                              "--calibrate", str(calib), "-o", str(tmp_path / "w.safetensors"), "--workers", "0"])
    assert res.exit_code == 1 and "JPEG files of the fit sets must hold both real and fake" in res.output

    # --by-format: one member and one set of weights for every file; the branches differ by their calibration only
    outb = tmp_path / "byformat.safetensors"
    run_ok(runner, cli, ["models", "fuse", "--npr", paths[0], "--by-format", "--fit", str(fit), "--calibrate",
                         str(calib), "--calibrate-jpeg", str(u2j), "--fpr", "0.2", "-o", str(outb), "--workers", "0"])
    meta = read_metadata(outb)
    assert meta["arch"] == "fusion-spectrum-npr32-jpeg" and meta["fusion"]["jpeg"]["shared"]
    assert meta["fusion"]["n_fit"] == 20 and meta["fusion"]["jpeg"]["weight"] == meta["fusion"]["weight"]
    assert meta["fusion"]["jpeg"]["bias_fitted"] == pytest.approx(meta["fusion"]["bias"])
    assert meta["members"]["npr_jpeg"]["name"] == "m0"
    m = load_detector(str(outb)).model
    assert all(torch.equal(v, m.npr_jpeg.state_dict()[k]) for k, v in m.npr.state_dict().items())
    cal = meta["threshold_calibration"]
    assert all(r <= 0.2 for r in cal["fpr_by_kind"].values()) and "enlarged (JPEG)" in cal["fpr_by_kind"]
    res = runner.invoke(cli, ["models", "fuse", "--npr", paths[0], "--by-format", "--fit", str(fit), "--fit-jpeg",
                              str(fit_jpeg), "--calibrate", str(calib), "-o", str(tmp_path / "z.safetensors")])
    assert res.exit_code == 2 and "needs --npr-jpeg" in res.output


def test_a_half_tiles_detector_also_reads_the_image_reduced_2x_and_keeps_the_larger_mean_logit():
    from ganscan.core.device import Precision
    from ganscan.detectors.inference import forward_logits
    from ganscan.detectors.preprocess import ScaleViews, normalize, reduce2x, views_uint8
    from ganscan.detectors.registry import get_config
    from ganscan.data.supervise import _as_arrays, _as_tensors

    px = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3) * 3
    r = reduce2x(px)
    assert r.shape == (2, 3, 3)   # the odd last row and column dropped
    want = px[:4, :6].reshape(2, 2, 3, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(r.astype(float) - want).max() <= 0.5
    base = get_config("npr32")
    cfg = base.with_preprocessing({**base.preprocessing(), "half_tiles": 4})
    assert cfg.preprocessing()["half_tiles"] == 4 and "half_tiles" not in base.preprocessing()
    assert cfg.describe_preprocessing() == "tiles64x16+half4"
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (300, 520, 3), dtype=np.uint8)
    v = views_uint8(big, cfg)
    assert isinstance(v, ScaleViews) and v.native.shape == (16, 64, 64, 3) and v.half.shape == (4, 64, 64, 3)
    assert np.array_equal(v.native, views_uint8(big, base))   # the native read is the plain detector's
    assert v.nbytes == v.native.nbytes + v.half.nbytes
    narrow = views_uint8(big[:127], cfg)                      # a side under 128 px: no half-size read
    assert narrow.half.shape[0] == 0 and np.array_equal(narrow.native, views_uint8(big[:127], base))
    t = normalize(v, cfg)
    back = _as_tensors(_as_arrays(t))                          # as the views cross a worker's pipe
    assert isinstance(back, ScaleViews) and all(torch.equal(a, b) for a, b in zip(t, back))

    class Brightness(torch.nn.Module):   # logit = a tile's mean value
        def forward(self, x):
            return x.mean(dim=(1, 2, 3)).reshape(-1, 1)

    prec = Precision(device=torch.device("cpu"), autocast_dtype=None, channels_last=False)
    lo, hi = torch.zeros(2, 3, 8, 8), torch.ones(3, 3, 8, 8)
    tensors = [ScaleViews(lo, hi), ScaleViews(hi * 2, lo), ScaleViews(lo - 1, lo[:0]), hi * 3]
    assert forward_logits(Brightness(), tensors, prec, max_batch=2) == [1.0, 2.0, -1.0, 3.0]
    # a margin: the half-size read counts only by what it exceeds the native one by
    assert forward_logits(Brightness(), tensors, prec, half_margin=0.5) == [0.5, 2.0, -1.0, 3.0]
    assert forward_logits(Brightness(), tensors, prec, half_margin=2.0) == [0.0, 2.0, -1.0, 3.0]
    margin = cfg.with_preprocessing({**cfg.preprocessing(), "half_margin": 1.5})
    assert margin.half_margin == 1.5 and margin.describe_preprocessing() == "tiles64x16+half4-1.5"
    assert margin.preprocessing()["half_margin"] == 1.5 and "half_margin" not in cfg.preprocessing()
    # lossless only: a JPEG file (the scan's format flag) keeps its native read
    assert forward_logits(Brightness(), tensors, prec, jpeg=[True, False, False, True], half_lossless=True) == \
        [0.0, 2.0, -1.0, 3.0]
    assert forward_logits(Brightness(), tensors, prec, jpeg=[True, False, False, True]) == [1.0, 2.0, -1.0, 3.0]
    # the Lanczos reduction: the half-size tiles differ from the box ones, the native read does not
    lz = cfg.with_preprocessing({**cfg.preprocessing(), "half_filter": "lanczos", "half_lossless": True})
    assert lz.describe_preprocessing() == "tiles64x16+half4-lanczos-lossless"
    vl = views_uint8(big, lz)
    assert np.array_equal(vl.native, v.native) and vl.half.shape == v.half.shape
    assert not np.array_equal(vl.half, v.half)
    assert views_uint8(big, lz, jpeg=True).half.shape[0] == 0   # a JPEG: the half-size read is not even made
    assert views_uint8(big, cfg, jpeg=True).half.shape == v.half.shape
    assert np.abs(vl.half.astype(int) - v.half.astype(int)).mean() < 40      # the same picture, filtered otherwise
    with pytest.raises(ValueError, match="half-size filter"):
        views_uint8(big, cfg.with_preprocessing({**cfg.preprocessing(), "half_filter": "nearest"}))
    # a JPEG file of at least half_jpeg_side px a side gets the half-size read after all, at its own margin
    j = lz.with_preprocessing({**lz.preprocessing(), "half_jpeg_side": 256, "half_jpeg_margin": 2.0})
    assert j.jpeg_half_read and j.jpeg_margin == 2.0 and lz.jpeg_margin is None
    assert j.describe_preprocessing() == "tiles64x16+half4-lanczos-lossless+jpeg256-2"
    assert j.preprocessing()["half_jpeg_side"] == 256 and "half_jpeg_side" not in lz.preprocessing()
    assert views_uint8(big, j, jpeg=True).half.shape == (4, 64, 64, 3)          # 300 px: read
    assert views_uint8(big[:255], j, jpeg=True).half.shape[0] == 0             # 255 px: not
    assert np.array_equal(views_uint8(big[:255], j).half, views_uint8(big[:255], lz).half)   # lossless: as before
    # forward_logits: a JPEG's half-size read, when its views have one, counts at the JPEG margin
    assert forward_logits(Brightness(), tensors, prec, jpeg=[True, False, False, True], half_lossless=True,
                          half_jpeg_margin=0.25) == [0.75, 2.0, -1.0, 3.0]
    assert forward_logits(Brightness(), tensors, prec, jpeg=[False, False, False, True], half_lossless=True,
                          half_margin=0.5, half_jpeg_margin=0.25) == [0.5, 2.0, -1.0, 3.0]
    # without half_lossless the JPEG margin is not consulted by the config (a read for every file, one margin)
    assert cfg.with_preprocessing({**cfg.preprocessing(), "half_jpeg_side": 256}).jpeg_margin is None

def test_tile_pooling_functions_and_their_setting():
    import math
    import statistics

    from ganscan.core.device import Precision
    from ganscan.detectors.preprocess import ScaleViews
    from ganscan.detectors.inference import forward_logits
    from ganscan.detectors.preprocess import aggregate_logits, pool_logits
    from ganscan.detectors.registry import TILE_POOLS, get_config

    vals = [3.0, -1.0, 0.5, 2.0, -4.0, 1.0, 0.0]
    x = torch.tensor(vals, dtype=torch.float64)
    s = sorted(vals)
    expect = {"mean": sum(vals) / 7, "median": statistics.median(vals), "trim25": sum(s[1:6]) / 5,
              "top50": sum(s[3:]) / 4, "lme": math.log(sum(math.exp(v) for v in vals) / 7)}
    p = sum(1 / (1 + math.exp(-v)) for v in vals) / 7
    expect["prob"] = math.log(p / (1 - p))
    assert set(expect) == set(TILE_POOLS)
    for pool, want in expect.items():
        assert float(pool_logits(x, pool)) == pytest.approx(want, abs=1e-9), pool
    even = torch.tensor([4.0, 1.0, 2.0, 8.0])
    assert float(pool_logits(even, "median")) == 3.0 and float(pool_logits(even, "trim25")) == 3.0
    assert float(pool_logits(even, "top50")) == 6.0
    assert all(float(pool_logits(torch.tensor([2.5]), p)) == 2.5 for p in TILE_POOLS)   # one tile: itself
    with pytest.raises(ValueError, match="tile pooling"):
        pool_logits(x, "max")
    logits = torch.tensor([1.0, 5.0, 3.0, -2.0, 0.0])
    assert aggregate_logits(logits, [3, 2], "median").tolist() == [3.0, -1.0]
    assert aggregate_logits(logits, [3, 2]).tolist() == [3.0, -1.0]
    assert aggregate_logits(logits, [3, 2], "top50").tolist() == [4.0, 0.0]
    # the setting: written only when not the mean, named in the preprocessing, checked when read
    base = get_config("npr32")
    cfg = base.with_preprocessing({**base.preprocessing(), "tile_pool": "trim25"})
    assert cfg.tile_pool == "trim25" and cfg.preprocessing()["tile_pool"] == "trim25"
    assert "tile_pool" not in base.preprocessing() and cfg.describe_preprocessing() == "tiles64x16+pool-trim25"
    with pytest.raises(ValueError, match="tile pooling"):
        base.with_preprocessing({**base.preprocessing(), "tile_pool": "max"})

    class Brightness(torch.nn.Module):   # logit = a tile's mean value
        def forward(self, x):
            return x.mean(dim=(1, 2, 3)).reshape(-1, 1)

    prec = Precision(device=torch.device("cpu"), autocast_dtype=None, channels_last=False)
    tiles = torch.stack([torch.full((3, 8, 8), v) for v in (0.0, 1.0, 8.0)])
    halves = torch.stack([torch.full((3, 8, 8), v) for v in (2.0, 2.0, 9.0, 3.0)])
    views = [ScaleViews(tiles, halves), tiles]
    assert forward_logits(Brightness(), views, prec) == [4.0, 3.0]                       # mean: max(3, 4 - 0)
    assert forward_logits(Brightness(), views, prec, pool="median", half_margin=1.0) == [1.5, 1.0]   # max(1, 2.5 - 1)
    # for JPEG files only: a lossless file keeps the mean
    assert forward_logits(Brightness(), views, prec, jpeg=[False, True], pool="median", half_margin=1.0,
                          pool_jpeg_only=True) == [3.0, 1.0]
    assert forward_logits(Brightness(), views, prec, jpeg=[True, False], pool="median", half_margin=1.0,
                          pool_jpeg_only=True) == [1.5, 3.0]
    only = cfg.with_preprocessing({**cfg.preprocessing(), "pool_jpeg_only": True})
    assert only.preprocessing()["pool_jpeg_only"] is True and only.describe_preprocessing() == "tiles64x16+pool-trim25j"
    assert only.pool_jpeg_only and not cfg.pool_jpeg_only and only.tile_pool == "trim25"
    assert "pool_jpeg_only" not in base.with_preprocessing({"pool_jpeg_only": True}).preprocessing()   # the mean: no flag


def test_the_half_size_read_reduces_only_the_tiles_regions_and_gives_the_whole_image_reductions_tiles(monkeypatch):
    from ganscan.detectors import preprocess as pre

    rng = np.random.default_rng(3)
    shapes = [(300, 520), (520, 300), (301, 520), (300, 521), (258, 128), (256, 128), (384, 256), (130, 700),
              (3000 // 8 * 2, 4000 // 8 * 2)] + [tuple(int(v) for v in rng.integers(128, 700, 2)) for _ in range(12)]
    for i, (h, w) in enumerate(shapes):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i % 2:   # a smooth image as well as noise: rounding in the passes shows on both
            arr = np.clip(arr // 8 + np.linspace(0, 220, w)[None, :, None], 0, 255).astype(np.uint8)
        for how in ("box", "lanczos"):
            for tiles, align, stride in ((4, 1, 16), (4, 8, 0), (16, 1, 16), (1, 1, 0)):
                want = pre.tile_array(pre.reduce_half(arr, how), 64, tiles, align, stride)
                got = pre.half_tile_array(arr, how, 64, tiles, align, stride)
                assert got.dtype == np.uint8 and np.array_equal(got, want), (h, w, how, tiles, align, stride)
    # the fast path is the one taken here (this PIL runs a whole-image reduction rows first): no whole image is
    # reduced for an even-sided image, an odd-sided one still is
    assert pre._whole_resize_goes_rows_first()
    arr = rng.integers(0, 256, (1000, 1200, 3), dtype=np.uint8)
    want = pre.tile_array(pre.reduce_half(arr, "lanczos"), 64, 4)
    calls = []
    monkeypatch.setattr(pre, "reduce_half", lambda a, how: calls.append(a.shape) or np.zeros((500, 600, 3), np.uint8))
    assert np.array_equal(pre.half_tile_array(arr, "lanczos", 64, 4), want) and calls == []
    pre.half_tile_array(arr[:999], "lanczos", 64, 4)
    assert calls == [(999, 1200, 3)]
