"""A calibrated fusion of detectors that share one input: logistic regression on their logits.

``fusion-spectrum-npr-fsd`` adds a third member, ``fsd`` (``fsd64``, fitted on real photos only; see
``ganscan.detectors.zoo.selfdesc``), and clips every member's logit to +-CLAMP before fusing.

``fusion-spectrum-npr`` holds two members, both reading the same 64 px native-resolution tiles:

- ``spectrum``: ``alexnet64-spectrum`` (AlexNet on the tile's log power spectrum, ganscan-spectrum-v1);
- ``npr``: the NPR-residual network trained on band-aligned twins (``ganscan.detectors.train.twins``);
  ``fusion-spectrum-npr32`` is the same with the half-width ``npr32`` network.

The fused logit is ``w . (member logits) + b``. It is linear, so averaging the fused tile logits (the
``tiles`` policy) equals fusing the members' averaged logits, which is what the weights are fitted on
(``fit_logistic``). Each member keeps its own normalisation: the tile arrives normalised for the
spectrum member (mean = std = 0.5) and is re-normalised with ImageNet statistics for the NPR member.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ganscan.detectors.registry import (IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, build_detector,
                                        get_config, register_detector)

MEMBERS = ("spectrum", "npr")
MEMBERS3 = ("spectrum", "npr", "fsd")


class SpectrumNPRFusion(nn.Module):
    npr_arch, npr_width = "npr", 64

    def __init__(self):
        super().__init__()
        from ganscan.detectors.zoo.autogan import ImageClassifier

        self.spectrum = ImageClassifier(True)
        self.npr = self.make_npr()
        self.register_buffer("weight", torch.zeros(len(MEMBERS)))
        self.register_buffer("bias", torch.zeros(1))
        for name, value in (("in_mean", INCEPTION_MEAN), ("in_std", INCEPTION_STD), ("npr_mean", IMAGENET_MEAN),
                            ("npr_std", IMAGENET_STD)):
            self.register_buffer(name, torch.tensor(value).view(1, 3, 1, 1))

    def make_npr(self) -> nn.Module:
        """The NPR member: a fresh network of ``npr_arch`` (the ensemble builds another kind)."""
        import ganscan.detectors.zoo.families  # noqa: F401  (registers the NPR architectures)

        return build_detector(self.npr_arch)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) normalised for the spectrum member -> (N, len(MEMBERS)) logits."""
        x01 = x * self.in_std + self.in_mean
        a = self.spectrum(x)
        b = self.npr((x01 - self.npr_mean) / self.npr_std)
        return torch.cat([a.reshape(-1, 1), b.reshape(-1, 1)], dim=1).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_logits(x) @ self.weight.view(-1, 1) + self.bias


class SpectrumNPR32Fusion(SpectrumNPRFusion):
    """The same fusion with the half-width NPR member (``npr32``)."""
    npr_arch, npr_width = "npr32", 32


class SpectrumNPR32LumaFusion(SpectrumNPR32Fusion):
    """The npr32 fusion whose NPR member reads luminance only (``npr32-luma``)."""
    npr_arch = "npr32-luma"


class SpectrumNPR32TwoOctaveFusion(SpectrumNPR32Fusion):
    """The npr32 fusion whose NPR member also reads the second octave (``npr32-2oct``)."""
    npr_arch = "npr32-2oct"


class SpectrumNPR32ReferenceFusion(SpectrumNPR32Fusion):
    """The npr32 fusion whose NPR member reads each tile against its own enlargement (``npr32-ref``)."""
    npr_arch = "npr32-ref"


class NPREnsemble(nn.Module):
    """``n`` NPR networks of one width trained alike (e.g. training seeds of one recipe); their mean logit."""

    def __init__(self, n: int, width: int):
        super().__init__()
        from ganscan.detectors.zoo.families import NPRNet

        self.members = nn.ModuleList(NPRNet(width) for _ in range(int(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).reshape(-1) for m in self.members]).mean(0).reshape(-1, 1)


