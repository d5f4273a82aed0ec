"""Published detectors: state dicts in each reference layout (the reference code's names and shapes, random
values, a tiny CLIP ViT), saved as the projects ship them, imported with the CLI and scored by `ganscan scan`
and the library, against forward passes written here as the reference code computes them (preprocessing
included: PIL RGB, torchvision CenterCrop where the reference crops, ToTensor, Normalize)."""

import copy
import json
import pickle
import zipfile
from collections import OrderedDict

import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn
from torch.nn import functional as F

from conftest import EDGE, PHOTOS, ROOT, run_ok
from ganscan.core.checkpoint import read_metadata, sha256_file

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP_NORM = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
FAKES = ROOT / "examples" / "fakes"
SMALL = [EDGE / "hopper.webp", EDGE / "rgb24.bmp", FAKES / "progan-celeba64-seed1-000000.png",
         FAKES / "dcgan-cifar10-dog-seed1-000000.png"]  # RGB, no EXIF orientation; 127 px: an odd side


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """Images of at least 224 px; the 231x227 crop sits where torchvision's centre-crop offsets round."""
    odd = tmp_path_factory.mktemp("odd") / "odd231x227.png"
    Image.open(PHOTOS / "canon-eos-7d.jpg").convert("RGB").crop((100, 200, 331, 427)).save(odd)
    return [PHOTOS / "canon-eos-7d.jpg", PHOTOS / "nikon-dscn0010.jpg", EDGE / "targa.tga", odd]


def reference_input(path, crop=None, norm=IMAGENET):
    steps = ([T.CenterCrop(crop)] if crop else []) + [T.ToTensor(), T.Normalize(*norm)]
    return T.Compose(steps)(Image.open(path).convert("RGB"))[None]


# ---- ResNets as the reference code computes them (torchvision's Bottleneck: stride on the 3x3) ----

def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                        sd[p + ".bias"], False, 0.0, 1e-5)


def _trunk(x, sd, stem_stride, stem_pad, stages):
    x = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], stride=stem_stride, padding=stem_pad), sd, "bn1"))
    x = F.max_pool2d(x, 3, stem_stride, 1)
    for i, n in enumerate(stages):
        for b in range(n):
            p, s = f"layer{i + 1}.{b}", 2 if i and not b else 1
            out = F.relu(_bn(F.conv2d(x, sd[p + ".conv1.weight"]), sd, p + ".bn1"))
            out = F.relu(_bn(F.conv2d(out, sd[p + ".conv2.weight"], stride=s, padding=1), sd, p + ".bn2"))
            out = _bn(F.conv2d(out, sd[p + ".conv3.weight"]), sd, p + ".bn3")
            if b == 0:
                x = _bn(F.conv2d(x, sd[p + ".downsample.0.weight"], stride=s), sd, p + ".downsample.1")
            x = F.relu(out + x)
    return x


def ref_cnndetection(x, sd):  # CNNDetection networks/resnet.py: torchvision's ResNet-50, fc 2048 -> 1
    return F.linear(_trunk(x, sd, 2, 3, (3, 4, 6, 3)).mean((2, 3)), sd["fc.weight"], sd["fc.bias"])[:, 0]


def ref_npr(x, sd):  # NPR-DeepfakeDetection networks/resnet.py
    def interpolate(img, factor):
        down = F.interpolate(img, scale_factor=factor, mode="nearest", recompute_scale_factor=True)
        return F.interpolate(down, scale_factor=1 / factor, mode="nearest", recompute_scale_factor=True)

    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # odd sides: its commented-out crop (it fails)
    x = _trunk((x - interpolate(x, 0.5)) * 2.0 / 3.0, sd, 2, 1, (3, 4))
    return F.linear(x.mean((2, 3)), sd["fc1.weight"], sd["fc1.bias"])[:, 0]


def ref_dmid(x, sd):  # DMimageDetection res50stride1 (ChannelLinear per position); main.py: mean of the map
    f = _trunk(x, sd, 1, 3, (3, 4, 6, 3))
    logit_map = torch.einsum("nchw,oc->nohw", f, sd["fc.weight"]) + sd["fc.bias"][None, :, None, None]
    return logit_map[:, 0].mean((1, 2))


