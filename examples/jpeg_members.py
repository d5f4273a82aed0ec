#!/usr/bin/env python3
"""What a JPEG pass does to a fusion's two members, and what any weighting of them could recover.

    python examples/jpeg_members.py --work runs/twins --npr ganscan-twins-v10

Scores, with ``ganscan-spectrum-v1`` and the NPR member, the fusion's fit sets (``heldout/fit-translate``,
``twins-seen``, ``fit``), their JPEG copies (``heldout/fit-jpeg``) and the four own held-out sets, clean and saved as
JPEG 90 (as ``twins_table.py --perturb jpeg:90`` writes them). Then prints:

- for four sets of fusion weights (fitted on every fit file, on the non-JPEG ones, on the JPEG ones plus
  ``fit-jpeg``, on every fit file plus ``fit-jpeg``): each member's AUC on those files, and the fusion's own mean AUC, clean and under JPEG 90. A set whose files share one format ranks by the ratio of
  the weights alone, so this is what any fusion of these two members reaches;
- the own mean AUC under JPEG 90 for a sweep of ratios (read off the own sets: a diagnostic, never a selection);
- the same for a fusion that adds the members' odds instead of their logits (``odds_logit``, C33), fitted on every
  fit file;
- for each own set, the median logit of reals and of fakes, clean and under JPEG 90, fused and per member.

Member logits are cached in ``--cache`` (default ``WORK/jpeg-members.json``). Nothing under ``val/`` is read.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

FIT = ("fit-translate", "twins-seen", "fit")
OWN = ("twins-shuffle", "twins-seen", "report/autogan1", "report/progan")
RATIOS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 3.0)


def score(work: Path, npr: str, workers: int, npr2: str | None = None) -> dict:
    """{"group/set": {"paths", "y", "x": (N, 2) member logits}} for the fit, fit-jpeg, own and own-JPEG-90 sets
    ((N, 3) with a second twin member ``npr2``)."""
    from ganscan.data.datasets import test_sets
    from ganscan.detectors.evaluate import EvalSettings, perturbed_copies
    from ganscan.detectors.load import load_detector, open_detector
    from ganscan.detectors.zoo.fusion import member_logits

    held = work / "heldout"
    _, prec, spectrum = open_detector("ganscan-spectrum-v1", "auto", "auto")
    dets = [spectrum, load_detector(npr)] + ([load_detector(npr2)] if npr2 else [])
    settings = EvalSettings(workers=workers)
    groups = {"fit": [held / d for d in FIT], "fitjpeg": [held / "fit-jpeg"], "own": [held / d for d in OWN]}
    out = {}

    def add(key, s):
        x = member_logits(dets, list(s.paths), prec, settings)
        out[key] = {"paths": list(s.paths), "y": [int(v) for v in s.labels], "x": x.tolist()}
        print(f"scored {key}: {len(s.paths)} images", file=sys.stderr, flush=True)

    for group, dirs in groups.items():
        missing = [str(d) for d in dirs if not d.is_dir()]
        if missing:
            raise SystemExit(f"error: not found: {', '.join(missing)} (python examples/train_twins.py --recipe v10 "
                             f"--stage heldout writes them)")
        sets = [s for d in dirs for s in test_sets(str(d))]
        for s in sets:
            add(f"{group}/{s.name}", s)
        if group == "own":
            with tempfile.TemporaryDirectory(prefix="jpeg-members-") as tmp:
                for s in perturbed_copies(sets, "jpeg", 90, tmp, workers, settings.max_pixels):
                    add(f"ownj/{s.name}", s)
    return out


def odds_logit(x, scale, shift):
    """(N,K) member logits -> (N,) fused logits log(sum_k exp(scale_k x_k + shift_k)): the members' odds add."""
    import torch

    return torch.logsumexp(x * scale.view(1, -1) + shift.view(1, -1), dim=1)


