#!/usr/bin/env python3
"""C60's first stage (rule ``docs/selection-rule-v54.txt``): v49's scores, a higher threshold for low-quality JPEGs.

    python examples/max_fusion.py --work runs/twins          # keeps v49's tile logits in WORK/c57 (8 min, once)
    python examples/quality_threshold.py --work runs/twins   # seconds, from those tile logits
    python examples/quality_threshold.py --stage2 runs/twins/c60/table.json runs/twins/c56/table.json

Every score is ``ganscan-fusion-v49``'s (its reads, pooling and weights, from the tile logits rule v51 kept, fp32 on
the CPU that read them). A file is called fake at ``T_low`` when it is a JPEG whose estimated quality
(``ganscan.data.provenance.jpeg_quality`` of its own tables) is at most ``--max-quality`` (80), and at v49's threshold
``T`` otherwise (a JPEG 90 copy made in memory has quality 90). ``T_low`` is the lowest threshold, never below ``T``,
at which no calibration kind's low-quality-JPEG part (``heldout/calib``, ``calib-frac`` and ``calib-u2j``) has more
than 5 % flagged. Prints ``T``, ``T_low``, the low-quality share of every set, the mean clean and JPEG-90 fit TPR and
each fit set's reals flagged under v49 and C60, ``calib-u2j`` flagged, and the rule's decision. Nothing under
``val/`` is read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import max_fusion  # noqa: E402  (a file's v49 logit from its kept tile logits)
import two_scale  # noqa: E402  (the sets)
from ganscan.detectors.lowjpeg import file_quality, low_quality as low  # noqa: E402

MAX_QUALITY = 80
FPR = 0.05


def thresholds(calib: dict, t: float, max_quality: int = MAX_QUALITY) -> tuple[float, dict]:
    """(T_low, {kind: share of its low-quality part flagged at T_low}) from {kind: [(probability, quality), ...]}."""
    from ganscan.detectors.lowjpeg import low_jpeg_threshold

    return low_jpeg_threshold(calib, t, FPR, max_quality)


def flagged(rows, label: int, t: float, t_low: float, max_quality: int = MAX_QUALITY) -> float:
    """Share of the ``label`` files of [(label, probability, quality), ...] called fake at the per-file threshold."""
    picked = [(p, q) for y, p, q in rows if y == label]
    return sum(p >= (t_low if low(q, max_quality) else t) for p, q in picked) / len(picked)


def eligible(v49_tpr: float, tpr: float, u2j: float) -> bool:
    """Rule v54: the mean clean fit TPR at most 2 points below v49's and calib-u2j at most 10 % flagged."""
    return tpr >= v49_tpr - 0.02 - 1e-12 and u2j <= 0.10


def group_tpr(sets: dict, group: str) -> float:
    """Mean TPR at the threshold over a table's sets of ``group`` (own, translate, large, small)."""
    v = [r["tpr_at_threshold"] for k, r in sets.items() if k.startswith(group + "/") and "auc" in r]
    return sum(v) / len(v)


def stage2(new: dict, ref: dict) -> tuple[list[str], bool]:
    """Rule v54's second stage from two examples/twins_table.py tables (one model each): lines to print, and whether
    every criterion holds."""
    a, b = next(iter(new.values()))["sets"], next(iter(ref.values()))["sets"]
    lines, ok = [], True
    for g in ("own", "translate", "large", "small"):
        if not any(k.startswith(g + "/") for k in a):
            continue
        x, y = group_tpr(a, g), group_tpr(b, g)
        crit = g != "small"   # the rule names own, translate and large
        good = x >= y - 0.02 - 1e-12
        ok &= good or not crit
        lines.append(f"mean TPR {g}: C60 {x:.1%}, v49 {y:.1%}" + (f" ({'ok' if good else 'FAILS'})" if crit else ""))
    for k, r in a.items():
        if "auc" in r:
            continue
        x, y = r["fpr_at_threshold"], b[k]["fpr_at_threshold"]
        if k == "report/upscaled2x-jpeg75":
            good = x <= 0.10
        elif k == "full/camera":
            good = round(x * r["n_real"]) <= 3 and x <= y + 1e-12
        else:
            good = x <= y + 1e-12
        ok &= good
        lines.append(f"{k}: C60 {x:.1%}, v49 {y:.1%} ({'ok' if good else 'FAILS'})")
    return lines, ok


