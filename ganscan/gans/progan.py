"""Progressive GAN (Karras et al. 2018) at a scale a CPU can train.

Progressive growing from 4x4 with fade-in of each new resolution, equalised learning rate, pixel-wise
feature normalisation in the generator, minibatch standard deviation in the discriminator, and the
WGAN-GP loss with the drift term. ``widths`` lists the channels per resolution (4x4 first); the last
value is reused for higher resolutions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganscan.gans.registry import register_gan

SQRT2 = math.sqrt(2.0)


class EqConv2d(nn.Module):
    """Conv with weights drawn from N(0, 1) and scaled at run time by He's constant (equalised lr)."""

    def __init__(self, cin: int, cout: int, kernel: int, gain: float = SQRT2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin * kernel * kernel)
        self.pad = kernel // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int, gain: float = SQRT2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append one feature map: the average over features of the stddev across each group of images."""
    n, c, h, w = x.shape
    g = min(group, n)
    if n % g:
        g = n
    y = x.reshape(g, -1, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # (n // g,)
    y = y.view(1, -1, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], dim=1)


def _lrelu(x):
    return F.leaky_relu(x, 0.2)


def _channels(widths, level: int) -> int:
    return int(widths[min(level, len(widths) - 1)])


def levels_for(resolution: int) -> int:
    """Number of levels above 4x4 (64x64 -> 4)."""
    n = int(math.log2(resolution)) - 2
    if n < 0 or 4 * 2 ** n != resolution:
        raise ValueError(f"ProGAN resolution must be a power of two >= 4, got {resolution}")
    return n


class ProGANGenerator(nn.Module):
    def __init__(self, resolution: int = 64, latent_size: int = 128, widths=(128, 128, 128, 64, 32)):
        super().__init__()
        self.resolution, self.latent_size, self.max_level = resolution, latent_size, levels_for(resolution)
        c0 = _channels(widths, 0)
        self.dense = EqLinear(latent_size, c0 * 16, gain=SQRT2 / 4)
        self.conv0 = EqConv2d(c0, c0, 3)
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList([EqConv2d(c0, 3, 1, gain=1.0)])
        for level in range(1, self.max_level + 1):
            cin, cout = _channels(widths, level - 1), _channels(widths, level)
            self.blocks.append(nn.ModuleList([EqConv2d(cin, cout, 3), EqConv2d(cout, cout, 3)]))
            self.to_rgb.append(EqConv2d(cout, 3, 1, gain=1.0))

    def forward(self, z: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Images in about [-1, 1] at 4 * 2**level pixels; ``alpha`` < 1 fades the newest level in."""
        level = self.max_level if level is None else level
        x = pixel_norm(z.flatten(1))
        x = pixel_norm(_lrelu(self.dense(x).view(z.shape[0], -1, 4, 4)))
        x = pixel_norm(_lrelu(self.conv0(x)))
        prev = x
        for lv in range(1, level + 1):
            prev = x
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            for conv in self.blocks[lv - 1]:
                x = pixel_norm(_lrelu(conv(x)))
        rgb = self.to_rgb[level](x)
        if alpha < 1.0 and level > 0:
            skip = F.interpolate(self.to_rgb[level - 1](prev), scale_factor=2, mode="nearest")
            rgb = torch.lerp(skip, rgb, alpha)
        return rgb


class ProGANDiscriminator(nn.Module):
    def __init__(self, resolution: int = 64, widths=(128, 128, 128, 64, 32), mbstd_group: int = 4):
        super().__init__()
        self.max_level = levels_for(resolution)
        self.mbstd_group = mbstd_group
        self.from_rgb = nn.ModuleList([EqConv2d(3, _channels(widths, lv), 1) for lv in range(self.max_level + 1)])
        self.blocks = nn.ModuleList()
        for level in range(1, self.max_level + 1):
            cin, cout = _channels(widths, level), _channels(widths, level - 1)
            self.blocks.append(nn.ModuleList([EqConv2d(cin, cin, 3), EqConv2d(cin, cout, 3)]))
        c0 = _channels(widths, 0)
        self.conv_final = EqConv2d(c0 + 1, c0, 3)
        self.dense1 = EqLinear(c0 * 16, c0)
        self.dense2 = EqLinear(c0, 1, gain=1.0)

    def forward(self, img: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        level = self.max_level if level is None else level
        x = _lrelu(self.from_rgb[level](img))
        for lv in range(level, 0, -1):
            for conv in self.blocks[lv - 1]:
                x = _lrelu(conv(x))
            x = F.avg_pool2d(x, 2)
            if lv == level and alpha < 1.0:
                skip = _lrelu(self.from_rgb[level - 1](F.avg_pool2d(img, 2)))
                x = torch.lerp(skip, x, alpha)
        x = minibatch_stddev(x, self.mbstd_group)
        x = _lrelu(self.conv_final(x))
        x = _lrelu(self.dense1(x.flatten(1)))
        return self.dense2(x)


def _build(resolution: int, latent_size: int, widths=(128, 128, 128, 64, 32)):
    widths = [int(w) for w in widths]
    return ProGANGenerator(resolution, latent_size, widths), ProGANDiscriminator(resolution, widths)


register_gan("progan", family="progan", resolution=64, latent_size=128, resolutions=(8, 16, 32, 64, 128),
             widths=[128, 128, 128, 64, 32], description="Progressive GAN, 4x4 grown to 64x64 (128 optional)")(_build)
register_gan("test-progan", family="progan", resolution=16, latent_size=8, resolutions=(8, 16),
             widths=[8, 8, 8], description="tiny ProGAN for tests")(_build)
