#!/usr/bin/env python3
"""C57's first stage (rule ``docs/selection-rule-v51.txt``): each tile read by the larger of the two members' logits.

    python examples/max_fusion.py --work runs/twins     # about 8 min from nothing on the 2-core AMD EPYC (tile logits kept in WORK/c57)
    python examples/max_fusion.py --work runs/twins --rule v52    # C58, from the same tile logits (seconds)

``ganscan-fusion-v49`` fuses its members' tile logits linearly (``0.949 t + 0.783 s + 0.114``: ``t`` the twin member's,
``s`` the spectrum member's). C57 reads each tile as ``max(t, s + d)`` instead, with v49's reads and pooling
unchanged. This keeps both members' logits for every tile of the fusion's fit sets (``heldout/fit``: autogan1 and
progan; ``fit-translate``; ``twins-seen``), clean and as JPEG 90 copies made in memory, and of the calibration reals
(``heldout/calib``, ``calib-frac``; ``calib-u2j``, the calibration half of the reals enlarged 2x and then saved as JPEG
75, as a check only), then prints for v49 (from the same tile logits) and for every ``d`` of the rule: the 8 fit AUCs,
the threshold by v49's rule (5 % FPR on every kind of calib and calib-frac), the mean clean fit TPR there, the share
of calib-u2j flagged, and the rule's choice; then, for the same settings at their thresholds, the share of each fit
set's reals flagged as JPEG 90 copies and the mean share of their fakes caught (not criteria of the rules). ``--rule v52`` (C58, ``docs/selection-rule-v52.txt``) does the same for
two other tile-level fusions: ``0.949 t + 0.783 max(s, a) + 0.114`` (the spectrum member counted only above ``a``,
``H``) and ``min(L, max(t, s + d) + c)`` (v49's linear logit ``L`` capped at ``c`` above the stronger member's, ``C``).
Nothing under ``val/`` is read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overlap_tiles  # noqa: E402  (the rule's summary: AUCs, threshold, TPR)
import tile_pool  # noqa: E402  (tile logits of every read)
import two_scale  # noqa: E402  (the sets)

OFFSETS = (-3.0, -2.0, -1.0, 0.0, 1.0)   # rule v51's choices of d
HINGES = (-0.5, 0.0, 0.5, 1.0, 1.5, 2.0)   # rule v52's a
CAPS = tuple((d, c) for d in (-2.0, -1.0, 0.0) for c in (0.5, 1.0, 2.0))   # rule v52's (d, c)
U2J_LIMIT = 0.10


def fused(tiles, how, linear):
    """The fused logits of a read's tiles (each [spectrum, twin, further members...]); ``how``: ("linear",),
    ("max", d), ("hinge", a), ("cap", d, c), or ("weights", (w...), b, clip) (every member, each clipped to +-clip:
    rule v53); ``linear``: v49's ((w_s, w_t), b)."""
    (ws, wt), b = linear
    if how[0] == "linear":
        return [ws * s + wt * t + b for s, t, *_ in tiles]
    if how[0] == "max":
        return [max(t, s + how[1]) for s, t, *_ in tiles]
    if how[0] == "hinge":
        return [ws * max(s, how[1]) + wt * t + b for s, t, *_ in tiles]
    if how[0] == "weights":
        _, w, b2, clip = how
        return [sum(wk * min(max(v, -clip), clip) for wk, v in zip(w, tile)) + b2 for tile in tiles]
    return [min(ws * s + wt * t + b, max(t, s + how[1]) + how[2]) for s, t, *_ in tiles]


def file_logit(row, how, cfg, linear) -> float:
    """A file's logit from its kept member tile logits, read and pooled as ``cfg`` (v49's reads) says."""
    y, native, half, is_jpeg = row
    margin = cfg.half_jpeg_margin if is_jpeg else cfg.half_margin
    return tile_pool.pooled([y, fused(native, how, linear), fused(half, how, linear) if half else None, is_jpeg],
                            cfg.tile_pool, margin, cfg.pool_jpeg_only)


def rows(reads: dict, how, cfg, linear) -> dict:
    """{set: {condition: [[label, file logit], ...]}}."""
    return {s: {c: [[r[0], file_logit(r, how, cfg, linear)] for r in rs] for c, rs in conds.items()}
            for s, conds in reads.items()}


