#!/usr/bin/env python3
"""The tile pooling of C53 (rule ``docs/selection-rule-v47.txt``), chosen on the fusion's fit sets and calibration reals.

    python examples/tile_pool.py --work runs/twins      # about 10 min from nothing (tile logits kept in WORK/c53)
    python examples/tile_pool.py --work runs/twins --jpeg-only   # C54 (rule v48), from the same tile logits

A tiles detector scores an image by pooling its tiles' logits, read by read (the native read; with ``half_tiles`` the
half-size read too, the image's logit then the larger of the two less the margin). Every detector so far pooled by the
mean. This reads every image of the fusion's fit sets (``heldout/fit``: autogan1 and progan; ``heldout/fit-translate``;
``heldout/twins-seen``) clean and as a JPEG 90 copy (made in memory, as ``ganscan evaluate --perturb jpeg:90``), and
the calibration reals (``heldout/calib``, ``heldout/calib-frac``) clean, through the scan pipeline's preprocessing of
``--model`` (default: ``ganscan-fusion-v43``), keeps every tile's logit, checks that their mean reproduces
``forward_logits``, and prints for each pooling of ``ganscan.detectors.preprocess.TILE_POOLS`` the fit AUCs, the
threshold (the fusion's rule: 5 % FPR on every calibration kind) and the mean clean fit TPR there. Rule v47: eligible
if none of the 8 clean and JPEG-90 fit AUCs is more than 0.005 below the mean pooling's and the TPR is at least its
less 2 points; chosen: the highest mean of the 8 AUCs (ties: the order of ``TILE_POOLS``), if above the mean
pooling's. ``--jpeg-only`` (rule v48, C54): each file is pooled by the pooling if it is a JPEG (every JPEG-90 copy; the
JPEG files among the clean sets) and by the mean otherwise, under the same rule. Nothing under ``val/`` is read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overlap_tiles  # noqa: E402  (the rule's summary: AUCs, threshold, TPR)
import two_scale  # noqa: E402  (the sets, the perturbations, the read loop)

CHECK_EVERY = 4   # every 4th batch is also scored by forward_logits, which the pooled mean must reproduce


def tile_logits(model: str, sets: list, conditions=overlap_tiles.CONDITIONS, progress=print,
                members: bool = False, extra=None) -> tuple[dict, float]:
    """({set: {condition: [[label, native tile logits, half-size tile logits or None, is a JPEG], ...]}}, the largest
    difference between a checked image's mean-pooled logit and ``forward_logits``'s). ``members`` (a fusion): each
    tile's logit is the list of its members' logits (``member_logits``), and nothing is checked (0.0). ``extra`` (with
    ``members``): a function of the same normalised tiles, (N,...) -> (N,) logits, appended to each tile's list."""
    import torch

    from ganscan.core.device import choose_precision, configure_threads, resolve_device
    from ganscan.detectors.inference import forward_logits, prepare_model
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.preprocess import ScaleViews, normalize, views_uint8

    configure_threads()
    det = load_detector(model)
    cfg = det.config
    prec = choose_precision(resolve_device("auto"), "auto")
    net = prepare_model(det.model, prec)
    head = net.member_logits if members else net
    worst = [0.0]
    seen = [0]

    def reads_of(views, jpg):
        if not isinstance(views, ScaleViews):
            return views, None
        two = views.half.shape[0] and not (cfg.half_lossless and jpg and cfg.jpeg_margin is None)
        return views.native, (views.half if two else None)

    @torch.inference_mode()
    def score(batch):
        parts = [reads_of(v, jpg) for _, v, jpg in batch]
        tiles = [t for n, h in parts for t in ((n,) if h is None else (n, h))]
        x = torch.cat(tiles).to(prec.device)
        if prec.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = []
        for start in range(0, x.shape[0], 256):
            with prec.autocast():
                y = head(x[start:start + 256]).float().cpu()
            if extra is not None:
                y = torch.cat([y, extra(x[start:start + 256]).float().cpu().reshape(-1, 1)], 1)
            out.append(y if members else y.reshape(-1))
        flat = iter(torch.split(torch.cat(out), [t.shape[0] for t in tiles]))
        rows = []
        for (y, _, jpg), (n, h) in zip(batch, parts):
            native = next(flat).tolist()
            half = None if h is None else next(flat).tolist()
            rows.append([y, native, half, jpg])
        seen[0] += 1
        if not members and seen[0] % CHECK_EVERY == 1:
            ref = forward_logits(net, [v for _, v, _ in batch], prec, jpeg=[j for _, _, j in batch],
                                 half_margin=cfg.half_margin, half_lossless=cfg.half_lossless,
                                 half_jpeg_margin=cfg.jpeg_margin)
            for r, v in zip(rows, ref):
                worst[0] = max(worst[0], abs(pooled(r, "mean", cfg.half_margin) - v))
        return rows

    reads = two_scale.scored_sets(sets, conditions, lambda img, jpg: normalize(views_uint8(img, cfg, jpeg=jpg), cfg),
                                  score, progress)
    return reads, worst[0]