class SpectrumNPR32EnsembleFusion(SpectrumNPR32Fusion):
    """The npr32 fusion whose NPR member is the mean logit of ``npr_members`` npr32 networks: still two fusion
    weights, the ensemble read as one member."""

    def __init__(self, npr_members: int = 3):
        if int(npr_members) < 2:
            raise ValueError(f"an ensemble needs at least 2 NPR members, got {npr_members}")
        self.npr_members = int(npr_members)
        super().__init__()

    def make_npr(self) -> nn.Module:
        return NPREnsemble(self.npr_members, self.npr_width)


CLAMP = 8.0   # member logits are clipped to +-CLAMP in the three-member fusion


class SpectrumNPRFSDFusion(SpectrumNPRFusion):
    """The two members above plus ``fsd`` (``fsd64``, fitted on real photos only). Member logits are clipped
    to +-CLAMP before fusing, so that no member's extreme (e.g. the NPR member on images smaller than a
    tile) outvotes the others."""

    def __init__(self):
        super().__init__()
        from ganscan.detectors.zoo.selfdesc import SelfDescription

        self.fsd = SelfDescription()
        self.weight = torch.zeros(len(MEMBERS3))

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        both = super().member_logits(x)
        return torch.cat([both, self.fsd(x).reshape(-1, 1).float()], dim=1).clamp(-CLAMP, CLAMP)


class SpectrumNPR32JpegFusion(SpectrumNPR32Fusion):
    """Two branches chosen by the file's format. Lossless files (and any call without formats) are scored as
    ``fusion-spectrum-npr32`` scores them: ``spectrum`` and ``npr`` fused by ``weight`` and ``bias``. Tiles of JPEG
    files are scored by ``spectrum`` and ``npr_jpeg`` (an npr32 network trained on JPEG-compressed twins), fused by
    ``weight_jpeg`` and ``bias_jpeg``. ``bias_jpeg`` holds the JPEG branch's calibration: both branches share the
    one threshold, each at the false-positive rate it was calibrated to on real photos of its own format.

    ``forward(x, jpeg)`` takes one flag per tile (``ganscan.detectors.inference.forward_logits`` builds them from
    each file's format); each tile goes through one NPR network only, so a scan costs what the plain fusion costs.
    """
    format_aware = True

    def __init__(self):
        super().__init__()
        self.npr_jpeg = self.make_npr()
        self.register_buffer("weight_jpeg", torch.zeros(len(MEMBERS)))
        self.register_buffer("bias_jpeg", torch.zeros(1))

    def forward(self, x: torch.Tensor, jpeg: torch.Tensor | None = None) -> torch.Tensor:
        if jpeg is None:
            return super().forward(x)
        jpeg = jpeg.to(x.device).bool().reshape(-1)
        if jpeg.numel() != x.shape[0]:
            raise ValueError(f"{jpeg.numel()} format flags for {x.shape[0]} tiles")
        if not bool(jpeg.any()):
            return super().forward(x)
        xn = (x * self.in_std + self.in_mean - self.npr_mean) / self.npr_std
        a = self.spectrum(x).reshape(-1).float()
        b = torch.empty_like(a)
        lossless = ~jpeg
        if bool(lossless.any()):
            b[lossless] = self.npr(xn[lossless]).reshape(-1).float()
        b[jpeg] = self.npr_jpeg(xn[jpeg]).reshape(-1).float()
        w = torch.where(jpeg.view(-1, 1), self.weight_jpeg.view(1, -1), self.weight.view(1, -1))
        bias = torch.where(jpeg, self.bias_jpeg, self.bias)
        return ((torch.stack([a, b], 1) * w).sum(1) + bias).reshape(-1, 1)


