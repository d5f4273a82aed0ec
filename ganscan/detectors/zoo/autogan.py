"""Detectors of the AutoGAN study (seed 003; Zhang et al. 2019).

- Approach 1, the classifier on the image itself: ``alexnet64`` (an AlexNet-shaped network for 64x64 inputs,
  as in the seed) on pixels, or ``alexnet64-spectrum`` on the image's log power spectrum (as AutoGAN does).
- Approach 2, the classifier on what the trained autoencoder makes of the image:
  ``autogan{1,4}-residual`` sees the image minus its reconstruction, ``autogan{1,4}-recon`` the reconstruction;
  each with a ``-spectrum`` variant. The autoencoder (the shipped ``autogan-1layer`` / ``autogan-4layer``
  weights) is part of the detector, frozen: its weights travel in the detector's checkpoint.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ganscan.detectors.registry import INCEPTION_MEAN, INCEPTION_STD, register_detector


def log_spectrum(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> centred log power spectrum per channel, standardised per image and channel."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        f = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True))
        p = torch.fft.fftshift(torch.log(f.real.square() + f.imag.square() + 1e-6), dim=(-2, -1))
        mu = p.mean(dim=(-2, -1), keepdim=True)
        sd = p.std(dim=(-2, -1), keepdim=True).clamp(min=1e-3)
        return (p - mu) / sd


class AlexNet64(nn.Module):
    """AlexNet's shape (5 convolutions, 3 fully connected layers) sized for 64x64 inputs, with BatchNorm;
    half AlexNet's widths by default (a quarter of its compute) so it trains in minutes on a CPU."""

    def __init__(self, in_ch: int = 3, dropout: float = 0.5, w: int = 32):
        super().__init__()

        def conv(cin, cout, k, s=1):
            return [nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(in_ch, w, 5, 2), nn.MaxPool2d(3, 2, 1),           # 64 -> 32 -> 16
            *conv(w, w * 3, 5), nn.MaxPool2d(3, 2, 1),              # 16 -> 8
            *conv(w * 3, w * 6, 3), *conv(w * 6, w * 4, 3), *conv(w * 4, w * 4, 3),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(w * 4 * 16, 512),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(512, 512),
                                        nn.ReLU(inplace=True), nn.Linear(512, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ImageClassifier(nn.Module):
    """Approach 1: the classifier on the image (pixels) or on its log power spectrum."""

    def __init__(self, spectrum: bool = False):
        super().__init__()
        self.spectrum = spectrum
        self.net = AlexNet64()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(log_spectrum(x) if self.spectrum else x)


class ReconstructionClassifier(nn.Module):
    """Approach 2: a frozen autoencoder, then the classifier on its residual or its reconstruction."""

    def __init__(self, ae: nn.Module, source: str = "residual", spectrum: bool = False, gain: float = 4.0):
        super().__init__()
        if source not in ("residual", "recon"):
            raise ValueError(source)
        self.ae, self.source, self.spectrum, self.gain = ae, source, spectrum, gain
        for p in self.ae.parameters():
            p.requires_grad_(False)
        self.ae.eval()
        self.net = AlexNet64()

    def train(self, mode: bool = True):
        super().train(mode)
        self.ae.eval()  # the autoencoder is a fixed feature: its BatchNorm statistics never move
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.ae.multiple
        h, w = x.shape[-2] - x.shape[-2] % m, x.shape[-1] - x.shape[-1] % m
        x = x[..., :h, :w]
        with torch.no_grad():
            rec = self.ae(x)
        z = (x - rec) * self.gain if self.source == "residual" else rec
        return self.net(log_spectrum(z) if self.spectrum else z)


def shipped_autoencoder(layers: int) -> nn.Module:
    """The shipped ``autogan-{layers}layer`` autoencoder; a random one (with a warning) when it is absent,
    which is only right when a detector checkpoint's weights are loaded over it."""
    from ganscan.gans.autogan import AutoEncoder
    from ganscan.core.weights import shipped_weights
    from ganscan.gans.registry import load_generator

    name = f"autogan-{layers}layer"
    if any(c.get("name") == name for c in shipped_weights("gan")):
        return load_generator("autogan", name).model
    warnings.warn(f"shipped autoencoder {name} not found: built untrained (fine when loading a detector "
                  f"checkpoint, wrong for training)", stacklevel=2)
    return AutoEncoder(layers=layers, width=16)


_COMMON = dict(input_size=64, policy="tiles", max_tiles=16, mean=INCEPTION_MEAN, std=INCEPTION_STD,
               classifier=("net.classifier.",))

for _spec in (False, True):
    _suffix = "-spectrum" if _spec else ""
    register_detector(f"alexnet64{_suffix}", family="autogan-image", **_COMMON,
                      description=f"AlexNet at 64x64 on the image{' spectrum' if _spec else ''} (seed 003, approach 1)")(
        lambda _spec=_spec: ImageClassifier(_spec))
    for _layers in (1, 4):
        for _src in ("residual", "recon"):
            register_detector(
                f"autogan{_layers}-{_src}{_suffix}", family="autogan-recon", **_COMMON,
                description=f"AlexNet-64 on the {_layers}-layer AutoGAN {_src}{' spectrum' if _spec else ''} "
                            f"(seed 003, approach 2)")(
                lambda _layers=_layers, _src=_src, _spec=_spec: ReconstructionClassifier(
                    shipped_autoencoder(_layers), _src, _spec))
