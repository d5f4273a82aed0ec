#!/usr/bin/env python3
"""A family of our own image-to-image (translation) generators, trained briefly on our reals, and their twins.

    python examples/translation_family.py bank  --work runs/twins --seed 0 --archs resnet3,resnet4,resnet-up
    python examples/translation_family.py pairs --work runs/twins --bank bank-s0 --out translate --side train
    python examples/translation_family.py pairs --work runs/twins --bank bank-s9 --out heldout/translate --side held

Image-translation GANs (CycleGAN, pix2pix, StarGAN) are encoder-decoders: strided convolutions down,
residual blocks (or a U-Net's skips), transposed convolutions back up, a last convolution and tanh, with
instance norm, trained for a task. Our twin tails are one up-sampling stage from a down-scaled crop, and
every family we own is easy for the detectors where translation GANs are not. This script builds such
networks itself, with our own code, and trains each for a few minutes on crops of the training-side reals
(``train_twins.py``'s 90 %) for one task: reconstruct the crop from itself, from a 2x-blurred copy, from
its grey copy or from a noisy copy (L1 on pixels and on their gradients, so outputs stay sharp).

``pairs`` writes band-aligned twins with them: the fake is ``G(task(X))`` at ``X``'s own size; its real twin
is ``X`` itself for half of the crops and ``X`` down-scaled 2x and brought back by a standard filter for
the rest; both get the same flip or 90-degree rotation, blur and JPEG quality, as ``ganscan twins`` does.

Architectures (``--archs``): ``resnet3`` (2 stride-2 convs down, residual blocks, 3x3 transposed convs up:
CycleGAN's shape), ``resnet4`` (4x4 kernels down and up: StarGAN's), ``resnet-up`` (nearest up-sampling +
conv instead of transposed convs), ``resnet-bilinear`` (bilinear up-sampling + conv), ``resnet-style`` (StyleGAN's
synthesis up-sampling: zero insertion, a [1,3,3,1] blur, a conv, and per-pixel noise scaled per channel),
``unet`` (pix2pix's U-Net: 4x4 stride-2 convs down, transposed convs up with skips, the last layer a transposed conv
into tanh).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_twins import sources  # noqa: E402

ARCHS = ("resnet3", "resnet4", "resnet-up", "unet", "resnet-bilinear", "resnet-style")
TASKS = ("identity", "sr", "gray", "noise")


def norm(c: int, kind: str) -> nn.Module:
    return nn.InstanceNorm2d(c, affine=True) if kind == "instance" else nn.BatchNorm2d(c)


class ResBlock(nn.Module):
    def __init__(self, c: int, nk: str):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect"), norm(c, nk), nn.ReLU(True),
                                  nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect"), norm(c, nk))

    def forward(self, x):
        return x + self.body(x)


class StyleUp(nn.Module):
    """StyleGAN's up-sampling layer, written from its description: zeros inserted between the pixels, a [1,3,3,1]
    blur (gain 4), a 3x3 conv, and per-pixel noise scaled per channel (a fixed generator per layer, so the same
    input gives the same output)."""

    def __init__(self, cin: int, cout: int, seed: int = 0):
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = k[:, None] * k[None, :]
        self.register_buffer("blur", (k / k.sum() * 4).expand(cin, 1, 4, 4).clone())
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.noise_strength = nn.Parameter(torch.full((1, cout, 1, 1), 0.02))
        self.seed = seed

    def forward(self, x):
        n, c, h, w = x.shape
        z = x.new_zeros(n, c, 2 * h, 2 * w)
        z[..., ::2, ::2] = x
        z = F.conv2d(F.pad(z, (2, 1, 2, 1)), self.blur.to(z.dtype), groups=c)
        y = self.conv(z)
        g = torch.Generator().manual_seed(self.seed)
        return y + self.noise_strength * torch.randn((n, 1, 2 * h, 2 * w), generator=g).to(y.dtype)


class ResnetGen(nn.Module):
    """c7 -> two stride-2 convs -> residual blocks -> two 2x up-samplings -> c7 -> tanh."""

    def __init__(self, arch: str, ngf: int, blocks: int, nk: str):
        super().__init__()
        k = 4 if arch == "resnet4" else 3
        layers: list[nn.Module] = [nn.Conv2d(3, ngf, 7, padding=3, padding_mode="reflect"), norm(ngf, nk), nn.ReLU(True)]
        c = ngf
        for _ in range(2):
            layers += [nn.Conv2d(c, 2 * c, k, stride=2, padding=1), norm(2 * c, nk), nn.ReLU(True)]
            c *= 2
        layers += [ResBlock(c, nk) for _ in range(blocks)]
        for i in range(2):
            if arch == "resnet-up":
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c // 2, 3, padding=1)]
            elif arch == "resnet-bilinear":
                layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                           nn.Conv2d(c, c // 2, 3, padding=1)]
            elif arch == "resnet-style":
                layers.append(StyleUp(c, c // 2, seed=i))
            elif k == 4:
                layers.append(nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1))
            else:
                layers.append(nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1))
            layers += [norm(c // 2, nk), nn.ReLU(True)]
            c //= 2
        layers += [nn.Conv2d(c, 3, 7, padding=3, padding_mode="reflect"), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class UNetGen(nn.Module):
    """pix2pix's U-Net: 4x4 stride-2 convs down (LeakyReLU), transposed convs up (ReLU) with skips."""

    def __init__(self, ngf: int, depth: int, nk: str):
        super().__init__()
        chans = [min(ngf * 2 ** i, ngf * 8) for i in range(depth)]
        self.down = nn.ModuleList()
        cin = 3
        for i, c in enumerate(chans):
            mods: list[nn.Module] = [nn.Conv2d(cin, c, 4, stride=2, padding=1)]
            if 0 < i < depth - 1:
                mods.append(norm(c, nk))
            self.down.append(nn.Sequential(*mods))
            cin = c
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            cin = chans[i] * (1 if i == depth - 1 else 2)
            cout = chans[i - 1] if i > 0 else 3
            mods = [nn.ReLU(True), nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
            mods += [norm(cout, nk)] if i > 0 else [nn.Tanh()]
            self.up.append(nn.Sequential(*mods))

    def forward(self, x):
        skips = []
        for i, d in enumerate(self.down):
            x = d(x if i == 0 else F.leaky_relu(x, 0.2))
            skips.append(x)
        for i, u in enumerate(self.up):
            x = u(x if i == 0 else torch.cat([x, skips[-1 - i]], 1))
        return x


def build(spec: dict) -> nn.Module:
    torch.manual_seed(spec["seed"])
    if spec["arch"] == "unet":
        return UNetGen(spec["ngf"], spec["depth"], spec["norm"])
    return ResnetGen(spec["arch"], spec["ngf"], spec["blocks"], spec["norm"])


def degrade(x: torch.Tensor, task: str, g: torch.Generator | None = None) -> torch.Tensor:
    if task == "sr":
        h, w = x.shape[-2:]
        return F.interpolate(F.avg_pool2d(x, 2), size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)
    if task == "gray":
        return x.mean(1, keepdim=True).expand_as(x)
    if task == "noise":
        return (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return x


def sample_specs(seed: int, archs: list[str], per_arch: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    specs = []
    for arch in archs:
        for i in range(per_arch):
            specs.append({"arch": arch, "task": TASKS[(i + int(rng.integers(4))) % 4], "ngf": int(rng.choice([16, 32])),
                          "blocks": int(rng.integers(2, 5)), "depth": 5,
                          "norm": "instance" if rng.random() < 0.75 else "batch", "seed": int(rng.integers(2 ** 31))})
    return specs


def spec_name(s: dict) -> str:
    return f"{s['arch']}-{s['task']}-g{s['ngf']}-{s['norm'][:4]}{'-adv' if s.get('adv') else ''}-s{s['seed']}"


def patch_discriminator(seed: int) -> nn.Module:
    """pix2pix's PatchGAN, three layers (70x70 receptive field), on the output alone."""
    torch.manual_seed(seed + 1)
    return nn.Sequential(nn.Conv2d(3, 32, 4, 2, 1), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(32, 64, 4, 2, 1), nn.InstanceNorm2d(64, affine=True), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(64, 128, 4, 1, 1), nn.InstanceNorm2d(128, affine=True), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(128, 1, 4, 1, 1))


def train_one(spec: dict, pool: list[Image.Image], steps: int, crop: int, log, adv: float = 0.0,
              decay: float = 0.0, bf16: bool = True) -> nn.Module:
    """L1 on pixels and gradients; with ``adv`` > 0 also a least-squares GAN loss against a PatchGAN critic
    (weight ``adv``), as translation GANs are trained, which pushes outputs toward the reals' statistics.
    With ``decay`` > 0 the learning rates fall linearly to zero over that last share of the steps (CycleGAN's
    schedule), so a long run ends converged. ``bf16``: the forward pass under bf16 autocast (the shipped banks were
    trained so, on a CPU with AMX); False: fp32."""
    from ganscan.detectors.train.twins import random_crops, to_tensor

    g = build(spec)
    opt = torch.optim.Adam(g.parameters(), lr=2e-4 if spec["arch"] == "unet" else 5e-4, betas=(0.5, 0.999))
    d = patch_discriminator(spec["seed"]) if adv > 0 else None
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999)) if d is not None else None
    rng = np.random.default_rng(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"])
    def dy(t):
        return t[..., 1:, :] - t[..., :-1, :], t[..., :, 1:] - t[..., :, :-1]

    opts = [o for o in (opt, opt_d) if o is not None]
    lr0 = [o.param_groups[0]["lr"] for o in opts]
    start = steps - int(decay * steps)
    t0 = time.time()
    for step in range(steps):
        if step >= start:
            for o, lr in zip(opts, lr0):
                o.param_groups[0]["lr"] = lr * (steps - step) / (steps - start + 1)
        x = torch.cat([to_tensor(random_crops(pool[int(rng.integers(len(pool)))], crop, 1, rng)[0])
                       for _ in range(8)])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = g(degrade(x, spec["task"], gen)).float()
        loss = (y - x).abs().mean() + sum((a - b).abs().mean() for a, b in zip(dy(y), dy(x)))
        if d is not None:
            loss = loss + adv * ((d(y) - 1) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if d is not None:
            loss_d = ((d(x) - 1) ** 2).mean() + (d(y.detach()) ** 2).mean()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"{spec_name(spec)}: step {step + 1}/{steps} loss {float(loss.detach()):.3f} {time.time() - t0:.0f} s")
    return g.eval()


def bank_bf16(precision: str) -> bool:
    """Whether a bank trains under bf16 autocast: ``auto`` where the CPU computes bf16 natively (AVX-512 BF16 or AMX,
    as on the machine that trained the shipped banks), fp32 elsewhere, where emulated bf16 is about 10x slower than
    fp32; ``bf16`` or ``fp32`` forces it (``ganscan.core.device.choose_precision``'s rule on the CPU). The nets, and
    so the pairs, differ between the two."""
    from ganscan.core.device import choose_precision

    return choose_precision(torch.device("cpu"), precision).autocast_dtype is torch.bfloat16


def cmd_bank(args) -> None:
    from safetensors.torch import save_file

    from ganscan.data.decode import load_image
    from ganscan.detectors.train.twins import fit_crop_pool

    torch.set_num_threads(args.threads)
    out = Path(args.work) / "translate-banks" / f"bank-s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    todo = []
    for spec in sample_specs(args.seed, args.archs.split(","), args.per_arch):
        spec["adv"] = args.adv
        if args.width:
            spec["ngf"] = args.width
        if args.blocks:
            spec["blocks"] = args.blocks
        f = out / (spec_name(spec) + ".safetensors")
        if not f.exists():
            todo.append((spec, f))
    if not todo:
        print(f"{out}: trained")
        return
    pool = fit_crop_pool(sources(Path(args.data), held=args.side == "held"), lambda p: load_image(p)[0],
                         n=args.pool, size=96, seed=args.seed, per_path=2)
    bf16 = bank_bf16(args.precision)
    print(f"{len(pool)} crops to train on, {'bf16' if bf16 else 'fp32'}", flush=True)
    for spec, f in todo:
        g = train_one(spec, pool, args.steps, 96, lambda m: print(m, flush=True), adv=args.adv, decay=args.decay,
                      bf16=bf16)
        save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(f), metadata={"spec": json.dumps(spec)})


def load_bank(folder: Path) -> list[tuple[dict, nn.Module]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    bank = []
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            spec = json.loads(h.metadata()["spec"])
        g = build(spec)
        g.load_state_dict(load_file(str(f)))
        bank.append((spec, g.eval()))
    if not bank:
        sys.exit(f"error: no generators in {folder} (run the bank command first)")
    return bank


def cmd_pairs(args) -> None:
    from ganscan.data.decode import DecodeError, load_image
    from ganscan.detectors.train.twins import (DOWN_FILTERS, UP_FILTERS, _geom, crops_per_image, random_crops,
                                               save_pair_image, to_image, to_tensor)

    out = Path(args.work) / args.out
    if (out / "pairs.csv").exists():
        print(f"{out}: exists")
        return
    torch.set_num_threads(args.threads)
    bank = load_bank(Path(args.work) / "translate-banks" / args.bank)
    (out / "0_real").mkdir(parents=True, exist_ok=True)
    (out / "1_fake").mkdir(parents=True, exist_ok=True)
    srcs = sources(Path(args.data), held=args.side == "held")[:: args.every]
    rows, t0 = [], time.time()
    for i, src in enumerate(srcs):
        stem0 = hashlib.sha1(src.encode()).hexdigest()[:12]
        rng = np.random.default_rng([args.seed, int(stem0, 16)])
        try:
            img = load_image(src)[0]
        except (DecodeError, OSError, ValueError):
            continue
        for j, crop in enumerate(random_crops(img, args.size, crops_per_image(img.width * img.height, args.size,
                                                                                args.max_crops), rng)):
            spec, g = bank[int(rng.integers(len(bank)))]
            gen = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
            with torch.no_grad():
                fake = to_image(g(degrade(to_tensor(crop), spec["task"], gen)))
            interp = rng.random() < 0.5
            down_name, up_name = str(rng.choice(list(DOWN_FILTERS))), str(rng.choice(list(UP_FILTERS)))
            s = args.size
            real = crop.resize((s // 2, s // 2), DOWN_FILTERS[down_name]).resize((s, s), UP_FILTERS[up_name]) \
                if interp else crop
            geom = int(rng.integers(0, 8))
            sigma = float(rng.uniform(0.2, 1.0)) if rng.random() < 0.1 else 0.0
            q = int(rng.integers(60, 101)) if rng.random() < 0.3 else 0
            names = []
            for cls, im in (("0_real", real), ("1_fake", fake)):
                im = _geom(im, geom)
                if sigma:
                    im = im.filter(ImageFilter.GaussianBlur(sigma))
                names.append(save_pair_image(im, out / cls / f"{stem0}_{j}", q).name)
            rows.append({"source": src, "real": names[0], "fake": names[1], "generator": spec_name(spec),
                         "real_up": up_name if interp else "none", "geom": geom, "blur": sigma, "jpeg": q})
        if (i + 1) % 200 == 0 or i + 1 == len(srcs):
            print(f"{out}: {i + 1}/{len(srcs)} sources, {len(rows)} pairs, {time.time() - t0:.0f} s", flush=True)
    with open(out / "pairs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def split_halves(src: Path, fit: Path, report: Path) -> dict:
    """Link a held-out pair folder's two halves (``twins_sets.half`` of the file name, so both twins of a
    pair fall in the same half) into FIT and REPORT."""
    from twins_sets import half, link

    n = {"calib": 0, "report": 0}
    for cls in ("0_real", "1_fake"):
        for f in sorted((src / cls).iterdir()):
            h = half(f.name)
            n[h] += 1
            link(f, (fit if h == "calib" else report) / cls / f.name)
    return n


def merge_sets(dst: Path, parts: dict[str, Path]) -> None:
    """DST/0_real and DST/1_fake linking every part's files, each name prefixed by its part's key."""
    from twins_sets import link

    for cls in ("0_real", "1_fake"):
        for key, src in parts.items():
            for f in sorted((src / cls).iterdir()):
                link(f, dst / cls / f"{key}_{f.name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("bank", "pairs"):
        p = sub.add_parser(name)
        p.add_argument("--data", default="../shared/data")
        p.add_argument("--work", default="runs/twins")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--side", choices=["train", "held"], default="train",
                       help="which reals: the training-side 90 %% or the held-out 10 %%")
        p.add_argument("--threads", type=int, default=1)
    b = sub.choices["bank"]
    b.add_argument("--archs", default=",".join(ARCHS[:4]))   # the first bank's four; the two later decoders by name
    b.add_argument("--per-arch", type=int, default=4)
    b.add_argument("--steps", type=int, default=300)
    b.add_argument("--pool", type=int, default=400, help="photos the training crops come from")
    b.add_argument("--adv", type=float, default=0.0, help="weight of a PatchGAN adversarial loss (0: L1 only)")
    b.add_argument("--decay", type=float, default=0.0, help="share of the steps over which the LR falls to 0")
    b.add_argument("--width", type=int, default=0, help="base channels of every net (0: drawn from 16 and 32)")
    b.add_argument("--blocks", type=int, default=0, help="residual blocks of every ResNet (0: drawn from 2-4)")
    b.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bf16 autocast where the CPU has native bf16 (as the shipped build), else fp32")
    p = sub.choices["pairs"]
    p.add_argument("--bank", required=True, help="a folder under WORK/translate-banks")
    p.add_argument("--out", required=True, help="the pair folder, under WORK")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--max-crops", type=int, default=8)
    p.add_argument("--every", type=int, default=1, help="use every n-th source")
    args = ap.parse_args()
    (cmd_bank if args.cmd == "bank" else cmd_pairs)(args)


if __name__ == "__main__":
    main()
