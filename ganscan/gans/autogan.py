"""AutoGAN (Zhang et al. 2019): an autoencoder whose decoder up-samples like a GAN generator, trained on real
images with a reconstruction loss plus an adversarial loss. Its reconstructions of real photographs carry the
up-sampling artifacts of a generator (transposed convolutions), so they serve as simulated fakes: a detector
trained on real vs reconstructed images needs no GAN output at all.

The generator follows the shape of the image-to-image GANs it imitates (StarGAN, CycleGAN): a 7x7 stem,
``layers`` stride-2 convolutions down, residual blocks, ``layers`` stride-2 transposed convolutions up, a 7x7
output convolution and tanh. ``layers=1`` and ``layers=4`` are the seed's 1-layer and 4-layer variants. The
discriminator is a PatchGAN (one logit per patch, least-squares loss). BatchNorm keeps inference independent
of the batch and of tiling, so arbitrarily large images can be reconstructed tile by tile.
"""

from __future__ import annotations

import torch
from torch import nn

from ganscan.gans.dcgan import init_weights
from ganscan.gans.registry import register_gan


class _Res(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True),
                                  nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch))

    def forward(self, x):
        return x + self.body(x)


class AutoEncoder(nn.Module):
    """x in [-1, 1] (N, 3, H, W) with H, W multiples of ``2 ** layers`` -> reconstruction of the same size."""

    def __init__(self, layers: int = 1, width: int = 32, blocks: int = 2, max_width: int = 256):
        super().__init__()
        if not 1 <= layers <= 6:
            raise ValueError(f"layers must be 1..6, got {layers}")
        self.layers = layers
        enc: list[nn.Module] = [nn.Conv2d(3, width, 7, 1, 3, padding_mode="reflect", bias=False),
                                nn.BatchNorm2d(width), nn.ReLU(True)]
        ch = width
        chans = [ch]
        for _ in range(layers):
            nxt = min(ch * 2, max_width)
            enc += [nn.Conv2d(ch, nxt, 4, 2, 1, bias=False), nn.BatchNorm2d(nxt), nn.ReLU(True)]
            ch = nxt
            chans.append(ch)
        enc += [_Res(ch) for _ in range(blocks)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        for i in range(layers):
            nxt = chans[-2 - i]
            dec += [nn.ConvTranspose2d(ch, nxt, 4, 2, 1, bias=False), nn.BatchNorm2d(nxt), nn.ReLU(True)]
            ch = nxt
        dec += [nn.Conv2d(ch, 3, 7, 1, 3, padding_mode="reflect"), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)
        init_weights(self)

    @property
    def multiple(self) -> int:
        return 2 ** self.layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class PatchDiscriminator(nn.Module):
    def __init__(self, width: int = 32, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = width
        for i in range(1, depth):
            nxt = min(ch * 2, 512)
            layers += [nn.Conv2d(ch, nxt, 4, 2 if i < depth - 1 else 1, 1, bias=False), nn.BatchNorm2d(nxt),
                       nn.LeakyReLU(0.2, True)]
            ch = nxt
        layers += [nn.Conv2d(ch, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, 1, h, w): one logit per patch


def _build(resolution: int, latent_size: int = 0, layers: int = 1, width: int = 32, blocks: int = 2):
    if resolution % 2 ** layers:
        raise ValueError(f"a {layers}-layer autoencoder needs a resolution that is a multiple of {2 ** layers}")
    return AutoEncoder(layers, width, blocks), PatchDiscriminator()


register_gan("autogan", family="autogan", resolution=64, latent_size=0, resolutions=(32, 64, 128, 256),
             layers=1, width=32, blocks=2,
             description="AutoGAN autoencoder (Zhang et al. 2019): reconstructs real images with GAN up-sampling")(_build)
register_gan("test-autogan", family="autogan", resolution=16, latent_size=0, resolutions=(16, 32),
             layers=1, width=4, blocks=1, description="tiny autoencoder for tests")(_build)