def pooled(row, pool: str, margin: float, jpeg_only: bool = False) -> float:
    """An image's logit from its kept tile logits: ``pool`` over each read, the half-size read less ``margin``
    (``jpeg_only``: a file that is not a JPEG pooled by the mean)."""
    import torch

    from ganscan.detectors.preprocess import pool_logits

    _, native, half, is_jpeg = row
    if jpeg_only and not is_jpeg:
        pool = "mean"
    v = float(pool_logits(torch.tensor(native, dtype=torch.float64), pool))
    if half:
        v = max(v, float(pool_logits(torch.tensor(half, dtype=torch.float64), pool)) - margin)
    return v


def as_rows_p(reads: dict, pool: str, margin: float, jpeg_only: bool = False) -> dict:
    """{set: {condition: [[label, pooled logit], ...]}}."""
    return {s: {c: [[r[0], pooled(r, pool, margin, jpeg_only)] for r in rows] for c, rows in conds.items()}
            for s, conds in reads.items()}


def choose(summ: dict) -> str | None:
    """Rule v47 on {pool: summary} (``mean`` is v43's); the chosen pooling, or None."""
    base = summ["mean"]

    def all8(m):
        return m["auc"]["none"] + m["auc"]["jpeg:90"]

    best, best_key = None, None
    for i, (p, m) in enumerate(summ.items()):
        if p == "mean":
            continue
        if any(a < b - 0.005 for a, b in zip(all8(m), all8(base))):
            continue
        if m["tpr"] < base["tpr"] - 0.02:
            continue
        key = (sum(all8(m)) / 8, -i)
        if best_key is None or key > best_key:
            best, best_key = p, key
    if best is None or best_key[0] <= sum(all8(base)) / 8:
        return None
    return best


def main() -> None:
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.preprocess import TILE_POOLS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("--model", default="ganscan-fusion-v43")
    ap.add_argument("--jpeg-only", action="store_true",
                    help="rule v48 (C54): JPEG files pooled by each pooling, the others by the mean")
    args = ap.parse_args()
    held = two_scale.heldout(args.work)
    margin = load_detector(args.model).config.half_margin
    cache = args.work / "c53" / "tiles.json"

    def make():
        fit, d1 = tile_logits(args.model, two_scale.fit_sets(held))
        calib, d2 = tile_logits(args.model, two_scale.calib_sets(held), conditions=("none",))
        return {"model": args.model, "fit": fit, "calib": calib, "check": max(d1, d2)}

    reads = two_scale.cached(cache, make)
    if reads.get("model") != args.model:
        raise SystemExit(f"error: {cache} holds {reads.get('model')}'s tiles, not {args.model}'s (remove it and rerun)")
    print(f"mean pooling against forward_logits: largest difference {reads['check']:.2g} (checked images)")
    j = args.jpeg_only
    summ = {p: overlap_tiles.summary(as_rows_p(reads["fit"], p, margin, j), as_rows_p(reads["calib"], p, margin, j))
            for p in TILE_POOLS}
    names = list(reads["fit"])
    print("pool     clean AUC: " + " ".join(names) + "; JPEG 90 the same; means; threshold; fit TPR")
    for p, m in summ.items():
        a, j = m["auc"]["none"], m["auc"]["jpeg:90"]
        print(f"{p:8s} " + " ".join(f"{v:.4f}" for v in a) + "; " + " ".join(f"{v:.4f}" for v in j)
              + f"; {sum(a) / len(a):.4f}, {sum(j) / len(j):.4f} (all 8: {(sum(a) + sum(j)) / 8:.4f})"
              + f"; {m['threshold']:.3f}; {100 * m['tpr']:.1f} %")
    choice = choose(summ)
    rule, cand = ("v48", "C54") if j else ("v47", "C53")
    print(f"rule {rule}: {'chosen: ' + choice if choice else f'no pooling is eligible and better: {cand} fails'}")
    out = args.work / "c53" / ("summary-jpeg-only.json" if j else "summary.json")
    out.write_text(json.dumps({"summaries": summ, "choice": choice}, indent=1))


if __name__ == "__main__":
    main()