def summary(reads: dict, how, cfg, linear) -> dict:
    """Rule v51's numbers for one fusion: overlap_tiles.summary's plus the share of calib-u2j flagged."""
    fit = rows(reads["fit"], how, cfg, linear)
    out = overlap_tiles.summary(fit, rows(reads["calib"], how, cfg, linear))
    t = out["threshold"]

    def flagged(values):
        return sum(1.0 / (1.0 + math.exp(-v)) >= t for v in values) / len(values)

    out["u2j"] = flagged([v for conds in rows(reads["u2j"], how, cfg, linear).values() for _, v in conds["none"]])
    # the fit sets' reals as JPEG 90 copies (half of the twin sets' reals enlarged by a standard filter): flagged
    out["fpr_jpeg90"] = {s: flagged([v for y, v in conds["jpeg:90"] if y == 0]) for s, conds in fit.items()}
    out["tpr_jpeg90"] = sum(flagged([v for y, v in c["jpeg:90"] if y == 1]) for c in fit.values()) / len(fit)
    return out


def choose(ref: dict, summ: dict):
    """Rule v51's (and v52's) setting: eligible if no fit AUC is 0.005 below v49's, the TPR at most 2 points below and
    calib-u2j at most 10 % flagged; the highest mean of the 8 AUCs (ties: the lower calib-u2j share, then the earlier
    setting). None: none eligible."""
    def all8(m):
        return m["auc"]["none"] + m["auc"]["jpeg:90"]

    ok = [(sum(all8(m)) / 8, -m["u2j"], -i, key) for i, (key, m) in enumerate(summ.items())
          if all(a >= b - 0.005 for a, b in zip(all8(m), all8(ref)))
          and m["tpr"] >= ref["tpr"] - 0.02 and m["u2j"] <= U2J_LIMIT]
    return max(ok)[3] if ok else None


def label(how) -> str:
    return {"max": "max d={:+g}", "hinge": "H a={:+g}", "cap": "C d={:+g} c={:g}"}[how[0]].format(*how[1:])


def main() -> None:
    from ganscan.data.datasets import test_sets
    from ganscan.detectors.load import load_detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("--model", default="ganscan-fusion-v49", help="the linear fusion whose members and reads are used")
    ap.add_argument("--rule", choices=["v51", "v52"], default="v51", help="v51: C57's settings; v52: C58's")
    args = ap.parse_args()
    held = two_scale.heldout(args.work)
    if not (held / "calib-u2j").is_dir():
        sys.exit(f"error: {held / 'calib-u2j'} does not exist (python examples/train_twins.py --stage heldout makes it)")
    det = load_detector(args.model)
    cfg = det.config
    linear = (tuple(float(v) for v in det.model.weight), float(det.model.bias))

    def make():
        def read(sets, conds):
            return tile_pool.tile_logits(args.model, sets, conditions=conds, members=True)[0]
        return {"model": args.model, "fit": read(two_scale.fit_sets(held), ("none", "jpeg:90")),
                "calib": read(two_scale.calib_sets(held), ("none",)),
                "u2j": read(test_sets(str(held / "calib-u2j")), ("none",))}

    reads = two_scale.cached(args.work / "c57" / "tiles.json", make)
    if reads.get("model") != args.model:
        sys.exit(f"error: the cached tiles are {reads.get('model')}'s, not {args.model}'s (remove WORK/c57/tiles.json)")
    ref = summary(reads, ("linear",), cfg, linear)
    if args.rule == "v51":
        settings, cand = [("max", d) for d in OFFSETS], "C57"
    else:
        settings, cand = [("hinge", a) for a in HINGES] + [("cap", d, c) for d, c in CAPS], "C58"
    summ = {how: summary(reads, how, cfg, linear) for how in settings}
    names = list(reads["fit"])
    print("fusion      clean AUC: " + " ".join(names) + "; JPEG 90 the same; mean of 8; threshold; fit TPR; calib-u2j")
    for name, m in [("v49", ref)] + [(label(h), m) for h, m in summ.items()]:
        a, j = m["auc"]["none"], m["auc"]["jpeg:90"]
        print(f"{name:11s} " + " ".join(f"{v:.4f}" for v in a) + "; " + " ".join(f"{v:.4f}" for v in j)
              + f"; {(sum(a) + sum(j)) / 8:.4f}; {m['threshold']:.3f}; {100 * m['tpr']:.1f} %; {100 * m['u2j']:.1f} %")
    print("as JPEG 90 copies, at the threshold: fit reals flagged, " + " ".join(names) + "; mean fit TPR")
    for name, m in [("v49", ref)] + [(label(h), m) for h, m in summ.items()]:
        print(f"{name:11s} " + " ".join(f"{100 * v:.1f} %" for v in m["fpr_jpeg90"].values())
              + f"; {100 * m['tpr_jpeg90']:.1f} %")
    how = choose(ref, summ)
    print(f"rule {args.rule}: " + (f"chosen: {label(how)}" if how else f"no setting is eligible: {cand} fails at stage 1"))
    out = args.work / "c57" / ("summary.json" if args.rule == "v51" else "summary-v52.json")
    out.write_text(json.dumps({"v49": ref, "settings": {label(h): v for h, v in summ.items()},
                               "choice": label(how) if how else None}, indent=1))


if __name__ == "__main__":
    main()
