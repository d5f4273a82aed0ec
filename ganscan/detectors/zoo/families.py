"""Detector families beyond the ImageNet zoo.

- ``npr``: Neighbouring Pixel Relationships (Tan et al. 2024): the input minus its nearest-neighbour
  up-sampled, down-sampled copy, fed to a ResNet cut after its second stage, trained from scratch.
- ``spectral-lr``: the azimuthally averaged log power spectrum of each colour channel, standardised, and a
  linear layer: logistic regression on spectra (Durall et al. 2020), trainable like any detector.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ganscan.detectors.registry import IMAGENET_MEAN, IMAGENET_STD, register_detector


def npr_residual(x: torch.Tensor) -> torch.Tensor:
    """x - up(down(x)) with nearest-neighbour resampling by 2: what up-sampling layers leave behind."""
    h, w = x.shape[-2] - x.shape[-2] % 2, x.shape[-1] - x.shape[-1] % 2
    x = x[..., :h, :w]
    down = x[..., ::2, ::2]
    return x - down.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def octave_residuals(x: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) -> (N,2C,H',W'), H' and W' cut to multiples of 4: the top-octave residual ``npr_residual(x)`` and
    the second octave's, ``up2(npr_residual(down2(x)))`` = up2(down2(x)) - up4(down4(x)) (nearest throughout):
    what the last two up-sampling layers of a generator leave behind."""
    h, w = x.shape[-2] - x.shape[-2] % 4, x.shape[-1] - x.shape[-1] % 4
    x = x[..., :h, :w]
    second = npr_residual(x[..., ::2, ::2]).repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return torch.cat([npr_residual(x), second], dim=1)


