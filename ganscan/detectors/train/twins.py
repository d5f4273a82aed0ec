"""Band-aligned twins: training pairs for an artifact detector that differ only by a generator's trace.

For every real image crop ``X`` (native resolution, never resized first):

- the **fake** is ``tail(down(X))``: ``X`` down-scaled by 2 with a standard filter, then brought back up
  through a *generator tail* drawn from a bank (transposed convolution, nearest or bilinear up-sampling
  followed by convolutions, pixel shuffle, StyleGAN's zero insertion + [1,3,3,1] blur + convolution; with
  and without a convolution block before the up-sampling; random weights added to a standard
  interpolation, or weights briefly trained to reconstruct ``X``);
- the **real twin** is the same ``down(X)`` brought back up by a standard interpolation (nearest,
  bilinear, bicubic or Lanczos) for about half of the images, and ``X`` itself for the rest.

So both classes lack (or both keep) the top frequency octave, and what separates them is the tail's
convolutional trace, not "the image was resampled" (up-scaled real photos are real). Both members of a
pair are post-processed identically (same flip or 90-degree rotation, same blur, same JPEG quality)
and written in the same format and size, so neither format nor size tells the classes apart.

The bank is built from a seed: ``build_bank(seed, kinds, n_per_kind)``; ``TAIL_KINDS`` lists the
kinds, so a run can leave one kind out of training and validate on it (leave-one-family-out).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import nn
from torch.nn import functional as F

TAIL_KINDS = ("tconv", "nearest", "bilinear", "shuffle", "zeroins")
DOWN_FILTERS = {"box": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
UP_FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
              "lanczos": Image.LANCZOS}
# the filters a photo is enlarged with by a non-integer factor (nearest is left to scan's repeated_lines flag)
ENLARGE_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


class _ZeroInsert(nn.Module):
    """StyleGAN's up-sampling: zeros between the pixels, then a separable [1,3,3,1] low-pass (gain 4)."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = torch.outer(k, k)
        k = k / k.sum() * 4.0
        self.register_buffer("kernel", k.expand(channels, 1, 4, 4).clone())
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        up = x.new_zeros(n, c, 2 * h, 2 * w)
        up[..., ::2, ::2] = x
        up = F.pad(up, (2, 1, 2, 1), mode="reflect")
        return F.conv2d(up, self.kernel, groups=self.channels)


