"""A detector fitted on real photos only: coding surprisal (after ZED, Cozzolino et al. ECCV 2024).

``zed64`` reads the same 64 px native-resolution tiles as the fused default. For each tile:

1. **A small lossless coder.** The tile's luma (0-255) is split into its four 2x2 phases ``a = x[0::2, 0::2]``,
   ``b = x[0::2, 1::2]``, ``c = x[1::2, 0::2]``, ``d = x[1::2, 1::2]``. One small CNN predicts ``b`` from ``a``,
   ``c`` from ``a, b`` and ``d`` from ``a, b, c``: for every pixel a discretized logistic over 0..255 (a mean and a
   scale). It is trained on real tiles only, through the processing photos really get (unchanged, JPEG, down- and
   up-scaled: fsd64's ``processed_variant``), to code them in as few bits as it can.
2. **Surprisal.** ``D`` = the mean over the three predicted phases of the actual coding cost minus the cost the
   coder itself expects (its predicted distribution's entropy), in bits per pixel; saturated pixels (0 or 255)
   are left out. ZED's observation: a generated image is coded better than its coder expects.
3. **Logit.** ``(ref - D) / scale`` with ``ref`` the median and ``scale`` the robust spread of ``D`` over the fitting
   tiles: positive when a tile is coded better than expected.

No fake image is needed to fit it (``ganscan models fit-zed``). Cost: about 2.6 ms per tile on two CPU cores (three
passes of the coder at 32x32). Measured on our families (README, "Real-only member: zed64"; rule
``docs/selection-rule-v53.txt``), it reads up-sampled content as coded better than expected whether a generator or a
standard filter did the up-sampling, and GAN artifacts as coded worse: not a detector to ship on its own.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganscan.detectors.registry import INCEPTION_MEAN, INCEPTION_STD, get_config, register_detector
from ganscan.detectors.zoo.selfdesc import TILE, decoded, grey255, real_tiles

WIDTH = 24             # channels of the coder's hidden layers
LOG_SCALE = (-3.0, 5.0)   # the predicted logistic's log scale (in grey levels) is clamped to this range
TABLE = 257            # points of the entropy table over LOG_SCALE
LN2 = math.log(2.0)


def phases(grey: torch.Tensor) -> torch.Tensor:
    """(N,1,H,W) -> (N,4,H/2,W/2): the 2x2 phases a, b, c, d (H and W even)."""
    return torch.cat([grey[:, :, 0::2, 0::2], grey[:, :, 0::2, 1::2], grey[:, :, 1::2, 0::2], grey[:, :, 1::2, 1::2]], 1)


def coder_input(ph: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The coder's 7 input planes for phases ``ph`` (N,4,h,w, 0-255) and each sample's target phase (N,) in 1..3:
    the four phases scaled to about [-2, 2], each zeroed unless it is ``a`` or comes before the target, then a
    one-hot of the target."""
    n = ph.shape[0]
    idx = torch.arange(4, device=ph.device).view(1, 4)
    known = (idx < target.view(n, 1)).to(ph.dtype).view(n, 4, 1, 1)
    onehot = F.one_hot(target - 1, 3).to(ph.dtype).view(n, 3, 1, 1).expand(-1, -1, *ph.shape[2:])
    return torch.cat([(ph - 128.0) / 64.0 * known, onehot], 1)


