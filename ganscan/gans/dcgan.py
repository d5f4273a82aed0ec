"""DCGAN (Radford et al. 2016) as in seed 004: transposed-convolution generator with BatchNorm and ReLU and
a tanh output; a convolutional discriminator with LeakyReLU, BatchNorm and dropout 0.3; BCE loss."""

from __future__ import annotations

import math

import torch
from torch import nn

from ganscan.gans.registry import register_gan


def _levels(resolution: int) -> int:
    n = int(math.log2(resolution)) - 2
    if n < 1 or 4 * 2 ** n != resolution:
        raise ValueError(f"DCGAN resolution must be a power of two >= 8, got {resolution}")
    return n


class DCGANGenerator(nn.Module):
    def __init__(self, resolution: int = 32, latent_size: int = 100, width: int = 64):
        super().__init__()
        self.resolution, self.latent_size = resolution, latent_size
        n = _levels(resolution)
        ch = width * 2 ** (n - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_size, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch),
                                   nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(self, resolution: int = 32, width: int = 64, dropout: float = 0.3):
        super().__init__()
        n = _levels(resolution)
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, True), nn.Dropout(dropout)]
        ch = width
        for _ in range(n - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True),
                       nn.Dropout(dropout)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0)]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)  # one logit per image


def init_weights(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _build(resolution: int, latent_size: int, width: int = 64, dropout: float = 0.3):
    return (DCGANGenerator(resolution, latent_size, width),
            DCGANDiscriminator(resolution, width, dropout))


register_gan("dcgan", family="dcgan", resolution=32, latent_size=100, resolutions=(32, 64), width=64,
             description="DCGAN, seed 004 recipe (CIFAR-10 dog)")(_build)
register_gan("test-gan", family="dcgan", resolution=16, latent_size=8, resolutions=(16,), width=8,
             description="tiny 16x16 DCGAN for tests")(_build)
