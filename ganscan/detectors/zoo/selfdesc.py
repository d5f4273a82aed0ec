"""A detector fitted on real photos only: forensic self-descriptions (after FSD, Nguyen et al. CVPR 2025).

``fsd64`` reads the same 64 px native-resolution tiles as the fused default. For each tile:

1. **Residuals.** ``K`` prediction-error filters (7x7), each predicting a pixel from a different
   neighbourhood (the 3x3 ring, the 5x5 square, a row, a column, the ring at distance 2, the pixels at
   even offsets, a cross, the 7x7 square) with weights summing to one, fitted by least squares on real
   photos. Residual = grey pixel (0-255) - prediction.
2. **Self-description.** The least-squares coefficients with which the tile's own residuals predict the
   sum of their centres from each residual's 3x3 neighbourhood, the coefficients of each residual summing
   to one (so the description does not change with contrast). ``K * 8`` numbers per tile.
3. **Likelihood.** A Gaussian mixture (full covariances) fitted to the standardised descriptions of real
   tiles of every processing kind (unchanged, camera JPEG, re-compressed, down-scaled with box, bilinear,
   bicubic or Lanczos filters, up-scaled). The tile's logit is ``(negative log-likelihood - ref) / scale``
   with ``ref`` and ``scale`` set on the fitting tiles, so tiles are averaged in the usual way.

No fake image is needed to fit it (``ganscan models fit-fsd``). Cost: about 1 ms per tile on two CPU
cores (the least-squares solves), so 16 tiles cost about as much as the spectrum member.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganscan.detectors.registry import INCEPTION_MEAN, INCEPTION_STD, get_config, register_detector

KSIZE = 7        # prediction filter size
BLOCK = 3        # neighbourhood of the self-description
COMPONENTS = 5   # Gaussian mixture components
RIDGE = 1e-5     # relative ridge of the self-description's least squares
TILE = 64


def _support(rule) -> torch.Tensor:
    r = KSIZE // 2
    return torch.tensor([[bool((dy or dx) and rule(dy, dx)) for dx in range(-r, r + 1)] for dy in range(-r, r + 1)])


SUPPORTS = {
    "ring3": _support(lambda y, x: max(abs(y), abs(x)) == 1),
    "square5": _support(lambda y, x: max(abs(y), abs(x)) <= 2),
    "row": _support(lambda y, x: y == 0),
    "column": _support(lambda y, x: x == 0),
    "ring5": _support(lambda y, x: max(abs(y), abs(x)) == 2),
    "even": _support(lambda y, x: y % 2 == 0 and x % 2 == 0),
    "cross": _support(lambda y, x: y == 0 or x == 0),
    "square7": _support(lambda y, x: True),
}
N_FILTERS = len(SUPPORTS)
N_FEATURES = N_FILTERS * (BLOCK * BLOCK - 1)
GREY = (0.299, 0.587, 0.114)


def grey255(x01: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [0, 1] -> (N,1,H,W) luma in 0-255."""
    w = torch.tensor(GREY, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    return (x01 * w).sum(1, keepdim=True) * 255.0


def solve_sum_to_one(xtx: torch.Tensor, xty: torch.Tensor, groups: int, ridge: float = RIDGE) -> torch.Tensor:
    """Batched ``min |y - X a|^2`` with the coefficients of each of ``groups`` equal blocks summing to one.

    ``xtx`` (N,D,D), ``xty`` (N,D) -> (N,D), solved through the KKT system in float64. The residuals of
    neighbouring filters are strongly correlated, so the system is ill-conditioned: a ridge relative to
    the mean diagonal keeps the solution stable (and flat tiles solvable).
    """
    xtx, xty = xtx.double(), xty.double()
    n, d = xty.shape
    per = d // groups
    a = torch.zeros(groups, d, dtype=torch.float64, device=xtx.device)
    for g in range(groups):
        a[g, g * per:(g + 1) * per] = 1.0
    scale = xtx.diagonal(dim1=1, dim2=2).mean(1).clamp(min=1e-9).view(-1, 1, 1)
    lhs = torch.zeros(n, d + groups, d + groups, dtype=torch.float64, device=xtx.device)
    lhs[:, :d, :d] = xtx + ridge * scale * torch.eye(d, dtype=torch.float64, device=xtx.device)
    lhs[:, :d, d:] = a.T
    lhs[:, d:, :d] = a
    rhs = torch.cat([xty, torch.ones(n, groups, dtype=torch.float64, device=xtx.device)], 1)
    return torch.linalg.solve(lhs, rhs)[:, :d]


def describe(res: torch.Tensor) -> torch.Tensor:
    """(N,K,h,w) residuals -> (N, K*(BLOCK^2-1)) self-descriptions (float64)."""
    n, k = res.shape[:2]
    c = BLOCK * BLOCK // 2
    keep = torch.ones(BLOCK * BLOCK, dtype=torch.bool, device=res.device)
    keep[c] = False
    p = F.unfold(res.double(), BLOCK)                    # (N, K*B*B, L), float64: sums of many products
    p = p.view(n, k, BLOCK * BLOCK, -1)
    y = p[:, :, c].sum(1)                                # (N, L)
    x = p[:, :, keep].reshape(n, k * (BLOCK * BLOCK - 1), -1)
    xtx = x @ x.transpose(1, 2)
    xty = (x @ y.unsqueeze(2)).squeeze(2)
    return solve_sum_to_one(xtx, xty, k)


@register_detector("fsd64", input_size=TILE, policy="tiles", max_tiles=16, mean=INCEPTION_MEAN, std=INCEPTION_STD,
                   family="fsd", description="forensic self-descriptions of 64 px tiles, fitted on real photos only")
class SelfDescription(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("filters", torch.zeros(N_FILTERS, 1, KSIZE, KSIZE))
        self.register_buffer("feat_mean", torch.zeros(N_FEATURES))
        self.register_buffer("feat_std", torch.ones(N_FEATURES))
        self.register_buffer("log_weight", torch.zeros(COMPONENTS))
        self.register_buffer("means", torch.zeros(COMPONENTS, N_FEATURES))
        # upper-triangular U with precision = U U^T, so log N(x) = -|U^T (x - mu)|^2 / 2 + log det U + c
        self.register_buffer("prec_chol", torch.eye(N_FEATURES).repeat(COMPONENTS, 1, 1))
        self.register_buffer("ref", torch.zeros(1))
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("in_mean", torch.tensor(INCEPTION_MEAN).view(1, 3, 1, 1))
        self.register_buffer("in_std", torch.tensor(INCEPTION_STD).view(1, 3, 1, 1))

    def descriptions(self, x01: torch.Tensor) -> torch.Tensor:
        res = F.conv2d(grey255(x01.float()), self.filters.float())
        return describe(res)

    def nll(self, desc: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each description under the mixture (float64)."""
        z = (desc.double() - self.feat_mean.double()) / self.feat_std.double()
        d = z[:, None, :] - self.means.double()[None]                       # (N,k,D)
        u = torch.einsum("nkd,kde->nke", d, self.prec_chol.double())
        logdet = torch.log(self.prec_chol.double().diagonal(dim1=1, dim2=2)).sum(1)
        ll = -0.5 * (u * u).sum(2) + logdet + self.log_weight.double() - 0.5 * z.shape[1] * math.log(2 * math.pi)
        return -torch.logsumexp(ll, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x01 = x.float() * self.in_std + self.in_mean
            nll = self.nll(self.descriptions(x01))
            return ((nll - self.ref.double()) / self.scale.double()).float().view(-1, 1)


# --- fitting -------------------------------------------------------------------------------------------

def prediction_filters(grey: torch.Tensor) -> torch.Tensor:
    """(N,1,H,W) grey real tiles -> (K,1,7,7) residual filters (delta minus each support's predictor)."""
    r = KSIZE // 2
    p = F.unfold(grey.double(), KSIZE).transpose(1, 2).reshape(-1, KSIZE * KSIZE)
    y = p[:, (KSIZE * KSIZE) // 2]
    out = []
    for mask in SUPPORTS.values():
        m = mask.flatten()
        x = p[:, m]
        coef = solve_sum_to_one((x.T @ x)[None], (x.T @ y)[None], 1)[0]
        w = torch.zeros(KSIZE * KSIZE, dtype=torch.float64)
        w[m] = coef
        f = -w.view(KSIZE, KSIZE)
        f[r, r] += 1.0
        out.append(f)
    return torch.stack(out).unsqueeze(1).float()


def fit_mixture(z: torch.Tensor, k: int = COMPONENTS, iters: int = 100, reg: float = 1e-3, seed: int = 0):
    """Gaussian mixture with full covariances by EM (k-means start); returns (log weights, means, U)."""
    z = z.double()
    n, d = z.shape
    g = torch.Generator().manual_seed(seed)
    mu = z[torch.randperm(n, generator=g)[:k]].clone()
    for _ in range(20):
        a = torch.cdist(z, mu).argmin(1)
        for j in range(k):
            if (a == j).any():
                mu[j] = z[a == j].mean(0)
    resp = F.one_hot(a, k).double()
    eye = torch.eye(d, dtype=torch.float64)
    for _ in range(iters):
        nk = resp.sum(0) + 1e-9
        log_w = torch.log(nk / n)
        mu = (resp.T @ z) / nk[:, None]
        us = []
        for j in range(k):
            dz = z - mu[j]
            cov = (resp[:, j, None] * dz).T @ dz / nk[j] + reg * eye
            # precision = cov^-1 = U U^T with U upper triangular: U = inverse of cov's lower Cholesky, transposed
            lower = torch.linalg.cholesky(cov)
            us.append(torch.linalg.solve_triangular(lower, eye, upper=False).T)
        u = torch.stack(us)
        diff = z[:, None, :] - mu[None]
        q = torch.einsum("nkd,kde->nke", diff, u)
        ll = -0.5 * (q * q).sum(2) + torch.log(u.diagonal(dim1=1, dim2=2)).sum(1) + log_w
        resp = torch.softmax(ll, 1)
    return log_w.float(), mu.float(), u.float()


def fit_state(tiles_u8: np.ndarray, seed: int = 0, filter_tiles: int = 400) -> dict:
    """Fit every tensor of ``fsd64`` on (N,64,64,3) uint8 real tiles."""
    rng = np.random.default_rng(seed)
    if len(tiles_u8) < 10 * N_FEATURES:
        raise ValueError(f"{len(tiles_u8)} real tiles are too few to fit fsd64 (need {10 * N_FEATURES})")
    pick = rng.choice(len(tiles_u8), min(filter_tiles, len(tiles_u8)), replace=False)
    model = SelfDescription()
    x01 = torch.from_numpy(tiles_u8[np.sort(pick)]).permute(0, 3, 1, 2).float() / 255.0
    model.filters.copy_(prediction_filters(grey255(x01)))
    descs = []
    with torch.no_grad():
        for i in range(0, len(tiles_u8), 512):
            part = torch.from_numpy(tiles_u8[i:i + 512]).permute(0, 3, 1, 2).float() / 255.0
            descs.append(model.descriptions(part))
    desc = torch.cat(descs)
    model.feat_mean.copy_(desc.mean(0).float())
    model.feat_std.copy_((desc.std(0) + 1e-6).float())
    for buf, fitted in zip((model.log_weight, model.means, model.prec_chol),
                           fit_mixture((desc - desc.mean(0)) / (desc.std(0) + 1e-6), seed=seed)):
        buf.copy_(fitted)
    with torch.no_grad():
        nll = model.nll(desc)
    q25, q50, q75 = torch.quantile(nll, torch.tensor([0.25, 0.5, 0.75], dtype=nll.dtype)).tolist()
    model.ref.fill_(q50)
    model.scale.fill_(max((q75 - q25) / 1.349, 1e-6))   # a robust standard deviation
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def processed_variant(img, rng: np.random.Generator):
    """One of the processings real photos get, drawn at random: unchanged, JPEG (quality 65-98), down-scaled
    (x0.3-0.8, any standard filter; JPEG after, half the time), or up-scaled (x1.5 or x2, any standard filter)."""
    from ganscan.data.augment import RESCALE_FILTERS, jpeg_roundtrip as jpeg
    from ganscan.detectors.train.twins import UP_FILTERS

    kind = int(rng.integers(5))
    if kind == 1:
        img = jpeg(img, rng.integers(65, 99))
    elif kind in (2, 4):
        f = rng.uniform(0.3, 0.8)
        size = (max(TILE, round(img.width * f)), max(TILE, round(img.height * f)))
        img = img.resize(size, RESCALE_FILTERS[int(rng.integers(4))])
        if kind == 4:
            img = jpeg(img, rng.integers(65, 99))
    elif kind == 3:
        f = float(rng.choice([1.5, 2.0]))
        up = list(UP_FILTERS.values())[int(rng.integers(4))]
        img = img.resize((round(img.width * f), round(img.height * f)), up)
    return img


def real_tiles(images, seed: int = 0, variants: int = 2) -> np.ndarray:
    """Random 64 px tiles of processed variants of real images (an iterable of RGB PIL images); larger
    images give more tiles (one per 64k pixels, 2 to 24)."""
    rng = np.random.default_rng(seed)
    out = []
    for img in images:
        for _ in range(variants):
            v = processed_variant(img, rng)
            if min(v.size) < TILE:
                continue
            a = np.asarray(v.convert("RGB"))
            h, w = a.shape[:2]
            for _ in range(int(np.clip(h * w // 65536, 2, 24))):
                y, x = int(rng.integers(0, h - TILE + 1)), int(rng.integers(0, w - TILE + 1))
                out.append(a[y:y + TILE, x:x + TILE])
    if not out:
        raise ValueError("no real image of at least 64 px to fit on")
    return np.stack(out)


def decoded(paths: list[str], bad: list, progress=None):
    """The RGB images of ``paths``, one at a time; a file that does not decode is appended to ``bad`` and left out
    (it costs its tiles, never the fit); ``progress(i, n)`` follows the files read."""
    from ganscan.data.decode import load_image

    for i, p in enumerate(paths):
        try:
            img = load_image(p)[0]
        except Exception:
            bad.append(p)
            continue
        finally:
            if progress:
                progress(i + 1, len(paths))
        yield img.convert("RGB")


def fit_fsd(paths: list[str], name: str, seed: int = 0, variants: int = 2, progress=None) -> tuple[dict, dict]:
    """Fit ``fsd64`` on real images (paths); returns (state dict, checkpoint metadata). Files that do not
    decode are left out and counted; ``progress(i, n)`` follows the images read."""
    bad = []
    tiles = real_tiles(decoded(paths, bad, progress), seed=seed, variants=variants)
    state = fit_state(tiles, seed=seed)
    meta = {
        "kind": "detector", "arch": "fsd64", "name": name, "threshold": 0.5,
        "preprocessing": get_config("fsd64").preprocessing(),
        "training": {"recipe": "fsd-real-only", "real_images": len(paths) - len(bad), "unreadable": len(bad),
                     "tiles": int(len(tiles)), "variants_per_image": variants, "seed": seed,
                     "filters": list(SUPPORTS), "block": BLOCK, "components": COMPONENTS},
    }
    return state, meta