class BasicBlock(nn.Module):
    """A ResNet basic block with torchvision's layer names (``conv1``, ``bn1``, ``conv2``, ``bn2``,
    ``downsample``), so checkpoints keep their keys; defined here because importing torchvision costs more
    than a second, longer than scanning a few images."""

    def __init__(self, cin: int, cout: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


@register_detector("npr", input_size=64, policy="tiles", max_tiles=16, classifier=("fc.",), family="npr",
                   description="NPR residual + ResNet cut after stage 2, from scratch (Tan et al. 2024)")
class NPRNet(nn.Module):
    def __init__(self, width: int = 64, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
                                  nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))

        def stage(cin, cout, stride):
            down = None
            if stride != 1 or cin != cout:
                down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            return nn.Sequential(BasicBlock(cin, cout, stride, down), BasicBlock(cout, cout))

        self.layer1 = stage(width, width, 2)
        self.layer2 = stage(width, width * 2, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 2, 1)

    residual = staticmethod(npr_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.residual(x) * 4.0  # residuals are small; a fixed gain keeps early activations in range
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_detector("npr32", input_size=64, policy="tiles", max_tiles=16, classifier=("fc.",), family="npr",
                   description="npr at half the width (32/64 channels): a quarter of its multiply-adds")
class NPRNet32(NPRNet):
    def __init__(self):
        super().__init__(width=32)


@register_detector("npr32-2oct", input_size=64, policy="tiles", max_tiles=16, classifier=("fc.",), family="npr",
                   description="npr32 fed the top two octaves' NPR residuals (6 channels)")
class NPRNet32TwoOctave(NPRNet):
    """npr32 that also reads the second octave (``octave_residuals``): its stem takes six channels, the first
    three the top octave as npr32's. An npr32 checkpoint initialises it, the second octave's stem weights zero
    (``widen_stem``), so it starts as that network, output for output."""
    residual = staticmethod(octave_residuals)

    def __init__(self):
        super().__init__(width=32, in_channels=6)


def enlarged_twin(x: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) -> the same tiles down-scaled 2x (bicubic, antialiased) and enlarged back (bicubic): what a
    standard 2x enlargement of the tile's own half-size copy looks like (odd sizes cut to even)."""
    h, w = x.shape[-2] - x.shape[-2] % 2, x.shape[-1] - x.shape[-1] % 2
    x = x[..., :h, :w]
    small = F.interpolate(x, size=(h // 2, w // 2), mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)


@register_detector("npr32-ref", input_size=64, policy="tiles", max_tiles=16, classifier=("fc.",), family="npr",
                   description="npr32 read against the tile's own 2x bicubic enlargement: g(x) - g(T(x))")
class NPRNet32Reference(NPRNet32):
    """npr32 whose logit is ``g(x) - g(enlarged_twin(x))``: the tile against a standard enlargement of its own
    half-size copy, which an image that is already such an enlargement matches. The same tensors as ``npr32``
    (a checkpoint of either initialises the other); both views go through the network in one batch, so its
    BatchNorm statistics cover both."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        both = super().forward(torch.cat([x[..., :x.shape[-2] // 2 * 2, :x.shape[-1] // 2 * 2], enlarged_twin(x)]))
        return both[:n] - both[n:]


def widen_stem(state: dict, in_channels: int) -> dict:
    """An NPR network's tensors with the stem's input channels zero-padded to ``in_channels``."""
    w = state["stem.0.weight"]
    pad = w.new_zeros(w.shape[0], in_channels - w.shape[1], *w.shape[2:])
    return {**state, "stem.0.weight": torch.cat([w, pad], dim=1)}


LUMA = (0.299, 0.587, 0.114)   # ITU-R BT.601, as JPEG's colour transform


def luma_views(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD, weights=LUMA) -> torch.Tensor:
    """(N,3,H,W) normalised with ``mean``/``std`` -> the luminance of the same pixels in all three channels,
    normalised the same way (each of the three a sequence or an already shaped (1,3,1,1) tensor)."""
    m, sd, w = (torch.as_tensor(v, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) for v in (mean, std, weights))
    y = ((x * sd + m) * w).sum(1, keepdim=True)
    return (y - m) / sd


@register_detector("npr32-luma", input_size=64, policy="tiles", max_tiles=16, classifier=("fc.",), family="npr",
                   description="npr32 fed the tile's luminance only (Y in all three input channels)")
class NPRNet32Luma(NPRNet32):
    """npr32 on luminance: the same tensors as ``npr32`` (a checkpoint of either initialises the other; the
    constants below are not saved)."""

    def __init__(self):
        super().__init__()
        for name, value in (("luma_mean", IMAGENET_MEAN), ("luma_std", IMAGENET_STD), ("luma_weights", LUMA)):
            self.register_buffer(name, torch.tensor(value).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(luma_views(x, self.luma_mean, self.luma_std, self.luma_weights))


def radial_profile(x: torch.Tensor, bins: int) -> torch.Tensor:
    """(N,C,H,W) -> (N,C*bins): mean log power per frequency ring, per channel."""
    n, c, h, w = x.shape
    spec = torch.fft.fftshift(torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)), dim=(-2, -1))
    logp = torch.log1p(spec.abs() ** 2)
    yy = torch.arange(h, device=x.device).view(h, 1) - h // 2
    xx = torch.arange(w, device=x.device).view(1, w) - w // 2
    r = torch.sqrt((yy.float() / (h / 2)) ** 2 + (xx.float() / (w / 2)) ** 2)
    idx = torch.clamp((r * bins).long(), max=bins - 1).view(-1)
    onehot = F.one_hot(idx, bins).float()  # (H*W, bins)
    sums = logp.reshape(n, c, h * w) @ onehot
    return (sums / onehot.sum(0).clamp(min=1)).reshape(n, c * bins)


@register_detector("spectral-lr", input_size=64, policy="tiles", max_tiles=16, classifier=("fc.",),
                   family="spectral", description="log power spectrum profile + logistic regression (Durall et al.)")
class SpectralLR(nn.Module):
    def __init__(self, bins: int = 32, channels: int = 3):
        super().__init__()
        self.bins = bins
        self.norm = nn.BatchNorm1d(bins * channels, affine=False)  # running standardisation of features
        self.fc = nn.Linear(bins * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            feats = radial_profile(x.float(), self.bins)
        return self.fc(self.norm(feats))