# arch -> (module class, member names, member architectures, clip of member logits)
FUSIONS = {
    "fusion-spectrum-npr": (SpectrumNPRFusion, MEMBERS, ("alexnet64-spectrum", "npr"), None),
    "fusion-spectrum-npr-fsd": (SpectrumNPRFSDFusion, MEMBERS3, ("alexnet64-spectrum", "npr", "fsd64"), CLAMP),
    "fusion-spectrum-npr32": (SpectrumNPR32Fusion, MEMBERS, ("alexnet64-spectrum", "npr32"), None),
    "fusion-spectrum-npr32-ens": (SpectrumNPR32EnsembleFusion, MEMBERS, ("alexnet64-spectrum", "npr32"), None),
    "fusion-spectrum-npr32-luma": (SpectrumNPR32LumaFusion, MEMBERS, ("alexnet64-spectrum", "npr32-luma"), None),
    "fusion-spectrum-npr32-jpeg": (SpectrumNPR32JpegFusion, MEMBERS, ("alexnet64-spectrum", "npr32"), None),
    "fusion-spectrum-npr32-2oct": (SpectrumNPR32TwoOctaveFusion, MEMBERS, ("alexnet64-spectrum", "npr32-2oct"), None),
    "fusion-spectrum-npr32-ref": (SpectrumNPR32ReferenceFusion, MEMBERS, ("alexnet64-spectrum", "npr32-ref"), None),
}
ENSEMBLES = {"npr32": "fusion-spectrum-npr32-ens"}   # NPR member architecture -> its ensemble fusion
JPEG_FUSIONS = {"npr32": "fusion-spectrum-npr32-jpeg"}   # NPR member architecture -> its fusion with a JPEG branch


