"""Fitting the fusion with a JPEG branch (``fusion-spectrum-npr32-jpeg``): weights and calibration per format.

The scanner knows each file's format before it scores it. JPEG files can then be read by their own NPR member
(``--npr-jpeg``) with their own weights, or by the same member and weights (``--by-format``); either way each format
is calibrated on the real photos of that format, and the JPEG branch's bias carries the difference, so the fused
model ships one threshold.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ganscan.detectors.registry import get_config
from ganscan.detectors.zoo.fusion import (FUSIONS, JPEG_FUSIONS, _logit, calibration_record, check_members, fit_logistic,
                                          fused_state, member_card, member_logits, reals_by_kind, split_by_kind,
                                          threshold_at_fpr)


def is_jpeg_file(path: str) -> bool:
    """Whether the file is a JPEG by its signature (what the scanner's decoder reports as format JPEG); False for a
    file that cannot be read (it fails to decode later and is counted there)."""
    from ganscan.data.formats import sniff

    try:
        with open(path, "rb") as f:
            return sniff(f.read(64)) == "JPEG"
    except OSError:
        return False


def split_kinds_by_format(reals: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """kind -> files, as (lossless parts, JPEG parts): each kind's files split by format, an empty part left out."""
    lossless, jpeg = {}, {}
    for kind, files in reals.items():
        flags = [is_jpeg_file(p) for p in files]
        if not all(flags):
            lossless[kind] = [p for p, j in zip(files, flags) if not j]
        if any(flags):
            jpeg[kind] = [p for p, j in zip(files, flags) if j]
    return lossless, jpeg


def fit_jpeg_fusion(spectrum, npr, npr_jpeg, fit_sets: list, fit_jpeg_sets: list, calib_sets: list,
                    calib_jpeg_sets: list, fpr: float, precision, settings, name: str,
                    progress=None) -> tuple[dict, dict]:
    """Fit ``fusion-spectrum-npr32-jpeg``: (state dict, metadata).

    - the lossless branch (``spectrum`` + ``npr``): logistic weights on the non-JPEG files of ``fit_sets``;
    - the JPEG branch (``spectrum`` + ``npr_jpeg``): on the JPEG files of ``fit_sets`` and of ``fit_jpeg_sets``;
    - ``npr_jpeg=None`` (a threshold per format only): ``npr`` serves both branches with one set of weights, fitted
      on every file of ``fit_sets`` (as ``fit_fusion`` fits them), and the branches differ by their calibration;
    - calibration per format: every kind of ``calib_sets`` is split by format, each part scored by its branch; the
      kinds of ``calib_jpeg_sets`` count for JPEG files only. The lossless threshold keeps every lossless part at
      or under ``fpr``, the JPEG threshold every JPEG part. The lossless one ships; the JPEG branch's bias is moved
      by the difference of their logits, so one threshold holds both.
    """
    import numpy as np

    from ganscan.detectors import metrics as M
    from ganscan.errors import DataError

    arch = JPEG_FUSIONS.get(npr.config.name)
    if arch is None:
        raise DataError(f"{npr.label}: a {npr.config.name} detector, but a fusion with a JPEG branch needs "
                        f"{' or '.join(sorted(JPEG_FUSIONS))} members")
    cls, names, archs, _ = FUSIONS[arch]
    shared = npr_jpeg is None
    if shared:
        if fit_jpeg_sets:
            raise DataError("fit sets for the JPEG branch need a JPEG member: with one member, both branches share "
                            "its weights")
        npr_jpeg = npr
    check_members(((spectrum, archs[0]), (npr, archs[1]), (npr_jpeg, archs[1])), npr, (npr_jpeg,))
    align = npr.config.tile_align
    spectrum, npr, npr_jpeg = (replace(d, config=replace(d.config, tile_align=align)) for d in (spectrum, npr, npr_jpeg))
    branches = {"lossless": [spectrum, npr], "jpeg": [spectrum, npr_jpeg]}

    def logits(branch: str, paths: list[str]):
        return member_logits(branches[branch], paths, precision, settings, progress)

    def fit(branch: str, pairs: list[tuple[str, int]], what: str):
        if len({lab for _, lab in pairs}) < 2:
            raise DataError(f"the {what} of the fit sets must hold both real and fake images")
        x = logits(branch, [p for p, _ in pairs])
        y = np.asarray([lab for _, lab in pairs])
        ok = ~np.isnan(x).any(1)
        if len(set(y[ok].tolist())) < 2:
            raise DataError(f"the readable {what} of the fit sets must hold both real and fake images")
        w, b = fit_logistic(torch.from_numpy(x[ok]), torch.from_numpy(y[ok]))
        fused = x[ok] @ w.double().numpy() + b
        return w, b, {"n_fit": int(ok.sum()), "unreadable": int((~ok).sum()), "fit_auc": M.roc_auc(y[ok], fused),
                      "member_fit_auc": {m: M.roc_auc(y[ok], x[ok, k]) for k, m in enumerate(names)}}

    files = [(p, lab) for s in fit_sets for p, lab in zip(s.paths, s.labels)]
    if shared:   # one member and one set of weights for every file
        w, b, rec = fit("lossless", files, "files")
        wj, bj, recj = w, b, dict(rec)
    else:   # each file's header read once
        files += [(p, lab) for s in fit_jpeg_sets for p, lab in zip(s.paths, s.labels)]
        n_fit = sum(len(s) for s in fit_sets)
        flags = [is_jpeg_file(p) for p, _ in files]
        w, b, rec = fit("lossless", [f for f, j in zip(files[:n_fit], flags) if not j], "lossless files")
        wj, bj, recj = fit("jpeg", [f for f, j in zip(files, flags) if j], "JPEG files")

    lossless_kinds, jpeg_kinds = split_kinds_by_format(reals_by_kind(calib_sets))
    jpeg_only = split_kinds_by_format(reals_by_kind(calib_jpeg_sets))[1] if calib_jpeg_sets else {}
    for kind, part in jpeg_only.items():
        jpeg_kinds[kind if kind not in jpeg_kinds else f"{kind} (JPEG kinds)"] = part
    if not lossless_kinds or not jpeg_kinds:
        missing = "lossless" if not lossless_kinds else "JPEG"
        raise DataError(f"the calibration kinds hold no {missing} real photos: each branch needs its own")

    def branch_scores(branch: str, kinds: dict[str, list[str]], weight, bias: float):
        x = logits(branch, [p for part in kinds.values() for p in part])
        z = x @ weight.double().numpy() + bias
        return split_by_kind(1 / (1 + np.exp(-z)), kinds)

    scores_l = branch_scores("lossless", lossless_kinds, w, b)
    scores_j = branch_scores("jpeg", jpeg_kinds, wj, bj)
    t_l, rates_l = threshold_at_fpr(scores_l, fpr)
    t_j, rates_j = threshold_at_fpr(scores_j, fpr)
    eps = 1e-6
    shift = _logit(min(max(t_l, eps), 1 - eps)) - _logit(min(max(t_j, eps), 1 - eps))
    bj_shipped = bj + shift

    state = fused_state(spectrum.model.state_dict(), npr.model.state_dict(), w, b, npr_arch=npr.config.name)
    state.update({f"npr_jpeg.{k}": v.clone() for k, v in npr_jpeg.model.state_dict().items()})   # own storage
    state["weight_jpeg"] = torch.as_tensor(wj, dtype=torch.float32).reshape(len(names)).clone()
    state["bias_jpeg"] = torch.tensor([float(bj_shipped)], dtype=torch.float32)
    own = cls().state_dict()
    if set(own) != set(state):
        from ganscan.errors import CheckpointError

        raise CheckpointError(f"member weights do not fit {arch} (missing {sorted(set(own) - set(state))[:3]}, "
                              f"unexpected {sorted(set(state) - set(own))[:3]})")
    state = {k: v.contiguous() for k, v in state.items()}

    tagged = {**{f"{k} (lossless)": v for k, v in scores_l.items()}, **{f"{k} (JPEG)": v for k, v in scores_j.items()}}
    rates = {**{f"{k} (lossless)": v for k, v in rates_l.items()}, **{f"{k} (JPEG)": v for k, v in rates_j.items()}}
    meta = {
        "kind": "detector", "arch": arch, "name": name, "threshold": t_l,
        "threshold_rule": f"fpr:{fpr:g} on every calibration kind, per format (lossless, JPEG)",
        "preprocessing": replace(get_config(arch), tile_align=align).preprocessing(),
        "members": {"spectrum": member_card(spectrum), "npr": member_card(npr), "npr_jpeg": member_card(npr_jpeg)},
        "fusion": {"weight": [float(v) for v in w], "bias": float(b), **rec, "fit_sets": [s.name for s in fit_sets],
                   "jpeg": {"weight": [float(v) for v in wj], "bias": float(bj_shipped), "bias_fitted": float(bj),
                            **recj, "fit_sets": [s.name for s in fit_sets] + [s.name for s in fit_jpeg_sets],
                            "shared": shared}},
        "threshold_calibration": {**calibration_record(fpr, rates, tagged), "threshold_lossless": t_l,
                                  "threshold_jpeg": t_j, "jpeg_only_kinds": sorted(jpeg_only)},
        "threshold_precision": precision.name,
    }
    return state, meta
