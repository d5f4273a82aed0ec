#!/usr/bin/env python3
"""The tile stride of C48 (rule ``docs/selection-rule-v42.txt``), chosen on the fusion's fit sets and calibration reals.

    python examples/overlap_tiles.py --work runs/twins        # about 15 min from nothing (reads kept in WORK/c48)
    python examples/overlap_tiles.py --work runs/twins --jpeg-only   # C49 (rule v43), from the same reads

A tiles detector averages the logits of up to ``max_tiles`` non-overlapping tiles; an image of 128 px gives a 64 px
tile detector 4 of them. With ``tile_stride`` S, a read whose non-overlapping grid holds fewer tiles than its cap
takes them from the grid at stride S instead (overlapping; ``examples/retile.py --tile-stride``). This scores, for
each stride, every image of the fusion's fit sets (``heldout/fit``: autogan1 and progan; ``heldout/fit-translate``;
``heldout/twins-seen``) clean and as a JPEG 90 copy (made in memory, as ``ganscan evaluate --perturb jpeg:90``), and
the calibration reals (``heldout/calib``, ``heldout/calib-frac``) clean, through the scan pipeline's preprocessing and
``forward_logits`` (the model's own two-scale read included), and prints each stride's AUCs, threshold (the fusion's
rule: 5 % FPR on every calibration kind) and mean clean fit TPR there. Rule v42: eligible if no clean fit AUC is more
than 0.005 below the no-overlap one's and the TPR at least its less 2 points; chosen: the highest mean JPEG-90 fit
AUC (ties: the larger stride), if above the no-overlap one's. ``--jpeg-only`` (rule v43, C49): each file takes the
overlapping read only if it is a JPEG (every JPEG-90 copy; the JPEG files among the clean sets), v40's otherwise, and
no clean or JPEG-90 fit AUC may then fall more than 0.005. Nothing under ``val/`` is read.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import two_scale  # noqa: E402  (the reads, the perturbations and the cache it keeps)

CONDITIONS = ("none", "jpeg:90")


def read_logits(model: str, stride: int, sets: list, conditions=CONDITIONS, progress=print) -> dict:
    """{set: {condition: [[label, logit], ...]}}: ``model`` scored with ``tile_stride`` = ``stride``."""
    from ganscan.core.device import choose_precision, configure_threads, resolve_device
    from ganscan.detectors.inference import forward_logits, prepare_model
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.preprocess import normalize, views_uint8

    configure_threads()
    det = load_detector(model)
    cfg = det.config.with_preprocessing({**det.config.preprocessing(), "tile_stride": stride})
    prec = choose_precision(resolve_device("auto"), "auto")
    net = prepare_model(det.model, prec)

    def score(batch):
        logits = forward_logits(net, [t for _, t, _ in batch], prec, jpeg=[j for _, _, j in batch],
                                half_margin=cfg.half_margin, half_lossless=cfg.half_lossless,
                                half_jpeg_margin=cfg.jpeg_margin, pool=cfg.tile_pool,
                                pool_jpeg_only=cfg.pool_jpeg_only)
        return [[y, v] for (y, _, _), v in zip(batch, logits)]

    return two_scale.scored_sets(sets, conditions, lambda img, jpg: normalize(views_uint8(img, cfg, jpeg=jpg), cfg),
                                    score, progress, tag=f"stride {stride}: ")


def file_headers(sets: list) -> dict:
    """{set name: [(format, smaller side) of each file, from its header]}, in the order ``read_logits`` reads them."""
    from PIL import Image

    out = {}
    for s in sets:
        heads = []
        for p in s.paths:
            with Image.open(p) as im:
                heads.append((im.format, min(im.size)))
        out[s.name] = heads
    return out


def jpeg_flags(sets: list) -> dict:
    """{set name: [whether each file is a JPEG]}, in the order ``read_logits`` reads them."""
    return {name: [fmt == "JPEG" for fmt, _ in heads] for name, heads in file_headers(sets).items()}


def mixed(plain: dict, over: dict, flags: dict) -> dict:
    """Reads where a JPEG file takes ``over``'s logit and any other file ``plain``'s (a JPEG-90 copy is a JPEG)."""
    out = {}
    for name, conds in plain.items():
        out[name] = {}
        for c, rows in conds.items():
            is_jpeg = [True] * len(rows) if c.startswith("jpeg") else flags[name]
            if len(is_jpeg) != len(rows) or len(over[name][c]) != len(rows):
                raise SystemExit(f"error: the reads of {name} {c} do not match its files (remove WORK/c48 and rerun)")
            out[name][c] = [o if j else p for p, o, j in zip(rows, over[name][c], is_jpeg)]
    return out


def summary(fit: dict, calib: dict) -> dict:
    """{"auc": {condition: [AUC per fit set]}, "threshold": t, "tpr": mean clean fit TPR at t}."""
    from ganscan.detectors.metrics import roc_auc
    from ganscan.detectors.zoo.fusion import threshold_at_fpr

    def sig(v):
        return 1.0 / (1.0 + math.exp(-v))

    auc = {c: [roc_auc([r[0] for r in fit[s][c]], [r[1] for r in fit[s][c]]) for s in fit] for c in CONDITIONS}
    t, _ = threshold_at_fpr({k: [sig(r[1]) for r in c["none"]] for k, c in calib.items()}, 0.05)
    tprs = []
    for s in fit:
        fakes = [r[1] for r in fit[s]["none"] if r[0] == 1]
        tprs.append(sum(sig(v) >= t for v in fakes) / len(fakes))
    return {"auc": auc, "threshold": t, "tpr": sum(tprs) / len(tprs)}


def choose(summaries: dict, jpeg_only: bool = False) -> int | None:
    """Rule v42 on {stride: summary} (0: no overlap); the chosen stride, or None. ``jpeg_only`` (rule v43): the
    JPEG-90 AUCs may not fall more than 0.005 either."""
    base = summaries[0]
    best, best_key = None, None
    for s, m in summaries.items():
        if s == 0:
            continue
        if any(a < b - 0.005 for a, b in zip(m["auc"]["none"], base["auc"]["none"])):
            continue
        if jpeg_only and any(a < b - 0.005 for a, b in zip(m["auc"]["jpeg:90"], base["auc"]["jpeg:90"])):
            continue
        if m["tpr"] < base["tpr"] - 0.02:
            continue
        key = (sum(m["auc"]["jpeg:90"]) / len(m["auc"]["jpeg:90"]), s)
        if best_key is None or key > best_key:
            best, best_key = s, key
    if best is None or best_key[0] <= sum(base["auc"]["jpeg:90"]) / len(base["auc"]["jpeg:90"]):
        return None
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("--model", default="ganscan-fusion-v40")
    ap.add_argument("--strides", default="32,16")
    ap.add_argument("--jpeg-only", action="store_true", help="the overlapping read for JPEG files only (rule v43)")
    args = ap.parse_args()
    strides = [int(v) for v in args.strides.split(",") if v.strip()]
    if not strides or min(strides) < 1:
        sys.exit("error: --strides must list strides >= 1")
    held = two_scale.heldout(args.work)
    fit_sets, calib_sets = two_scale.fit_sets(held), two_scale.calib_sets(held)
    summaries, reads = {}, {}
    flags = {**jpeg_flags(fit_sets), **jpeg_flags(calib_sets)} if args.jpeg_only else {}
    for s in [0, *strides]:
        fit = two_scale.cached(args.work / "c48" / f"fit-{s}.json", lambda s=s: read_logits(args.model, s, fit_sets))
        calib = two_scale.cached(args.work / "c48" / f"calib-{s}.json",
                          lambda s=s: read_logits(args.model, s, calib_sets, ("none",)))
        reads[s] = fit, calib
        if args.jpeg_only and s:
            fit, calib = mixed(reads[0][0], fit, flags), mixed(reads[0][1], calib, flags)
        summaries[s] = summary(fit, calib)
    names = list(fit)
    print("| stride | " + " | ".join(f"{n} {c}" for c in CONDITIONS for n in names)
          + " | mean clean | mean JPEG 90 | threshold | mean clean fit TPR |")
    print("|---|" + "---|" * (2 * len(names) + 4))
    for s, m in summaries.items():
        a = m["auc"]
        print(f"| {s or 'none (v40)'} | " + " | ".join(f"{v:.4f}" for c in CONDITIONS for v in a[c])
              + f" | {sum(a['none']) / len(names):.4f} | {sum(a['jpeg:90']) / len(names):.4f} | "
              f"{m['threshold']:.3f} | {100 * m['tpr']:.1f} % |")
    best = choose(summaries, args.jpeg_only)
    print("\nchosen: " + ("nothing (no eligible stride beats v40's JPEG-90 mean)" if best is None
                          else f"--tile-stride {best}" + (" --stride-jpeg-only" if args.jpeg_only else "")))


if __name__ == "__main__":
    main()
