"""Registry, checkpoints, devices and precision."""

import json
import pickle

import pytest
import torch

from conftest import EDGE, run_ok
from ganscan.detectors.load import load_detector
from ganscan.detectors.registry import build_detector, get_config, list_detectors
from ganscan.core import device as dev
from ganscan.core.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from ganscan.errors import CheckpointError, GanscanError, UnknownNameError

SEED_ARCHS = ["resnet18", "resnet50", "densenet121", "xception", "nasnet", "inception_resnet_v2",
              "efficientnet_b0", "alexnet", "test-cnn"]


def test_registry_has_every_seed_architecture():
    names = {c.name for c in list_detectors()}
    assert set(SEED_ARCHS) <= names
    for c in list_detectors():
        assert c.policy in ("crop", "full", "tiles") and c.input_size > 0 and len(c.mean) == 3


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "xception", "efficientnet_b0", "alexnet", "test-cnn"])
def test_detectors_output_one_logit(name):
    torch.manual_seed(0)
    model = build_detector(name).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 96, 96))
    assert out.shape == (2, 1)


def test_unknown_architecture_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'resnet50'"):
        get_config("resnet-50")


def test_checkpoint_roundtrip_and_sha_check(tmp_path):
    model = build_detector("test-cnn")
    path = tmp_path / "m.safetensors"
    sha = save_checkpoint(path, model.state_dict(), {"kind": "detector", "arch": "test-cnn", "threshold": 0.3})
    assert sha == sha256_file(path)
    state, meta = load_checkpoint(path)
    assert meta["arch"] == "test-cnn" and meta["threshold"] == 0.3 and "ganscan_version" in meta
    assert set(state) == set(model.state_dict())
    (tmp_path / "m.json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="does not match its model card"):
        load_checkpoint(path)
    det = None
    (tmp_path / "m.json").write_text(json.dumps({"sha256": sha}))
    det = load_detector(str(path))
    assert det.threshold == 0.3 and det.sha256 == sha


def test_default_detector_is_trained_and_ranks_shipped_fakes_above_camera_photos(runner, cli):
    """The default is a trained detector (not the placeholder) whose card carries its evaluation, and it
    scores the GAN fakes in examples/ at the tile size (64 px ProGAN faces) above every camera photo there;
    the 32 px DCGAN samples, its documented blind spot, are flagged as smaller than its input."""
    from pathlib import Path

    from ganscan.core.weights import weights_dir

    from ganscan.detectors.load import default_detector_name

    name = default_detector_name()
    card = json.loads((weights_dir() / f"{name}.json").read_text())
    assert not card.get("placeholder") and card["metrics"]["val_mean_ap"] > 0.5
    assert card["sha256"] == sha256_file(weights_dir() / f"{name}.safetensors")
    assert card["format_check"]["balanced_accuracy"] < 0.6 and card["command"].startswith("python examples/")
    examples = Path(__file__).resolve().parent.parent / "examples"
    res = run_ok(runner, cli, ["scan", str(examples / "fakes"), str(examples / "photos"), "--workers", "0",
                               "--format", "jsonl", "-q"])
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    fake = [r["score"] for r in rows if "/fakes/" in r["path"] and r["width"] >= 64]
    tiny = [r for r in rows if "/fakes/" in r["path"] and r["width"] < 64]
    real = [r["score"] for r in rows if "/photos/" in r["path"]]
    assert len(fake) >= 3 and len(real) >= 4 and all(r["model"] == name for r in rows)
    assert sum(fake) / len(fake) > sum(real) / len(real) + 0.2
    assert sorted(fake)[len(fake) // 2] > max(real)          # the median fake above every photo
    assert tiny and all("smaller than the detector input (64 px)" in r["flags"] for r in tiny)
    assert all(r["evidence_verdict"] == "inconclusive" for r in tiny)


def test_shipped_weights_verified(tmp_path, monkeypatch):
    import shutil

    from ganscan.core import weights
    from ganscan.detectors.load import default_detector_name

    name = default_detector_name()
    for f in weights.weights_dir().glob(f"{name}.*"):
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.setattr(weights, "weights_dir", lambda: tmp_path)
    assert load_detector(None).path.stem == name
    blob = bytearray((tmp_path / f"{name}.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / f"{name}.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_detector(None)


class _Evil:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_import_foreign_checkpoint_and_refuse_code(runner, cli, tmp_path):
    model = build_detector("test-cnn")
    src = tmp_path / "cnndetection_style.pth"
    torch.save({"model": model.state_dict(), "epoch": 3}, src)
    out = tmp_path / "imported.safetensors"
    res = run_ok(runner, cli, ["models", "import", str(src), "--arch", "test-cnn", "-o", str(out)])
    assert "sha256" in res.output
    det = load_detector(str(out))
    for k, v in model.state_dict().items():
        assert torch.equal(det.model.state_dict()[k], v)
    rows = run_ok(runner, cli, ["scan", str(EDGE / "hopper.webp"), "--model", str(out), "--workers", "0"]).stdout
    assert json.loads(rows)["weights_sha256"] == sha256_file(out)
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"model": _Evil()}, fh)
    res = runner.invoke(cli, ["models", "import", str(evil), "--arch", "test-cnn", "-o", str(tmp_path / "e.safetensors")])
    assert res.exit_code == 1 and "refused" in res.output and "this would have run" not in res.output
    res = runner.invoke(cli, ["models", "import", str(src), "--arch", "resnet18", "-o", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 1 and "does not fit resnet18" in res.output
    shown = json.loads(run_ok(runner, cli, ["models", "show", str(out), "--json"]).stdout)
    assert [(r["arch"], r["sha256"]) for r in shown] == [("test-cnn", sha256_file(out))]
    assert shown[0]["source"]["files"] == [{"file": src.name, "sha256": sha256_file(src)}]
    res = runner.invoke(cli, ["models", "show", str(src)])
    assert res.exit_code == 1 and "not a readable safetensors checkpoint" in res.output
    # a shipped name: the default reads v10's tensors at two scales
    shown = json.loads(run_ok(runner, cli, ["models", "show", "ganscan-fusion-v40", "--json"]).stdout)
    assert shown[0]["preprocessing"] == "tiles64x16+half4-1-lanczos-lossless"
    assert shown[0]["origin"].startswith("ganscan-fusion-v10's tensors")
    res = runner.invoke(cli, ["models", "show", "ganscan-fusion-v4O"])
    assert res.exit_code == 1 and "did you mean" in res.output


def test_pretrained_backbone_from_local_file(tmp_path):
    ref = build_detector("resnet18")
    sd = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    sd["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet head is skipped
    torch.save(sd, tmp_path / "imagenet.pth")
    model = build_detector("resnet18", pretrained=tmp_path / "imagenet.pth")
    assert torch.equal(model.state_dict()["conv1.weight"], ref.state_dict()["conv1.weight"])
    with pytest.raises(CheckpointError, match="never downloads"):
        build_detector("resnet18", pretrained=tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="backbone tensors match"):
        build_detector("densenet121", pretrained=tmp_path / "imagenet.pth")


def test_device_selection_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.resolve_device("auto").type == "cpu"
    with pytest.raises(GanscanError, match="no CUDA device is available"):
        dev.resolve_device("cuda")
    with pytest.raises(GanscanError, match="unknown device"):
        dev.resolve_device("tpu:banana")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert dev.resolve_device("auto").type == "cuda"
    assert dev.resolve_device("cuda:1").index == 1
    with pytest.raises(GanscanError, match="no CUDA device 5"):
        dev.resolve_device("cuda:5")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert dev.choose_precision(torch.device("cuda"), "auto").autocast_dtype is torch.float16
    with pytest.raises(GanscanError):
        dev.choose_precision(torch.device("cpu"), "fp16")


def test_cpu_bf16_only_where_native(monkeypatch):
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2"}))
    assert dev.choose_precision(torch.device("cpu"), "auto").autocast_dtype is None
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert dev.choose_precision(torch.device("cpu"), "auto").autocast_dtype is torch.bfloat16


@pytest.mark.parametrize("arch", ["test-cnn", "resnet18"])
def test_bf16_scores_within_001_of_fp32(arch):
    from ganscan.data.decode import load_image
    from ganscan.detectors.preprocess import preprocess
    from ganscan.detectors.inference import forward_logits, prepare_model, sigmoid

    torch.manual_seed(1)
    model = build_detector(arch).eval()
    with torch.no_grad():  # keep logits in a range where P(fake) is informative
        for p in model.parameters():
            p.mul_(0.5)
    cfg = get_config(arch)
    tensors = [preprocess(load_image(str(EDGE / n))[0], cfg) for n in ("hopper.webp", "rgb24.bmp", "targa.tga")]
    cpu = torch.device("cpu")
    fp32 = forward_logits(prepare_model(model, dev.Precision(cpu, None)), tensors, dev.Precision(cpu, None))
    bf16 = forward_logits(model, tensors, dev.Precision(cpu, torch.bfloat16))
    for a, b in zip(fp32, bf16):
        assert abs(sigmoid(a) - sigmoid(b)) < 0.01


def test_models_command_lists_weights(runner, cli):
    res = run_ok(runner, cli, ["models", "--json"])
    data = json.loads(res.stdout)
    assert {a["name"] for a in data["architectures"]} >= set(SEED_ARCHS)
    ph = [w for w in data["weights"] if w["name"] == "placeholder"][0]
    assert ph["placeholder"] and len(ph["sha256"]) == 64
    assert "placeholder" in run_ok(runner, cli, ["models"]).stdout


def test_npr_residual_vanishes_on_nearest_upsampled_images():
    from ganscan.detectors.zoo.families import npr_residual

    small = torch.randn(2, 3, 16, 16)
    up = small.repeat_interleave(2, -2).repeat_interleave(2, -1)
    assert torch.count_nonzero(npr_residual(up)) == 0
    assert npr_residual(torch.randn(2, 3, 32, 32)).abs().mean() > 0.1


def test_spectral_features_rank_frequencies():
    from ganscan.detectors.zoo.families import radial_profile

    x = torch.randn(1, 1, 64, 64)
    smooth = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    p, ps = radial_profile(x, 16)[0], radial_profile(smooth, 16)[0]
    assert p.shape == (16,)
    assert (ps[-4:] < p[-4:]).all()  # blurring removes the high frequencies


@pytest.mark.parametrize("name", ["npr", "spectral-lr"])
def test_families_registered_and_trainable(name):
    cfg = get_config(name)
    assert cfg.policy == "tiles" and cfg.family in ("npr", "spectral")
    model = build_detector(name).train()
    out = model(torch.randn(4, 3, 64, 64))
    out.sum().backward()
    assert out.shape == (4, 1) and model.fc.weight.grad is not None


def test_batchnorm_folding_keeps_the_function_and_leaves_the_model_alone():
    """Scoring folds each BatchNorm into the convolution before it: same logits, and the loaded model (whose
    state dict a fusion or an export reads) keeps its layers."""
    import torch
    from torch import nn
    from torchvision.models import resnet18

    from ganscan.core.device import choose_precision
    from ganscan.detectors.inference import fold_batchnorm, prepare_model
    from ganscan.detectors.zoo.families import NPRNet

    torch.manual_seed(0)
    for model in (NPRNet(), resnet18(num_classes=1)):
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):   # stats far from the identity, as after training
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.3, 3)
                bn.weight.data.uniform_(0.5, 1.5)
                bn.bias.data.uniform_(-0.5, 0.5)
        model.eval()
        keys = set(model.state_dict())
        x = torch.randn(4, 3, 64, 64)
        with torch.no_grad():
            expect = model(x)
            folded = fold_batchnorm(model)
            got = folded(x)
            prepared = prepare_model(model, choose_precision(torch.device("cpu"), "fp32"))
            again = prepared(x.contiguous(memory_format=torch.channels_last))
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(got, expect, rtol=1e-4, atol=1e-4 * float(expect.abs().max()))
        assert torch.allclose(again, expect, rtol=1e-4, atol=1e-4 * float(expect.abs().max()))
        assert set(model.state_dict()) == keys and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert fold_batchnorm(plain) is plain   # nothing to fold: the same object


def test_npr_block_is_torchvisions_basic_block():
    """The NPR networks' own residual block computes what torchvision's does, under the same tensor names."""
    import torch
    from torchvision.models.resnet import BasicBlock as TV

    from ganscan.detectors.zoo.families import BasicBlock

    torch.manual_seed(0)
    for cin, cout, stride in ((8, 8, 1), (8, 16, 2)):
        down = None if stride == 1 and cin == cout else torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 1, stride=stride, bias=False), torch.nn.BatchNorm2d(cout))
        ref = TV(cin, cout, stride, down).eval()
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        ours = BasicBlock(cin, cout, stride, down).eval()
        assert set(ours.state_dict()) == set(ref.state_dict())
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(2, cin, 16, 16)
        with torch.no_grad():
            assert torch.equal(ours(x), ref(x))


def test_models_average_is_the_tensor_mean_and_scans_as_one_network(runner, cli, tmp_path):
    from ganscan.detectors.average import average_states
    from ganscan.detectors.zoo.families import NPRNet32Reference

    paths, nets = [], []
    for i in range(2):
        torch.manual_seed(i)
        net = NPRNet32Reference()
        with torch.no_grad():   # distinct BatchNorm statistics too, and counters that differ
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(), m.running_var.uniform_(0.5, 2.0), m.num_batches_tracked.fill_(10 + i)
        p = tmp_path / f"s{i}.safetensors"
        save_checkpoint(p, net.state_dict(), {"kind": "detector", "arch": "npr32-ref", "threshold": 0.4 + 0.2 * i,
                                               "name": f"seed{i}", "preprocessing": {"policy": "tiles"}})
        paths.append(str(p)), nets.append(net)
    out = tmp_path / "soup.safetensors"
    res = run_ok(runner, cli, ["models", "average", *paths, "-o", str(out), "--name", "soup"])
    assert "the average of 2" in res.output
    state, meta = load_checkpoint(out)
    a, b = nets[0].state_dict(), nets[1].state_dict()
    for k, v in state.items():
        if v.is_floating_point():
            assert torch.allclose(v, (a[k] + b[k]) / 2, atol=1e-6), k
        else:
            assert torch.equal(v, a[k]), k   # integer counters: the first's
    assert meta["arch"] == "npr32-ref" and meta["name"] == "soup" and abs(meta["threshold"] - 0.5) < 1e-9
    assert [s["sha256"] for s in meta["averaged_from"]] == [sha256_file(p) for p in paths]
    assert meta["preprocessing"] == {"policy": "tiles"}
    # a network averaged with itself is that network, logit for logit
    same = tmp_path / "same.safetensors"
    run_ok(runner, cli, ["models", "average", paths[0], paths[0], "-o", str(same)])
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(load_detector(str(same)).model(x), nets[0].eval()(x), atol=1e-4)
    # refused: one checkpoint, an existing output, different architectures or tensors
    assert runner.invoke(cli, ["models", "average", paths[0], "-o", str(tmp_path / "one.safetensors")]).exit_code != 0
    res = runner.invoke(cli, ["models", "average", *paths, "-o", str(out)])
    assert res.exit_code != 0 and "exists" in res.output
    other = tmp_path / "npr32.safetensors"
    save_checkpoint(other, build_detector("npr32").state_dict(), {"kind": "detector", "arch": "npr32"})
    res = runner.invoke(cli, ["models", "average", paths[0], str(other), "-o", str(tmp_path / "x.safetensors")])
    assert res.exit_code != 0 and "different architectures" in res.output
    res = runner.invoke(cli, ["models", "average", "ganscan-fusion-v10", "ganscan-fusion-v10", "-o",
                              str(tmp_path / "f.safetensors")])
    assert res.exit_code != 0 and "a fused detector" in res.output   # shipped names resolve; fusions are refused
    shipped = tmp_path / "twins.safetensors"
    run_ok(runner, cli, ["models", "average", "ganscan-twins-v10", "ganscan-twins-v10", "-o", str(shipped)])
    assert load_checkpoint(shipped)[1]["averaged_from"][0]["name"] == "ganscan-twins-v10"
    with pytest.raises(CheckpointError, match="other tensors"):
        average_states([a, {k: v for k, v in b.items() if k != "fc.bias"}])
    with pytest.raises(CheckpointError, match="fc.weight"):
        average_states([a, {**b, "fc.weight": torch.zeros(1, 3)}])