def main() -> None:
    from ganscan.data.datasets import test_sets
    from ganscan.detectors.load import load_detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("--max-quality", type=int, default=MAX_QUALITY)
    ap.add_argument("--stage2", nargs=2, type=Path, metavar=("C60_TABLE", "V49_TABLE"),
                    help="rule v54's second stage from two examples/twins_table.py tables instead")
    args = ap.parse_args()
    if args.stage2:
        lines, ok = stage2(*(json.loads(p.read_text()) for p in args.stage2))
        print("\n".join(lines))
        print("rule v54, stage 2: " + ("every criterion holds: C60 ships" if ok else "C60 fails at stage 2"))
        return
    held = two_scale.heldout(args.work)
    cache = args.work / "c57" / "tiles.json"
    if not cache.exists():
        sys.exit(f"error: {cache} does not exist (python examples/max_fusion.py --work {args.work} writes it)")
    reads = json.loads(cache.read_text())
    det = load_detector(reads["model"])
    cfg = det.config
    linear = (tuple(float(v) for v in det.model.weight), float(det.model.bias))

    def sig(v):
        return 1.0 / (1.0 + math.exp(-v))

    def with_quality(sets, part):   # {set: {condition: [(label, probability, quality), ...]}}
        out = {}
        for s in sets:
            conds = part[s.name]
            qs = [file_quality(p) for p in s.paths]
            for cond, rows in conds.items():
                if len(rows) != len(qs):
                    sys.exit(f"error: {s.name} {cond}: {len(rows)} kept rows for {len(qs)} files")
                q = qs if cond == "none" else [90] * len(qs)
                out.setdefault(s.name, {})[cond] = [
                    (r[0], sig(max_fusion.file_logit(r, ("linear",), cfg, linear)), qq) for r, qq in zip(rows, q)]
        return out

    fit = with_quality(two_scale.fit_sets(held), reads["fit"])
    calib = with_quality(two_scale.calib_sets(held), reads["calib"])
    u2j = with_quality(test_sets(str(held / "calib-u2j")), reads["u2j"])
    ref = max_fusion.summary(reads, ("linear",), cfg, linear)
    t = ref["threshold"]
    kinds = {k: [(p, q) for _, p, q in c["none"]] for part in (calib, u2j) for k, c in part.items()}
    t_low, rates = thresholds(kinds, t, args.max_quality)
    print(f"v49's threshold T {t:.4f}; T_low {t_low:.4f} (JPEG files of quality <= {args.max_quality})")
    print("low-quality JPEG share and, at T_low, flagged: " + "; ".join(
        f"{k} {sum(low(q, args.max_quality) for _, q in v) / len(v):.0%}"
        + (f" ({rates[k]:.1%})" if k in rates else "") for k, v in kinds.items()))
    res = {}
    for cond in ("none", "jpeg:90"):
        for name, (tt, tl) in (("v49", (t, t)), ("C60", (t, t_low))):
            tprs = [flagged(c[cond], 1, tt, tl, args.max_quality) for c in fit.values()]
            fprs = [flagged(c[cond], 0, tt, tl, args.max_quality) for c in fit.values()]
            res[(name, cond)] = sum(tprs) / len(tprs)
            print(f"{name} {cond:8s} TPR " + " ".join(f"{v:.1%}" for v in tprs) + f"; mean {res[(name, cond)]:.1%}"
                  + "; reals flagged " + " ".join(f"{v:.1%}" for v in fprs))
    u2j_rows = [(p, q) for c in u2j.values() for _, p, q in c["none"]]
    u2j_v49 = sum(p >= t for p, _ in u2j_rows) / len(u2j_rows)
    u2j_c60 = sum(p >= (t_low if low(q, args.max_quality) else t) for p, q in u2j_rows) / len(u2j_rows)
    print(f"calib-u2j flagged: v49 {u2j_v49:.1%}, C60 {u2j_c60:.1%}")
    ok = eligible(res[("v49", "none")], res[("C60", "none")], u2j_c60)
    print("rule v54: " + ("C60 is eligible: stage 2" if ok else "C60 is not eligible: it fails at stage 1"))
    (args.work / "c60.json").write_text(json.dumps(
        {"t": t, "t_low": t_low, "rates": rates, "tpr": {f"{k[0]} {k[1]}": v for k, v in res.items()},
         "u2j": {"v49": u2j_v49, "c60": u2j_c60}, "eligible": ok}, indent=1))


if __name__ == "__main__":
    main()