def log_prob(v: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(v) (natural log) of integer grey levels ``v`` under a logistic discretized to 0..255 (the two end bins
    take the tails)."""
    inv = torch.exp(-log_scale)
    centred = v - mean
    plus, minus = inv * (centred + 0.5), inv * (centred - 0.5)
    log_cdf_plus = plus - F.softplus(plus)        # log sigmoid(plus)
    log_one_minus_cdf_minus = -F.softplus(minus)   # log (1 - sigmoid(minus))
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv * centred
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid)   # the bin's density at its centre (width 1)
    inner = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_pdf_mid)
    return torch.where(v < 0.5, log_cdf_plus, torch.where(v > 254.5, log_one_minus_cdf_minus, inner))


@lru_cache(maxsize=2)
def entropy_table(points: int = TABLE) -> tuple[torch.Tensor, torch.Tensor]:
    """(log scales, entropy in bits) of a logistic discretized to unit bins, averaged over 8 offsets of its mean
    within a bin (no end bins: the table is for interior pixels)."""
    ls = torch.linspace(*LOG_SCALE, points, dtype=torch.float64)
    out = torch.empty(points, dtype=torch.float64)
    for i, s in enumerate(torch.exp(ls).tolist()):
        k = torch.arange(-int(40 * s + 40), int(40 * s + 41), dtype=torch.float64)
        hs = []
        for off in torch.arange(8, dtype=torch.float64) / 8:
            p = torch.sigmoid((k + 0.5 - off) / s) - torch.sigmoid((k - 0.5 - off) / s)
            p = p[p > 0]
            hs.append(-(p * torch.log2(p)).sum())
        out[i] = torch.stack(hs).mean()
    return ls.float(), out.float()


def expected_bits(log_scale: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The entropy (bits) of the discretized logistic for each log scale, linear in the table."""
    lo, hi = LOG_SCALE
    pos = (log_scale.clamp(lo, hi) - lo) / (hi - lo) * (table.numel() - 1)
    i0 = pos.floor().long().clamp(max=table.numel() - 2)
    frac = pos - i0.to(pos.dtype)
    return table[i0] * (1 - frac) + table[i0 + 1] * frac


class Coder(nn.Module):
    """The phase predictor: 7 planes -> (mean, log scale) of the target phase."""

    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(7, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, 2, 1))

    def forward(self, ph: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.body(coder_input(ph, target))
        mean = ph[:, :1] + 64.0 * out[:, :1]
        return mean, out[:, 1:].clamp(*LOG_SCALE)


@register_detector("zed64", input_size=TILE, policy="tiles", max_tiles=16, mean=INCEPTION_MEAN, std=INCEPTION_STD,
                   family="zed", description="coding surprisal of 64 px tiles (after ZED), fitted on real photos only")
class Surprisal(nn.Module):
    def __init__(self):
        super().__init__()
        self.coder = Coder()
        self.register_buffer("entropy", entropy_table()[1].clone())
        self.register_buffer("ref", torch.zeros(1))
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("in_mean", torch.tensor(INCEPTION_MEAN).view(1, 3, 1, 1))
        self.register_buffer("in_std", torch.tensor(INCEPTION_STD).view(1, 3, 1, 1))

    def costs(self, ph: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(actual bits, expected bits, target grey levels) of one target phase (1..3) of (N,4,h,w) phases."""
        t = torch.full((ph.shape[0],), target, dtype=torch.long, device=ph.device)
        mean, log_scale = self.coder(ph, t)
        v = ph[:, target:target + 1]
        return -log_prob(v, mean, log_scale) / LN2, expected_bits(log_scale, self.entropy), v

    def surprisal(self, grey: torch.Tensor) -> torch.Tensor:
        """(N,1,H,W) luma 0-255 -> (N,) D: mean actual minus expected bits per interior pixel (NaN if none)."""
        total = torch.zeros(grey.shape[0], dtype=torch.float64, device=grey.device)
        count = torch.zeros_like(total)
        ph = phases(grey.round().clamp(0, 255))
        for target in (1, 2, 3):
            actual, expected, v = self.costs(ph, target)
            inside = ((v > 0.5) & (v < 254.5)).to(actual.dtype)
            total += ((actual - expected) * inside).sum((1, 2, 3)).double()
            count += inside.sum((1, 2, 3)).double()
        return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x01 = x.float() * self.in_std + self.in_mean
            d = self.surprisal(grey255(x01))
            d = torch.where(torch.isnan(d), self.ref.double(), d)   # a saturated tile reads as typical
            return ((self.ref.double() - d) / self.scale.double()).float().view(-1, 1)


# --- fitting -------------------------------------------------------------------------------------------

def train_coder(model: Surprisal, grey: torch.Tensor, steps: int = 4000, batch: int = 64, lr: float = 2e-3,
                seed: int = 0, progress=None) -> list[float]:
    """Train ``model.coder`` on (N,1,64,64) real luma tiles to code them in as few bits as it can (one random target
    phase per sample and step); returns the mean bits per pixel of each 100 steps."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.coder.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    ph_all = phases(grey.round().clamp(0, 255))
    model.coder.train()
    curve, acc = [], []
    for step in range(steps):
        idx = torch.randint(0, ph_all.shape[0], (batch,), generator=g)
        ph = ph_all[idx]
        target = torch.randint(1, 4, (batch,), generator=g)
        mean, log_scale = model.coder(ph, target)
        v = ph.gather(1, target.view(-1, 1, 1, 1).expand(-1, 1, *ph.shape[2:]))
        loss = -log_prob(v, mean, log_scale).mean() / LN2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        acc.append(loss.item())
        if (step + 1) % 100 == 0:
            curve.append(sum(acc) / len(acc))
            acc = []
            if progress:
                progress(step + 1, steps, curve[-1])
    model.coder.eval()
    return curve


def fit_state(tiles_u8: np.ndarray, seed: int = 0, steps: int = 4000, progress=None) -> tuple[dict, list[float]]:
    """Fit every tensor of ``zed64`` on (N,64,64,3) uint8 real tiles; (state dict, training curve)."""
    if len(tiles_u8) < 256:
        raise ValueError(f"{len(tiles_u8)} real tiles are too few to fit zed64 (need 256)")
    model = Surprisal()
    grey = torch.cat([grey255(torch.from_numpy(tiles_u8[i:i + 1024]).permute(0, 3, 1, 2).float() / 255.0)
                      for i in range(0, len(tiles_u8), 1024)])
    curve = train_coder(model, grey, steps=steps, seed=seed, progress=progress)
    with torch.no_grad():
        d = torch.cat([model.surprisal(grey[i:i + 512]) for i in range(0, len(grey), 512)])
    d = d[~torch.isnan(d)]
    q25, q50, q75 = torch.quantile(d, torch.tensor([0.25, 0.5, 0.75], dtype=d.dtype)).tolist()
    model.ref.fill_(q50)
    model.scale.fill_(max((q75 - q25) / 1.349, 1e-6))
    return {k: v.contiguous() for k, v in model.state_dict().items()}, curve


def fit_zed(paths: list[str], name: str, seed: int = 0, variants: int = 2, steps: int = 4000,
            progress=None, train_progress=None) -> tuple[dict, dict]:
    """Fit ``zed64`` on real images (paths); returns (state dict, checkpoint metadata). Files that do not decode
    are left out and counted; ``progress(i, n)`` follows the images read, ``train_progress(step, steps, bits)``
    the training."""
    bad = []
    tiles = real_tiles(decoded(paths, bad, progress), seed=seed, variants=variants)
    state, curve = fit_state(tiles, seed=seed, steps=steps, progress=train_progress)
    meta = {
        "kind": "detector", "arch": "zed64", "name": name, "threshold": 0.5,
        "preprocessing": get_config("zed64").preprocessing(),
        "training": {"recipe": "zed-real-only", "real_images": len(paths) - len(bad), "unreadable": len(bad),
                     "tiles": int(len(tiles)), "variants_per_image": variants, "seed": seed, "steps": steps,
                     "batch": 64, "lr": 2e-3, "width": WIDTH, "bits_per_pixel_curve": [round(v, 4) for v in curve],
                     "surprisal_ref": float(state["ref"]), "surprisal_scale": float(state["scale"])},
    }
    return state, meta