class Tail(nn.Module):
    """A generator's last stages: feature conv, optional block, 2x up-sampling of one kind, convs to RGB."""

    def __init__(self, kind: str, width: int, pre_block: bool, post_convs: int, act: str, skip: bool,
                 tconv_kernel: int = 4, out_kernel: int = 3):
        super().__init__()
        if kind not in TAIL_KINDS:
            raise ValueError(f"unknown tail kind {kind!r} (choose from {', '.join(TAIL_KINDS)})")
        self.kind, self.skip = kind, skip
        mk_act = (lambda: nn.LeakyReLU(0.2)) if act == "lrelu" else (lambda: nn.ReLU())

        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")

        layers: list[nn.Module] = [conv(3, width), mk_act()]
        if pre_block:
            layers += [conv(width, width), mk_act()]
        if kind == "tconv":
            k4 = tconv_kernel == 4
            layers.append(nn.ConvTranspose2d(width, width, 4 if k4 else 3, stride=2, padding=1,
                                             output_padding=0 if k4 else 1))
        elif kind in ("nearest", "bilinear"):
            layers += [nn.Upsample(scale_factor=2, mode=kind), conv(width, width)]
        elif kind == "shuffle":
            layers += [conv(width, width * 4), nn.PixelShuffle(2)]
        else:
            layers += [_ZeroInsert(width), conv(width, width)]
        layers.append(mk_act())
        for _ in range(post_convs):
            layers += [conv(width, width), mk_act()]
        layers.append(nn.Conv2d(width, 3, out_kernel, padding=out_kernel // 2,
                                padding_mode="reflect" if out_kernel > 1 else "zeros"))
        self.body = nn.Sequential(*layers)
        self.register_buffer("gain", torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x in [-1, 1], (N,3,h,w) -> (N,3,2h,2w)."""
        out = self.body(x) * self.gain
        if self.skip:
            out = out + F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return out


@dataclass
class TailSpec:
    kind: str
    width: int
    pre_block: bool
    post_convs: int
    act: str
    mode: str            # "random": random weights, residual on a bilinear up-sampling; "trained": fitted
    seed: int
    tconv_kernel: int = 4
    out_kernel: int = 3
    residual_std: float = 0.0  # random mode: std of the residual (on [-1, 1])

    def name(self) -> str:
        return (f"{self.kind}-w{self.width}{'-pre' if self.pre_block else ''}-p{self.post_convs}-{self.act}-"
                f"{self.mode}-s{self.seed}")


def sample_specs(seed: int, kinds: Iterable[str], n_per_kind: int) -> list[TailSpec]:
    rng = np.random.default_rng(seed)
    return [TailSpec(kind=kind, width=int(rng.choice([16, 32, 64])), pre_block=bool(rng.random() < 0.5),
                     post_convs=int(rng.integers(0, 3)), act=str(rng.choice(["lrelu", "relu"])),
                     mode="random" if i % 2 == 0 else "trained", seed=int(rng.integers(0, 2 ** 31)),
                     tconv_kernel=int(rng.choice([3, 4])), out_kernel=int(rng.choice([1, 3])),
                     residual_std=float(rng.uniform(0.01, 0.06)))
            for kind in kinds for i in range(n_per_kind)]


def to_tensor(img: Image.Image) -> torch.Tensor:
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(t: torch.Tensor) -> Image.Image:
    a = ((t.squeeze(0).permute(1, 2, 0).clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy()
    return Image.fromarray(a, "RGB")


def build_tail(spec: TailSpec, fit_crops: list[Image.Image] | None = None, steps: int = 120,
               crop: int = 48) -> Tail:
    """Build one tail: random weights scaled to ``residual_std``, or briefly trained to map down(X) to X."""
    g = torch.Generator().manual_seed(spec.seed)
    torch.manual_seed(spec.seed)
    tail = Tail(spec.kind, spec.width, spec.pre_block, spec.post_convs, spec.act, skip=spec.mode == "random",
                tconv_kernel=spec.tconv_kernel, out_kernel=spec.out_kernel)
    if spec.mode == "random":
        probe = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
        with torch.no_grad():
            std = float(tail.body(probe).std())
            tail.gain.fill_(spec.residual_std / max(std, 1e-8))
        return tail.eval()
    if not fit_crops:
        raise ValueError("a trained tail needs crops to fit")
    opt = torch.optim.Adam(tail.parameters(), lr=2e-3)
    rng = np.random.default_rng(spec.seed)
    for _ in range(steps):
        xs, ds = [], []
        for _ in range(8):
            c = random_crops(fit_crops[int(rng.integers(len(fit_crops)))], crop, 1, rng)[0]
            xs.append(to_tensor(c))
            ds.append(to_tensor(c.resize((crop // 2, crop // 2), Image.BOX)))
        x, d = torch.cat(xs), torch.cat(ds)
        loss = (tail(d) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return tail.eval()


def build_bank(seed: int, kinds: Iterable[str], n_per_kind: int, fit_crops: list[Image.Image],
               steps: int = 120, progress: Callable[[str], None] | None = None) -> list[tuple[TailSpec, Tail]]:
    bank = []
    for spec in sample_specs(seed, kinds, n_per_kind):
        bank.append((spec, build_tail(spec, fit_crops, steps=steps)))
        if progress:
            progress(spec.name())
    return bank


# --- pairs ---------------------------------------------------------------------------------------------

@dataclass
class PairConfig:
    size: int = 128                 # side of the pair's images (even)
    interp_real_prob: float = 0.5   # share of real twins that are down-scaled and standard-up-scaled
    jpeg_prob: float = 0.3          # both members JPEG-compressed at the same quality
    jpeg_quality: tuple[int, int] = (60, 100)
    blur_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 1.0)
    chain_prob: float = 0.0         # share of fakes made 4x: down-scaled 4x, then two tails in a row
    rescale_prob: float = 0.0       # share of pairs whose two members are enlarged alike by a non-integer factor
    rescale_range: tuple[float, float] = (1.2, 1.8)
    native_prob: float = 0.0        # share of pairs whose low-resolution source is a native crop (the centre of the
                                    # crop at 1/f of its side) instead of the crop down-scaled; such a pair's real
                                    # twin is always that source standard-up-scaled


def _geom(img: Image.Image, k: int) -> Image.Image:
    """k in 0..7: a flip and/or a 90-degree rotation (never an interpolating rotation)."""
    if k & 4:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    rot = k & 3
    return img.transpose([None, Image.ROTATE_90, Image.ROTATE_180, Image.ROTATE_270][rot]) if rot else img


def make_pair(crop: Image.Image, tail: Tail, cfg: PairConfig, rng: np.random.Generator,
              tail2: Tail | None = None) -> dict:
    """One (real, fake) pair from one crop of ``cfg.size``; returns both images and how they were made.

    With ``tail2`` the fake is made at 4x, as a generator's last two up-sampling stages make it: the crop
    down-scaled 4x, then ``tail`` and ``tail2`` in a row (the real twin is then the 4x down-scaled crop
    up-scaled by a standard filter, or the crop itself)."""
    s = cfg.size
    f = 4 if tail2 is not None else 2
    down_name = str(rng.choice(list(DOWN_FILTERS)))
    up_name = str(rng.choice(list(UP_FILTERS)))
    interp = bool(rng.random() < cfg.interp_real_prob)
    geom = int(rng.integers(0, 8))
    blur = bool(rng.random() < cfg.blur_prob)
    sigma = float(rng.uniform(*cfg.blur_sigma))
    jpeg = bool(rng.random() < cfg.jpeg_prob)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    # drawn only when asked, so that other recipes keep their pairs byte for byte
    native = cfg.native_prob > 0 and bool(rng.random() < cfg.native_prob)
    if native:   # a photo's own detail at its Nyquist frequency, which a down-scaling filter would remove
        x0 = (s - s // f) // 2
        down, interp, down_name = crop.crop((x0, x0, x0 + s // f, x0 + s // f)), True, "native"
    else:
        down = crop.resize((s // f, s // f), DOWN_FILTERS[down_name])
    with torch.no_grad():
        t = tail(to_tensor(down))
        fake = to_image(tail2(t.clamp(-1, 1)) if tail2 is not None else t)
    real = down.resize((s, s), UP_FILTERS[up_name]) if interp else crop
    factor, rs_name = 0.0, "none"   # drawn only when asked, so that other recipes keep their pairs byte for byte
    if cfg.rescale_prob > 0 and rng.random() < cfg.rescale_prob:
        factor, rs_name = float(rng.uniform(*cfg.rescale_range)), str(rng.choice(list(ENLARGE_FILTERS)))
    out = {}
    for name, im in (("real", real), ("fake", fake)):
        im = _geom(im, geom)
        if blur:
            im = im.filter(ImageFilter.GaussianBlur(sigma))
        out[name] = enlarge_centre(im, factor, ENLARGE_FILTERS[rs_name]) if factor else im
    out.update(down=down_name, up=up_name if interp else "none", geom=geom, blur=sigma if blur else 0.0,
               jpeg=quality if jpeg else 0, rescale=round(factor, 4), rescale_filter=rs_name)
    return out


def enlarge_centre(im: Image.Image, factor: float, resample) -> Image.Image:
    """``im`` enlarged by ``factor`` (> 1) and centre-cropped back to its own size, as a photo enlarged by a
    non-integer factor looks in any crop of it."""
    w, h = im.size
    big = im.resize((max(w, round(w * factor)), max(h, round(h * factor))), resample)
    x0, y0 = (big.width - w) // 2, (big.height - h) // 2
    return big.crop((x0, y0, x0 + w, y0 + h))


def save_pair_image(im: Image.Image, path_stem: Path, jpeg_quality: int) -> Path:
    path = path_stem.with_suffix(".jpg" if jpeg_quality else ".png")
    im.save(path, **({"format": "JPEG", "quality": jpeg_quality, "subsampling": 2} if jpeg_quality
                     else {"format": "PNG", "compress_level": 1}))
    return path


def random_crops(img: Image.Image, size: int, n: int, rng: np.random.Generator) -> list[Image.Image]:
    """Up to ``n`` crops of ``size`` at native resolution, on even offsets; none when the image is smaller."""
    if img.width < size or img.height < size:
        return []
    out = []
    for _ in range(n):
        x0 = int(rng.integers(0, img.width - size + 1)) & ~1
        y0 = int(rng.integers(0, img.height - size + 1)) & ~1
        out.append(img.crop((x0, y0, x0 + size, y0 + size)))
    return out


def fit_crop_pool(paths: list[str], load: Callable, n: int = 64, size: int = 64, seed: int = 7,
                  per_path: int = 1) -> list[Image.Image]:
    """``per_path`` crops of ``size`` from each of about ``n`` of ``paths``, spread over them: what the trained
    tails (and the translation generators) learn to reconstruct."""
    from ganscan.data.decode import DecodeError

    rng = np.random.default_rng(seed)
    crops: list[Image.Image] = []
    for p in paths[:: max(1, len(paths) // n)]:
        try:
            crops += random_crops(load(p), size, per_path, rng)
        except (DecodeError, OSError, ValueError):
            continue
    return crops


def crops_per_image(pixels: int, size: int, cap: int) -> int:
    """More crops from larger photos: one per ~16 crop areas, 1..cap."""
    return int(max(1, min(cap, math.ceil(pixels / (16 * size * size)))))


def write_twins(sources: list[str], out_dir: str | os.PathLike, bank: list[tuple[TailSpec, Tail]],
                cfg: PairConfig, seed: int, max_crops: int = 8, load: Callable | None = None,
                progress: Callable[[int, int], None] | None = None,
                on_error: Callable[[str], None] | None = None) -> dict:
    """Write OUT/0_real and OUT/1_fake pairs (same stem), and OUT/pairs.csv; returns counts.

    ``load(path) -> PIL.Image`` decodes a source (default: ganscan's guarded decoder); a source that does
    not decode is counted and skipped. The same sources, bank and seed write the same files again.
    """
    import csv

    from ganscan.data.decode import DecodeError, load_image

    if cfg.chain_prob > 0 and cfg.size % 4:
        raise ValueError(f"4x chains need a pair size that is a multiple of 4, not {cfg.size}")
    load = load or (lambda p: load_image(p)[0])
    out = Path(out_dir)
    (out / "0_real").mkdir(parents=True, exist_ok=True)
    (out / "1_fake").mkdir(parents=True, exist_ok=True)
    counts = {"sources": 0, "pairs": 0, "skipped_small": 0, "errors": 0}
    rows = []
    for i, src in enumerate(sources):
        stem0 = hashlib.sha1(src.encode()).hexdigest()[:12]
        rng = np.random.default_rng([seed, int(stem0, 16)])
        try:
            img = load(src)
        except (DecodeError, OSError, ValueError) as exc:
            counts["errors"] += 1
            if on_error:
                on_error(f"{src}: skipped ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        else:
            crops = random_crops(img, cfg.size, crops_per_image(img.width * img.height, cfg.size, max_crops), rng)
            if not crops:
                counts["skipped_small"] += 1
            counts["sources"] += 1
            for j, crop in enumerate(crops):
                spec, tail = bank[int(rng.integers(len(bank)))]
                name, tail2 = spec.name(), None
                if cfg.chain_prob > 0 and rng.random() < cfg.chain_prob:
                    spec2, tail2 = bank[int(rng.integers(len(bank)))]
                    name += "+" + spec2.name()
                pair = make_pair(crop, tail, cfg, rng, tail2=tail2)
                rp = save_pair_image(pair["real"], out / "0_real" / f"{stem0}_{j}", pair["jpeg"])
                fp = save_pair_image(pair["fake"], out / "1_fake" / f"{stem0}_{j}", pair["jpeg"])
                rows.append({"source": src, "real": rp.name, "fake": fp.name, "tail": name,
                             "down": pair["down"], "real_up": pair["up"], "geom": pair["geom"], "blur": pair["blur"],
                             "jpeg": pair["jpeg"], **({"rescale": pair["rescale"], "rescale_filter": pair["rescale_filter"]}
                                                      if cfg.rescale_prob > 0 else {})})
                counts["pairs"] += 1
        if progress:
            progress(i + 1, len(sources))
    with open(out / "pairs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["source", "real", "fake", "tail", "down", "real_up", "geom", "blur",
                                          "jpeg"] + (["rescale", "rescale_filter"] if cfg.rescale_prob > 0 else []))
        w.writeheader()
        w.writerows(rows)
    return counts