def resnet_state(stem, stages, fc, seed, fc_scale=0.5):
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()

    def conv(key, cout, cin, k):
        sd[key] = torch.randn(cout, cin, k, k, generator=g) * (2 / (cin * k * k)) ** 0.5

    def bn(p, c, scale=1.0):
        sd[p + ".weight"] = scale * (1 + 0.1 * torch.randn(c, generator=g))
        sd[p + ".bias"] = 0.1 * torch.randn(c, generator=g)
        sd[p + ".running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[p + ".running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[p + ".num_batches_tracked"] = torch.tensor(1000)

    conv("conv1.weight", 64, 3, stem)
    bn("bn1", 64)
    cin = 64
    for i, n in enumerate(stages):
        planes = 64 * 2 ** i
        for b in range(n):
            p = f"layer{i + 1}.{b}"
            conv(p + ".conv1.weight", planes, cin, 1)
            bn(p + ".bn1", planes)
            conv(p + ".conv2.weight", planes, planes, 3)
            bn(p + ".bn2", planes)
            conv(p + ".conv3.weight", planes * 4, planes, 1)
            bn(p + ".bn3", planes * 4, 0.3)
            if b == 0:
                conv(p + ".downsample.0.weight", planes * 4, cin, 1)
                bn(p + ".downsample.1", planes * 4)
            cin = planes * 4
    sd[fc + ".weight"] = torch.randn(1, cin, generator=g) * fc_scale / cin ** 0.5
    sd[fc + ".bias"] = torch.zeros(1)
    return sd


# ---- CLIP ViT as OpenAI's clip/model.py builds it (QuickGELU), tiny ----

class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, w, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(w, heads)
        self.ln_1 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(w, 4 * w), gelu=QuickGELU(),
                                             c_proj=nn.Linear(4 * w, w)))
        self.ln_2 = nn.LayerNorm(w)

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Visual(nn.Module):
    def __init__(self, w=64, layers=2, patch=14, image=224, out=32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn((image // patch) ** 2 + 1, w) * w ** -0.5)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[Block(w, w // 64) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, out) * w ** -0.5)

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        x = torch.cat([self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
        x = self.ln_pre(x + self.positional_embedding).permute(1, 0, 2)
        x = self.transformer.resblocks(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class TinyCLIP(nn.Module):
    """Image tower plus a stand-in text tower: the full CLIP file layout."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.visual = Visual()
        for m in self.visual.modules():  # LayerNorms off their identity init
            if isinstance(m, nn.LayerNorm):
                nn.init.normal_(m.weight, 1.0, 0.1)
                nn.init.normal_(m.bias, 0.0, 0.1)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(Block(64, 1))
        self.token_embedding = nn.Embedding(10, 64)
        self.positional_embedding = nn.Parameter(torch.randn(8, 64))
        self.ln_final = nn.LayerNorm(64)
        self.text_projection = nn.Parameter(torch.randn(64, 32))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, image):
        return self.visual(image)


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    """(reference module, OpenAI's TorchScript archive in fp16, OpenCLIP's plain state dict, UFD head)."""
    d = tmp_path_factory.mktemp("clip")
    ref = TinyCLIP().half().float().eval()  # OpenAI ships fp16; clip.load on the CPU makes it float
    with torch.no_grad():
        traced = torch.jit.trace(copy.deepcopy(ref), torch.zeros(1, 3, 224, 224))  # it shares parameters
    traced.half()
    torch.jit.save(traced, d / "ViT-L-14.pt")
    torch.save(ref.state_dict(), d / "open_clip_pytorch_model.bin")
    g = torch.Generator().manual_seed(3)
    head = {"weight": torch.randn(1, 32, generator=g) * 0.3, "bias": torch.tensor([0.1])}
    torch.save(head, d / "fc_weights.pth")
    return ref, d / "ViT-L-14.pt", d / "open_clip_pytorch_model.bin", d / "fc_weights.pth", head


def _compare(runner, cli, ckpt, images, reference):
    """Max |difference| of the logits (library) and of the probabilities (`ganscan scan`) from reference."""
    from ganscan.core.device import Precision
    from ganscan.data.decode import load_image
    from ganscan.detectors.inference import forward_logits
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.preprocess import preprocess

    want = [float(reference(p)) for p in images]
    det = load_detector(str(ckpt))
    cpu = Precision(torch.device("cpu"), None)
    got = forward_logits(det.model, [preprocess(load_image(str(p))[0], det.config) for p in images], cpu)
    out = run_ok(runner, cli, ["scan", *map(str, images), "--model", str(ckpt), "--workers", "0",
                                      "--precision", "fp32"]).stdout
    scores = {r["path"]: r["score"] for r in map(json.loads, out.splitlines())}
    probs = [scores[str(p)] for p in images]
    assert 0.02 < sum(torch.sigmoid(torch.tensor(want))) / len(want) < 0.98, want  # not saturated
    d_logit = max(abs(a - b) for a, b in zip(got, want))
    d_prob = max(abs(a - float(torch.sigmoid(torch.tensor(b)))) for a, b in zip(probs, want))
    print(f"{ckpt.name}: max |logit diff| {d_logit:.2e}, max |prob diff| {d_prob:.2e}, {len(images)} images")
    assert d_logit <= 1e-4 and d_prob <= 1e-4, (got, want, probs)


def _import(runner, cli, src, name, out, *extra):
    res = run_ok(runner, cli, ["models", "import", str(src), "--from", name, "-o", str(out), *extra])
    assert str(out) in res.output and "sha256" in res.output
    meta = read_metadata(out)
    assert meta["source"]["from"] == name and meta["source"]["files"][0]["sha256"] == sha256_file(src)
    return meta


@torch.no_grad()
def test_cnndetection_matches_reference(runner, cli, tmp_path, large):
    sd = resnet_state(7, (3, 4, 6, 3), "fc", seed=1)
    src = tmp_path / "blur_jpg_prob0.5.pth"
    torch.save({"model": sd, "optimizer": {}, "total_steps": 10}, src)  # CNNDetection's trainer wrapper
    meta = _import(runner, cli, src, "cnndetection", tmp_path / "cnnd.safetensors")
    assert meta["arch"] == "resnet50" and meta["preprocessing"]["policy"] == "crop"
    _compare(runner, cli, tmp_path / "cnnd.safetensors", large,
             lambda p: ref_cnndetection(reference_input(p, 224), sd))


@torch.no_grad()
def test_npr_matches_reference(runner, cli, tmp_path):
    sd = resnet_state(3, (3, 4), "fc1", seed=2)
    src = tmp_path / "NPR.pth"
    torch.save({"module." + k: v for k, v in sd.items()}, src)  # saved from DataParallel, as some copies are
    meta = _import(runner, cli, src, "npr", tmp_path / "npr.safetensors")
    assert meta["arch"] == "npr-tan2024" and meta["preprocessing"]["policy"] == "full"
    _compare(runner, cli, tmp_path / "npr.safetensors", SMALL + [PHOTOS / "nikon-dscn0010.jpg"],
             lambda p: ref_npr(reference_input(p), sd))


@torch.no_grad()
def test_dmid_matches_reference(runner, cli, tmp_path):
    sd = resnet_state(7, (3, 4, 6, 3), "fc", seed=3, fc_scale=0.05)
    (tmp_path / "Grag2021_latent").mkdir()
    src = tmp_path / "Grag2021_latent" / "model_epoch_best.pth"
    torch.save({"model": sd}, src)  # get_method_here.def_model reads dat['model']
    meta = _import(runner, cli, src, "dmid", tmp_path / "dmid.safetensors")
    assert meta["arch"] == "dmid" and meta["preprocessing"]["policy"] == "full"
    _compare(runner, cli, tmp_path / "dmid.safetensors", SMALL[1:],
             lambda p: ref_dmid(reference_input(p), sd))


@pytest.mark.parametrize("layout", ["openai", "openclip"])
@torch.no_grad()
def test_ufd_matches_reference(runner, cli, tmp_path, large, clip_files, layout):
    ref, openai, openclip, fc, head = clip_files
    clip = openai if layout == "openai" else openclip
    out = tmp_path / "ufd.safetensors"
    meta = _import(runner, cli, fc, "ufd", out, "--clip", str(clip))
    assert meta["arch"] == "ufd" and meta["source"]["files"][1]["sha256"] == sha256_file(clip)
    assert meta["arch_args"] == {"width": 64, "patch": 14, "out": 32, "layers": 2, "image": 224}
    assert meta["preprocessing"]["mean"] == list(CLIP_NORM[0]) and meta["preprocessing"]["input_size"] == 224

    def reference(p):  # UFD validate.py: CenterCrop(224), CLIP normalisation; CLIPModel: fc(encode_image(x))
        return F.linear(ref.visual(reference_input(p, 224, CLIP_NORM)), head["weight"], head["bias"])[:, 0]

    _compare(runner, cli, out, large, reference)


class _Evil:
    def __reduce__(self):
        return (print, ("this would have run",))


def _fails(runner, cli, args, *needles):
    res = runner.invoke(cli, ["models", "import", *map(str, args)])
    text = res.output.strip()
    assert res.exit_code == 1 and "Traceback" not in text and len(text.splitlines()) == 1, text
    assert all(n in text for n in needles), text
    assert "this would have run" not in res.output


def test_wrong_layouts_and_code_are_refused(runner, cli, tmp_path, clip_files):
    _, openai, _, fc, _ = clip_files
    npr, resnet, evil = tmp_path / "NPR.pth", tmp_path / "resnet.pth", tmp_path / "evil.pth"
    torch.save(resnet_state(3, (3, 4), "fc1", seed=0), npr)
    torch.save({"model": resnet_state(7, (3, 4, 6, 3), "fc", seed=0)}, resnet)
    with open(evil, "wb") as fh:
        pickle.dump({"model": _Evil()}, fh)
    script = tmp_path / "evil_script.pt"
    with zipfile.ZipFile(script, "w") as z:  # a TorchScript-like archive whose pickle calls a function
        z.writestr("m/code/__torch__.py", "")
        z.writestr("m/data.pkl", pickle.dumps(_Evil()))
    o = ["-o", tmp_path / "x.safetensors"]
    nprlike = "looks like an NPR ResNet"
    _fails(runner, cli, [resnet, "--from", "npr", *o], "looks like a ResNet-50 with one logit", "not NPR")
    _fails(runner, cli, [npr, "--from", "dmid", *o], nprlike, "not DMID")
    _fails(runner, cli, [fc, "--from", "cnndetection", *o], "looks like a bare linear", "not CNNDetection")
    _fails(runner, cli, [npr, "--from", "ufd", "--clip", openai, *o], nprlike, "not UFD's fc_weights")
    _fails(runner, cli, [fc, "--from", "ufd", "--clip", npr, *o], nprlike, "not a CLIP ViT")
    _fails(runner, cli, [openai, "--from", "npr", *o], "looks like CLIP weights")
    _fails(runner, cli, [fc, "--from", "ufd", *o], "needs --clip")
    for name in ("cnndetection", "npr", "dmid"):
        _fails(runner, cli, [evil, "--from", name, *o], "refused")
    _fails(runner, cli, [fc, "--from", "ufd", "--clip", evil, *o], "refused")
    _fails(runner, cli, [fc, "--from", "ufd", "--clip", script, *o], "refused")
    assert not (tmp_path / "x.safetensors").exists()


def test_models_lists_the_published_detectors(runner, cli):
    data = json.loads(run_ok(runner, cli, ["models", "--json"]).stdout)
    archs = {a["name"] for a in data["architectures"]}
    assert {p["from"] for p in data["published"]} == {"cnndetection", "npr", "ufd", "dmid"}
    assert {p["arch"] for p in data["published"]} <= archs
    assert "chuangchuangtan/NPR-DeepfakeDetection" in run_ok(runner, cli, ["models"]).stdout
