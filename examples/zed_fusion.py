#!/usr/bin/env python3
"""C59's first stage (rule ``docs/selection-rule-v53.txt``): the real-only coding-surprisal member as v49's third.

    python examples/train_twins.py --work runs/twins --stage zed   # fits WORK/zed.safetensors (about 12 min)
    python examples/zed_fusion.py --work runs/twins                # about 10 min (tile logits kept in WORK/c59)

Reads every tile of the fusion's fit sets (``heldout/fit``: autogan1 and progan; ``fit-translate``; ``twins-seen``),
clean and as JPEG 90 copies made in memory, and of the calibration reals (``heldout/calib``, ``calib-frac``;
``calib-u2j``, the calibration half of the reals enlarged 2x and then saved as JPEG 75, as a check), through
``ganscan-fusion-v49``'s reads, keeping its two members' logits and ``zed64``'s on the same tiles. Then prints, each
with v49's reads and pooling: zed64 alone (its 8 fit AUCs); v49 from the same tile logits (the reference); and C59,
each tile read as ``w_s s + w_t t + w_z clip(z, +-8) + b`` with the weights fitted by ``fusion.fit_logistic`` on the
clean fit files' mean native tile logits (as ``ganscan models fuse`` fits them; the same fit of the two members alone
is printed beside v49's weights as a check), the threshold by v49's rule (5 % FPR on every kind of calib and
calib-frac), the mean clean fit TPR there, the share of calib-u2j flagged, zed64's median file logits per set and
kind, and the rule's decision. Nothing under ``val/`` is read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import max_fusion  # noqa: E402  (fusions of kept tile logits, the rule's summary)
import tile_pool  # noqa: E402  (tile logits of every read)
import two_scale  # noqa: E402  (the sets)

CLIP = 8.0          # the third member's logit is clipped to +-CLIP, as fsd64's is in fusion-spectrum-npr-fsd
U2J_LIMIT = 0.10    # calib-u2j flagged, first way to eligibility
JPEG_GAIN = 0.02    # mean JPEG-90 fit AUC over v49's, second way (with calib-u2j no higher than v49's)


def fit_weights(fit_reads: dict, members: int, clip: float = CLIP) -> tuple[list[float], float]:
    """Logistic weights on the clean fit files' mean native tile logits of the first ``members`` members (each
    clipped to +-clip beyond the first two)."""
    import torch

    from ganscan.detectors.zoo.fusion import fit_logistic

    x, y = [], []
    for conds in fit_reads.values():
        for label, native, _, _ in conds["none"]:
            m = [sum(t[k] for t in native) / len(native) for k in range(members)]
            x.append(m[:2] + [min(max(v, -clip), clip) for v in m[2:]])
            y.append(label)
    w, b = fit_logistic(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    return [float(v) for v in w], float(b)


def eligible(ref: dict, cand: dict) -> bool:
    """Rule v53: no fit AUC 0.005 below v49's, TPR at most 2 points below, and calib-u2j at most 10 % flagged or no
    more than v49's with the mean JPEG-90 fit AUC at least 0.02 above v49's."""
    a = cand["auc"]["none"] + cand["auc"]["jpeg:90"]
    r = ref["auc"]["none"] + ref["auc"]["jpeg:90"]
    if any(x < y - 0.005 for x, y in zip(a, r)) or cand["tpr"] < ref["tpr"] - 0.02:
        return False
    n = len(ref["auc"]["jpeg:90"])
    jpeg = sum(cand["auc"]["jpeg:90"]) / n >= sum(ref["auc"]["jpeg:90"]) / n + JPEG_GAIN - 1e-12
    return cand["u2j"] <= U2J_LIMIT or (cand["u2j"] <= ref["u2j"] and jpeg)


def medians(reads: dict, member: int = 2) -> list[str]:
    """One line per fit set and condition (reals, fakes) and per calibration kind (reals): the median over files of
    the member's mean native tile logit."""
    import statistics

    def med(rows, label):
        v = [sum(t[member] for t in native) / len(native) for y, native, _, _ in rows if y == label]
        return f"{statistics.median(v):+.2f}" if v else "n/a"

    out = [f"{s} {c}: {med(rows, 0)} / {med(rows, 1)}" for s, conds in reads["fit"].items() for c, rows in conds.items()]
    out += [f"{s}: {med(conds['none'], 0)}" for part in ("calib", "u2j") for s, conds in reads[part].items()]
    return out