def fit_odds(x, y, l2: float = 1e-3, steps: int = 300):
    """Class-balanced maximum-likelihood fit of ``odds_logit`` to ``y`` (0/1) on member logits ``x`` (N,K), as
    ``fit_logistic`` fits the linear fusion: members standardised for the fit, the parameters mapped back;
    (scale, shift). The loss is not convex: it starts from every member at unit scale and from each member leading,
    and keeps the best."""
    import torch

    x, y = x.double(), y.double().view(-1)
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mu) / sd
    n_pos, n_neg = float(y.sum()), float((1 - y).sum())
    wts = torch.where(y > 0, 0.5 / n_pos, 0.5 / n_neg)
    k = x.shape[1]

    def loss_of(a, b):
        bce = torch.nn.functional.binary_cross_entropy_with_logits(odds_logit(z, a, b), y, reduction="none")
        return (wts * bce).sum() + l2 * (a ** 2).sum()

    best = None
    for start in range(k + 1):
        a = torch.ones(k, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64)
        if start < k:
            b -= 4.0
            b[start] = 0.0
        b.requires_grad_(True)
        opt = torch.optim.LBFGS([a, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = loss_of(a, b)
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            loss = float(loss_of(a, b))
        if best is None or loss < best[0]:
            best = (loss, a.detach().clone(), b.detach().clone())
    _, a, b = best
    return a / sd, b - a * mu / sd


def stacked(d: dict, keys, keep=None):
    """(member logits, labels) of the readable files of the sets ``keys`` (those ``keep`` keeps, by path)."""
    import numpy as np

    rows = [(v, lab) for k in keys for p, v, lab in zip(d[k]["paths"], d[k]["x"], d[k]["y"]) if keep is None or keep(p)]
    x, y = np.array([v for v, _ in rows], dtype=float), np.array([lab for _, lab in rows])
    ok = ~np.isnan(x).any(1)
    return x[ok], y[ok]


def fit_weights(d: dict, keys, keep=None):
    """The linear fusion fitted on the files of ``keys``: (weights, bias, each member's AUC on those files)."""
    import torch

    from ganscan.detectors import metrics as M
    from ganscan.detectors.zoo.fusion import fit_logistic

    x, y = stacked(d, keys, keep)
    w, b = fit_logistic(torch.from_numpy(x), torch.from_numpy(y))
    return w.double().numpy(), b, [M.roc_auc(y, x[:, k]) for k in range(x.shape[1])]


def set_auc(d: dict, key: str, w) -> float:
    """One set's AUC under ``w``: linear weights, or a function of the (N,K) logits."""
    import numpy as np

    from ganscan.detectors import metrics as M

    x, y = np.array(d[key]["x"], dtype=float), np.array(d[key]["y"])
    ok = ~np.isnan(x).any(1)
    return M.roc_auc(y[ok], w(x[ok]) if callable(w) else x[ok] @ w)


def mean_auc(d: dict, prefix: str, w) -> float:
    import numpy as np

    return float(np.mean([set_auc(d, k, w) for k in d if k.startswith(prefix)]))


def analyse(d: dict) -> list[str]:
    """The printed report (see the module docstring) from cached member logits."""
    import numpy as np
    import torch

    def jpeg(p: str) -> bool:
        return p.lower().endswith((".jpg", ".jpeg"))

    fit_keys = [k for k in d if k.startswith("fit/")]
    fitj_keys = [k for k in d if k.startswith("fitjpeg/")]
    weights = {"every fit file": fit_weights(d, fit_keys),
               "non-JPEG fit files": fit_weights(d, fit_keys, lambda p: not jpeg(p)),
               "JPEG fit files + fit-jpeg": fit_weights(d, fit_keys + fitj_keys, jpeg),
               "every fit file + fit-jpeg": fit_weights(d, fit_keys + fitj_keys)}
    lines = ["| weights fitted on | spectrum, twins | members' AUC on those files | own mean AUC | under JPEG 90 | drop |",
             "|---|---|---|---|---|---|"]
    for name, (w, _, auc) in weights.items():
        c, j = mean_auc(d, "own/", w), mean_auc(d, "ownj/", w)
        lines.append(f"| {name} | {w[0]:.3f}, {w[1]:.3f} | {auc[0]:.3f}, {auc[1]:.3f} | {c:.4f} | "
                     f"{j:.4f} | {c - j:.4f} |")
    lines += ["", "own mean AUC under JPEG 90 by ratio twins/spectrum (a diagnostic on the own sets): "
              + ", ".join(f"{r:g}: {mean_auc(d, 'ownj/', np.array([1.0, r])):.4f}" for r in RATIOS), ""]
    x, y = stacked(d, fit_keys)
    scale, shift = fit_odds(torch.from_numpy(x), torch.from_numpy(y))
    odds = lambda v: odds_logit(torch.from_numpy(v), scale, shift).numpy()   # noqa: E731
    c, j = mean_auc(d, "own/", odds), mean_auc(d, "ownj/", odds)
    lines += ["the members' odds added (C33; fitted on every fit file): log(exp("
              + " + ".join(f"{a:.3f} x {m} {b:+.3f}"
                           for a, b, m in zip(scale.tolist(), shift.tolist(), ("spectrum", "twins")))
              .replace(" + ", ") + exp(") + f")): own mean AUC {c:.4f}, under JPEG 90 {j:.4f}, drop {c - j:.4f}; "
              "by set, under JPEG 90: " + ", ".join(f"{k.split('/', 1)[1]} {set_auc(d, k, odds):.4f}"
                                                    for k in d if k.startswith("ownj/")), ""]
    w, b, _ = weights["every fit file"]
    lines += ["median logits, clean -> JPEG 90 (fused with the every-fit-file weights; spectrum; twins):",
              "| set | class | fused | spectrum | twins |", "|---|---|---|---|---|"]
    for s in (k.split("/", 1)[1] for k in d if k.startswith("own/")):
        c, j = d[f"own/{s}"], d[f"ownj/{s}"]
        xc, xj, y = np.array(c["x"], dtype=float), np.array(j["x"], dtype=float), np.array(c["y"])
        for lab, name in ((0, "real"), (1, "fake")):
            m = y == lab
            med = [(np.nanmedian(a[m] @ w + b) if k is None else np.nanmedian(a[m, k])) for k in (None, 0, 1)
                   for a in (xc, xj)]
            lines.append(f"| {s} | {name} | " + " | ".join(f"{med[i]:+.2f} -> {med[i + 1]:+.2f}" for i in (0, 2, 4))
                         + " |")
    return lines


def analyse_three(d: dict) -> list[str]:
    """With a second twin member (C34, C35): the three members' linear fusion fitted on every fit file, and on every
    fit file plus fit-jpeg; for each, the weights, each member's AUC on those files, and the fusion's own mean AUC
    clean and under JPEG 90, with each own set's."""
    own = [k.split("/", 1)[1] for k in d if k.startswith("own/")]
    lines = []
    for name, prefixes in (("every fit file", ("fit/",)), ("every fit file + fit-jpeg", ("fit/", "fitjpeg/"))):
        w, b, member_auc = fit_weights(d, [k for k in d if k.startswith(prefixes)])
        c, j = mean_auc(d, "own/", w), mean_auc(d, "ownj/", w)
        lines += [f"three members (spectrum, twins, second twins) fitted on {name}: weights "
                  + ", ".join(f"{v:.3f}" for v in w) + f", bias {b:+.3f}; members' AUC on those files "
                  + ", ".join(f"{v:.3f}" for v in member_auc),
                  f"own mean AUC {c:.4f}, under JPEG 90 {j:.4f}, drop {c - j:.4f}",
                  "by set, clean -> JPEG 90: "
                  + ", ".join(f"{s} {set_auc(d, f'own/{s}', w):.4f} -> {set_auc(d, f'ownj/{s}', w):.4f}" for s in own),
                  ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/twins", help="the twins work folder (its heldout/ sets)")
    ap.add_argument("--npr", default="ganscan-twins-v10", help="the NPR member (a shipped name or a checkpoint)")
    ap.add_argument("--npr2", default=None, help="a second twin member with a weight of its own (C34): the report is "
                    "the three members' fusion")
    ap.add_argument("--cache", default=None, help="member logits, written once and read after (default WORK/jpeg-members.json)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.work)
    cache = Path(args.cache) if args.cache else work / "jpeg-members.json"
    if cache.exists():
        d = json.loads(cache.read_text())
    else:
        d = score(work, args.npr, args.workers, args.npr2)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(d))
    three = len(next(iter(d.values()))["x"][0]) == 3
    if three != bool(args.npr2):
        raise SystemExit(f"error: {cache} holds {'three' if three else 'two'} members' logits; "
                         f"{'give' if three else 'leave out'} --npr2, or name another --cache")
    print("\n".join(analyse_three(d) if three else analyse(d)))


if __name__ == "__main__":
    main()