for _arch, _cls, _members in (
        ("fusion-spectrum-npr-fsd", SpectrumNPRFSDFusion, "alexnet64-spectrum, the twin-trained NPR network and fsd64"),
        ("fusion-spectrum-npr", SpectrumNPRFusion, "alexnet64-spectrum and the twin-trained NPR network"),
        ("fusion-spectrum-npr32", SpectrumNPR32Fusion, "alexnet64-spectrum and the twin-trained npr32 network"),
        ("fusion-spectrum-npr32-ens", SpectrumNPR32EnsembleFusion,
         "alexnet64-spectrum and the mean of several twin-trained npr32 networks"),
        ("fusion-spectrum-npr32-luma", SpectrumNPR32LumaFusion,
         "alexnet64-spectrum and the twin-trained npr32 network on luminance"),
        ("fusion-spectrum-npr32-jpeg", SpectrumNPR32JpegFusion,
         "alexnet64-spectrum and a twin-trained npr32 network, with a second npr32 network and its own weights for "
         "JPEG files"),
        ("fusion-spectrum-npr32-2oct", SpectrumNPR32TwoOctaveFusion,
         "alexnet64-spectrum and the twin-trained npr32-2oct network (two octaves of NPR residual)"),
        ("fusion-spectrum-npr32-ref", SpectrumNPR32ReferenceFusion,
         "alexnet64-spectrum and the npr32-ref network (each tile against its own enlargement)")):
    register_detector(_arch, input_size=64, policy="tiles", max_tiles=16, mean=INCEPTION_MEAN, std=INCEPTION_STD,
                      classifier=("weight", "bias"), family="fusion", description=f"logistic fusion of {_members}")(_cls)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3, steps: int = 200) -> tuple[torch.Tensor, float]:
    """Class-balanced logistic regression (L-BFGS) of ``y`` (0/1) on features ``x`` (N,K); (weights, bias).

    Features are standardised for the fit and the coefficients mapped back, so the result applies to raw
    member logits.
    """
    x = x.double()
    y = y.double().view(-1)
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mu) / sd
    n_pos, n_neg = float(y.sum()), float((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("fusion needs real and fake examples")
    sample_w = torch.where(y > 0, 0.5 / n_pos, 0.5 / n_neg)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = z @ w + b
        loss = (sample_w * nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        loss = loss + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_raw = (w / sd).detach()
    b_raw = float(b.detach() - (w.detach() * mu / sd).sum())
    return w_raw.float(), b_raw


# --- fitting -------------------------------------------------------------------------------------------

def _logit(p: float) -> float:
    import math

    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def member_logits(detectors: list, paths: list[str], precision, settings, progress=None):
    """(N, K) mean tile logits of each member for each path (NaN where a file does not decode).

    Scored through evaluate's pipeline (scan's decoding and preprocessing, each file decoded once for all
    members; ``progress`` advances by K per file); logit(score) is the member's mean tile logit, which is
    what the fused model combines (up to the 6-decimal rounding of scores, so logits beyond about +-14 read
    as +-14 here).
    """
    import numpy as np

    from ganscan.detectors.evaluate import score_models

    out = np.full((len(paths), len(detectors)), np.nan)
    each = score_models(detectors, paths, precision, settings,
                        progress=progress and (lambda n: progress(n * len(detectors))))
    for k, scores in enumerate(each):
        for i, p in enumerate(paths):
            s = scores.get(p, (None, None))[0]
            if s is not None:
                out[i, k] = _logit(s)
    return out


def threshold_at_fpr(real_scores_by_kind: dict[str, list[float]], fpr: float) -> tuple[float, dict]:
    """The lowest threshold at which every kind of real photo is flagged at most ``fpr`` of the time.

    ``verdict = fake`` when ``score >= threshold``; returns (threshold, {kind: its own FPR there}).
    """
    import numpy as np

    t = 0.0
    for kind, s in real_scores_by_kind.items():
        s = np.sort(np.asarray(s, dtype=np.float64))[::-1]
        if not len(s):
            continue
        k = int(np.floor(fpr * len(s)))
        t_kind = float(np.nextafter(s[k], np.inf)) if k < len(s) else float(s[-1])
        t = max(t, t_kind)
    rates = {kind: float(np.mean(np.asarray(s) >= t)) if len(s) else None for kind, s in real_scores_by_kind.items()}
    return t, rates


def reals_by_kind(calib_sets: list) -> dict[str, list[str]]:
    """kind (the set's name) -> its real images; a kind without any is an error."""
    from ganscan.errors import DataError

    reals = {s.name: [p for p, lab in zip(s.paths, s.labels) if lab == 0] for s in calib_sets}
    for kind, files in reals.items():
        if not files:
            raise DataError(f"calibration set {kind!r} holds no real images")
    return reals


def split_by_kind(values, reals: dict[str, list[str]]) -> dict[str, list[float]]:
    """Scores of all kinds' files in ``reals`` order -> kind -> its scores (NaN or None, files that failed, left
    out)."""
    import numpy as np

    out, start = {}, 0
    for kind, files in reals.items():
        v = np.asarray([np.nan if s is None else s for s in values[start:start + len(files)]], dtype=np.float64)
        start += len(files)
        out[kind] = v[~np.isnan(v)].tolist()
    return out


def threshold_rule(fpr: float) -> str:
    return f"fpr:{fpr:g} on every calibration kind"


def calibration_record(fpr: float, rates: dict, scores: dict[str, list[float]]) -> dict:
    return {"fpr_target": fpr, "fpr_by_kind": rates, "n_by_kind": {k: len(v) for k, v in scores.items()}}


def calibrate(det, calib_sets: list, fpr: float, precision, settings) -> dict:
    """The threshold of one loaded detector at ``fpr`` on every calibration kind (all kinds scored in one
    pass): the checkpoint metadata keys ``threshold``, ``threshold_rule``, ``threshold_calibration`` and
    ``threshold_precision`` (the scores' precision: bf16 and fp32 scores can set different thresholds)."""
    from ganscan.detectors.evaluate import score_files

    reals = reals_by_kind(calib_sets)
    got = score_files(det, [p for files in reals.values() for p in files], precision, settings)
    return threshold_meta(reals, got, fpr, precision)


def threshold_meta(reals: dict[str, list[str]], got: dict, fpr: float, precision) -> dict:
    """``calibrate``'s metadata from the scores (path -> (score, error)) of every kind's real images."""
    paths = [p for files in reals.values() for p in files]
    scores = split_by_kind([got.get(p, (None, None))[0] for p in paths], reals)
    threshold, rates = threshold_at_fpr(scores, fpr)
    return {"threshold": threshold, "threshold_rule": threshold_rule(fpr),
            "threshold_calibration": calibration_record(fpr, rates, scores), "threshold_precision": precision.name}


def fusion_arch(npr_arch: str, three: bool, label: str | None = None, ensemble: bool = False) -> str:
    """The fusion architecture for an NPR member's architecture (``npr`` or ``npr32``), with or without fsd64,
    or for an ensemble of NPR members; a DataError naming the architectures that fit (and the member ``label``)
    otherwise."""
    from ganscan.errors import DataError

    if ensemble:
        if three or npr_arch not in ENSEMBLES:
            raise DataError(f"{label + ': ' if label else ''}a {npr_arch} detector, but an ensemble of NPR members "
                            f"must be {' or '.join(sorted(ENSEMBLES))}" + (", without fsd64" if three else ""))
        return ENSEMBLES[npr_arch]
    fits = {archs[1]: arch for arch, (_, _, archs, _) in FUSIONS.items()
            if (len(archs) == 3) == three and arch not in ENSEMBLES.values() and arch not in JPEG_FUSIONS.values()}
    if npr_arch not in fits:
        raise DataError(f"{label + ': ' if label else ''}a {npr_arch} detector, but this member must be "
                        f"{' or '.join(sorted(fits))}")
    return fits[npr_arch]


def fused_state(spectrum_state: dict, npr_state, weight, bias: float, fsd_state: dict | None = None,
                npr_arch: str = "npr") -> dict:
    """The fused checkpoint's tensors: each member's under its prefix, plus the fusion weights (three members
    when ``fsd_state`` is given). ``npr_state`` may be a list of state dicts: an ensemble, its mean logit one member."""
    ensemble = isinstance(npr_state, (list, tuple))
    arch = fusion_arch(npr_arch, fsd_state is not None, ensemble=ensemble)
    cls, members = FUSIONS[arch][:2]
    own = (cls(len(npr_state)) if ensemble else cls()).state_dict()
    npr_parts = [(f"npr.members.{i}.", st) for i, st in enumerate(npr_state)] if ensemble else [("npr.", npr_state)]
    parts = [("spectrum.", spectrum_state), *npr_parts] + ([("fsd.", fsd_state)] if fsd_state else [])
    state = {prefix + k: v for prefix, member in parts for k, v in member.items()}
    state["weight"] = torch.as_tensor(weight, dtype=torch.float32).reshape(len(members))
    state["bias"] = torch.tensor([float(bias)], dtype=torch.float32)
    for k, v in own.items():
        state.setdefault(k, v)
    missing = set(own) - set(state)
    extra = set(state) - set(own)
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or shape:
        from ganscan.errors import CheckpointError

        raise CheckpointError(f"member weights do not fit {arch} (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(extra)[:3]}, other shapes {shape[:3]})")
    return {k: v.contiguous() for k, v in state.items()}


def check_members(pairs, npr, others=()) -> None:
    """DataError unless each (loaded detector, architecture) of ``pairs`` has that architecture and reads 64 px tiles,
    16 at most, and unless every NPR network of ``others`` reads ``npr``'s tile grid."""
    from ganscan.errors import DataError

    for det, member_arch in pairs:
        if det.config.name != member_arch:
            raise DataError(f"{det.label}: a {det.config.name} detector, but this member must be {member_arch}")
        pre = det.config.preprocessing()
        if (pre["policy"], pre["input_size"], pre["max_tiles"]) != ("tiles", 64, 16):
            raise DataError(f"{det.label}: preprocessing {det.config.describe_preprocessing()} differs from tiles64x16")
    for other in others:
        if other.config.tile_align != npr.config.tile_align:
            raise DataError(f"{other.label}: its tiles start on a multiple of {other.config.tile_align}, "
                            f"{npr.label}'s on a multiple of {npr.config.tile_align}: they must read the same tiles")


def member_card(det) -> dict:
    """What a fused card records of one member."""
    return {"name": det.label, "arch": det.config.name, "weights_sha256": det.sha256}


def fit_fusion(spectrum, npr, fit_sets: list, calib_sets: list, fpr: float, precision, settings,
               name: str, progress=None, fsd=None, more_npr: tuple = ()) -> tuple[dict, dict]:
    """Fit the fusion of two (or, with ``fsd``, three) loaded detectors; returns (state dict, metadata).

    ``fit_sets``: labelled sets (real and fake) the logistic weights are fitted on; ``calib_sets``: sets
    whose real images fix the threshold, each set a processing kind that must stay at or under ``fpr``.
    Files that do not decode are left out and counted. ``more_npr``: further NPR detectors of ``npr``'s
    architecture; with them the NPR member is the ensemble of all, its logit their mean.
    """
    import numpy as np

    from ganscan.detectors import metrics as M
    from ganscan.errors import DataError

    nprs = [npr, *more_npr]
    arch = fusion_arch(npr.config.name, fsd is not None, npr.label, ensemble=len(nprs) > 1)
    _, names, archs, clip = FUSIONS[arch]
    for other in nprs[1:]:
        if other.config.name != npr.config.name:
            raise DataError(f"{other.label}: a {other.config.name} detector, but every NPR member of an ensemble "
                            f"must be {npr.config.name}")
    dets = [spectrum, *nprs] + ([fsd] if fsd is not None else [])
    check_members(zip(dets, [archs[0], *[archs[1]] * len(nprs), *archs[2:]]), npr, nprs[1:])

    # the fused model cuts one set of tiles for all members: its twin member's grid (ganscan train --crop-align)
    align = npr.config.tile_align
    dets = [replace(d, config=replace(d.config, tile_align=align)) for d in dets]

    def logits(paths: list[str]):   # each member's (an ensemble's: the mean), clipped as the fused model clips them
        x = member_logits(dets, paths, precision, settings, progress)
        if len(nprs) > 1:
            x = np.concatenate([x[:, :1], x[:, 1:1 + len(nprs)].mean(1, keepdims=True), x[:, 1 + len(nprs):]], 1)
        return np.clip(x, -clip, clip) if clip else x

    x = logits([p for s in fit_sets for p in s.paths])
    y = np.asarray([lab for s in fit_sets for lab in s.labels])
    ok = ~np.isnan(x).any(1)
    if len(set(y[ok].tolist())) < 2:
        raise DataError("the --fit sets must hold both real and fake images")
    w, b = fit_logistic(torch.from_numpy(x[ok]), torch.from_numpy(y[ok]))
    fused = x[ok] @ w.double().numpy() + b
    member_auc = {m: M.roc_auc(y[ok], x[ok, k]) for k, m in enumerate(names)}
    reals = reals_by_kind(calib_sets)
    xc = logits([p for files in reals.values() for p in files])   # every kind in one pass per member
    zc = xc @ w.double().numpy() + b
    calib_scores = split_by_kind(1 / (1 + np.exp(-zc)), reals)
    threshold, rates = threshold_at_fpr(calib_scores, fpr)
    npr_state = [d.model.state_dict() for d in nprs] if len(nprs) > 1 else npr.model.state_dict()
    state = fused_state(spectrum.model.state_dict(), npr_state, w, b,
                        fsd.model.state_dict() if fsd is not None else None, npr_arch=npr.config.name)

    members = {m: member_card(d) for m, d in zip(names, [spectrum, npr] + ([fsd] if fsd is not None else []))}
    if len(nprs) > 1:   # the NPR member is the ensemble: each network named, in the order of its tensors
        members["npr"] = {"ensemble": [member_card(d) for d in nprs], "arch": npr.config.name, "name": "mean of "
                          + ", ".join(d.label for d in nprs)}
    meta = {
        "kind": "detector", "arch": arch, "name": name, "threshold": threshold,
        "threshold_rule": threshold_rule(fpr),
        "preprocessing": replace(get_config(arch), tile_align=align).preprocessing(),
        **({"arch_args": {"npr_members": len(nprs)}} if len(nprs) > 1 else {}),
        "members": members,
        "fusion": {"weight": [float(v) for v in w], "bias": float(b), "n_fit": int(ok.sum()),
                   "unreadable": int((~ok).sum()), "fit_sets": [s.name for s in fit_sets],
                   "fit_auc": M.roc_auc(y[ok], fused), "member_fit_auc": member_auc},
        "threshold_calibration": calibration_record(fpr, rates, calib_scores),
        "threshold_precision": precision.name,
    }
    return state, meta