def main() -> None:
    import torch

    from ganscan.data.datasets import test_sets
    from ganscan.detectors.load import load_detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("--model", default="ganscan-fusion-v49", help="the linear fusion whose members and reads are used")
    ap.add_argument("--zed", default=None, help="the zed64 member (default WORK/zed.safetensors)")
    args = ap.parse_args()
    held = two_scale.heldout(args.work)
    zed_path = args.zed or str(args.work / "zed.safetensors")
    for need in (held / "calib-u2j", Path(zed_path)):
        if not need.exists():
            sys.exit(f"error: {need} does not exist (python examples/train_twins.py --stage heldout / --stage zed)")
    det = load_detector(args.model)
    cfg = det.config
    linear = (tuple(float(v) for v in det.model.weight), float(det.model.bias))
    zed = load_detector(zed_path)
    zed.model.eval()
    to01 = (torch.tensor(cfg.std).view(1, 3, 1, 1), torch.tensor(cfg.mean).view(1, 3, 1, 1))
    zn = (torch.tensor(zed.config.mean).view(1, 3, 1, 1), torch.tensor(zed.config.std).view(1, 3, 1, 1))

    def extra(x):   # the same tiles, normalised for v49, normalised for zed64
        return zed.model((x.float() * to01[0] + to01[1] - zn[0]) / zn[1])

    def make():
        def read(sets, conds):
            return tile_pool.tile_logits(args.model, sets, conditions=conds, members=True, extra=extra)[0]
        return {"model": args.model, "zed": zed.sha256, "fit": read(two_scale.fit_sets(held), ("none", "jpeg:90")),
                "calib": read(two_scale.calib_sets(held), ("none",)),
                "u2j": read(test_sets(str(held / "calib-u2j")), ("none",))}

    reads = two_scale.cached(args.work / "c59" / "tiles.json", make)
    if reads.get("model") != args.model or reads.get("zed") != zed.sha256:
        sys.exit("error: the cached tiles are another model's (remove WORK/c59/tiles.json)")
    names = list(reads["fit"])
    ref = max_fusion.summary(reads, ("linear",), cfg, linear)
    alone = max_fusion.summary(reads, ("weights", (0.0, 0.0, 1.0), 0.0, math.inf), cfg, linear)
    w2, b2 = fit_weights(reads["fit"], 2)
    w3, b3 = fit_weights(reads["fit"], 3)
    c59 = max_fusion.summary(reads, ("weights", tuple(w3), b3, CLIP), cfg, linear)
    print(f"v49's weights (s, t; b): {linear[0][0]:.3f} {linear[0][1]:.3f}; {linear[1]:.3f}; the same fit here: "
          f"{w2[0]:.3f} {w2[1]:.3f}; {b2:.3f}")
    print(f"C59's weights (s, t, z; b): {w3[0]:.3f} {w3[1]:.3f} {w3[2]:.3f}; {b3:.3f}")
    print("model       clean AUC: " + " ".join(names) + "; JPEG 90 the same; mean of 8; threshold; fit TPR; calib-u2j")
    for name, m in (("zed64", alone), ("v49", ref), ("C59", c59)):
        a, j = m["auc"]["none"], m["auc"]["jpeg:90"]
        print(f"{name:11s} " + " ".join(f"{v:.4f}" for v in a) + "; " + " ".join(f"{v:.4f}" for v in j)
              + f"; {(sum(a) + sum(j)) / 8:.4f}; {m['threshold']:.3f}; {100 * m['tpr']:.1f} %; {100 * m['u2j']:.1f} %")
    print("as JPEG 90 copies, at the threshold: fit reals flagged, " + " ".join(names) + "; mean fit TPR")
    for name, m in (("v49", ref), ("C59", c59)):
        print(f"{name:11s} " + " ".join(f"{100 * v:.1f} %" for v in m["fpr_jpeg90"].values())
              + f"; {100 * m['tpr_jpeg90']:.1f} %")
    print("zed64's median file logit (mean of its native tiles): real / fake of each fit set; reals of each "
          "calibration kind")
    for line in medians(reads):
        print("  " + line)
    ok = eligible(ref, c59)
    print("rule v53: " + ("C59 is eligible: stage 2" if ok else "C59 is not eligible: it fails at stage 1"))
    (args.work / "c59" / "summary.json").write_text(json.dumps(
        {"v49": ref, "zed64": alone, "c59": c59, "weights": {"c59": [w3, b3], "two_members": [w2, b2]},
         "eligible": ok}, indent=1))


if __name__ == "__main__":
    main()
