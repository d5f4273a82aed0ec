#!/usr/bin/env python3
"""The detector table of the twins issue: every set, for each model, in one run.

    python examples/twins_table.py --models ganscan-spectrum-v1 runs/twins/run/best.safetensors \\
        --work runs/twins --data ../shared/data -o runs/twins/table.json

For each model and each set with fakes: AUC, AP, TPR at the model's threshold and at 5 % FPR (on the
set's own reals); for each real-only set: the false-positive rate at the model's threshold (a JPEG file of low quality
at the model's ``threshold_low_jpeg``, where it has one: ``ganscan models calibrate --low-jpeg-quality``). The sets
with fakes are scored again under JPEG 90 and 0.5x resize (AUC). ``val/`` is read here only, as the
final check. Writes JSON and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

FAKE_SETS = {"own": ["twins-shuffle", "twins-seen", "report/autogan1", "report/progan"]}
SMALL_SETS = ["twins-small"]   # under the 64 px tile: a group of their own ("small/"), when the folder exists
# our own image-translation generators (examples/translation_family.py), when the folders exist: "translate/"
TRANSLATE_SETS = ["report/translate-seen", "report/translate-unet", "report/translate-gan"]
LONG_SETS = ["report/long-seen", "report/long-unet"]   # the same, trained longer (train_twins.py's long stage): "long/"
# 512 px twins of the held-out translation banks (docs/selection-rule-v8.txt): images larger than 16 tiles, "large/"
LARGE_SETS = ["large-seen", "large-unet", "large-gan"]
HELD_GROUPS = {"small": SMALL_SETS, "translate": TRANSLATE_SETS, "long": LONG_SETS,
               "large": LARGE_SETS}   # group: sets, when they exist
REAL_SETS = ["small-real", "full/camera", "report/camera", "full/lossless", "full/web", "report/unchanged", "report/upscaled2x",
             "report/upscaled-frac", "report/upscaled2x-jpeg75",
             "report/downscaled0.5", "report/jpeg75"]


def tpr_at_fpr(y, s, fpr=0.05):
    """Share of fakes caught at the lowest threshold that flags at most ``fpr`` of the set's reals."""
    from ganscan.detectors.zoo.fusion import threshold_at_fpr

    if not (y == 0).any() or not (y == 1).any():
        return None
    t, _ = threshold_at_fpr({"real": s[y == 0].tolist()}, fpr)
    return float((s[y == 1] >= t).mean())


def held_sets(held: Path, groups: tuple[str, ...] = ("own", *HELD_GROUPS)) -> list:
    """The table's fake sets under ``held`` (WORK/heldout), each named GROUP/SET: our own sets (which must exist), then
    those of each other group whose folders exist."""
    from ganscan.data.datasets import test_sets

    out = []
    for group in groups:
        own = group == "own"
        for n in FAKE_SETS["own"] if own else HELD_GROUPS[group]:
            if own or (held / n).is_dir():
                for s in test_sets(str(held / n)):
                    s.name = f"own/{n}" if own else f"{group}/{n.split('/')[-1]}"
                    out.append(s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--work", default="runs/twins")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--perturb", default="jpeg:90,resize:0.5")
    ap.add_argument("--no-val", action="store_true", help="leave val/ out (own sets only)")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    from ganscan.core.device import default_workers
    from ganscan.data.augment import parse_perturbations
    from ganscan.data.datasets import test_sets
    from ganscan.detectors.load import load_detector
    from ganscan.core.device import choose_precision, configure_threads, resolve_device
    from ganscan.detectors.evaluate import EvalSettings, evaluate

    held, data = Path(args.work) / "heldout", Path(args.data)
    fake_sets = held_sets(held)
    if not args.no_val:
        for s in test_sets(str(data / "val")):
            s.name = f"val/{s.name}"
            fake_sets.append(s)
    real_sets = []
    for n in REAL_SETS:
        if not (held / n).is_dir():
            continue
        for s in test_sets(str(held / n)):
            s.name = n
            real_sets.append(s)
    configure_threads()
    prec = choose_precision(resolve_device("auto"), "auto")
    settings = EvalSettings(workers=default_workers())
    perturbations = parse_perturbations(args.perturb)
    out = {}
    for model in args.models:
        t0 = time.time()
        det = load_detector(model)
        res = evaluate(det, fake_sets, prec, settings, perturbations)
        rows = {}
        for r in res.sets:   # evaluate's row is at each file's threshold (a low-quality JPEG's own, where it has one)
            y, s, _ = r.scored()
            rows[r.name] = {"n_real": r.row["n_real"], "n_fake": r.row["n_fake"], "auc": r.row["auc"],
                            "ap": r.row["ap"], "tpr_at_threshold": r.row["fake_acc"], "tpr_at_5fpr": tpr_at_fpr(y, s),
                            "fpr_at_threshold": 1.0 - r.row["real_acc"]}
        for p in res.perturbations:
            for prow, r in zip(p["rows"], res.sets):
                rows[r.name][f"auc_{p['perturbation']}"] = prow.get("auc")
                rows[r.name][f"tpr_{p['perturbation']}"] = prow.get("fake_acc")   # TPR at the threshold
        rr = evaluate(det, real_sets, prec, settings, perturbations)
        for r in rr.sets:
            rows[r.name] = {"n_real": r.row["n_real"], "fpr_at_threshold": 1.0 - r.row["real_acc"]}
        for p in rr.perturbations:   # the real photos perturbed alike: their FPR at the threshold
            for prow, r in zip(p["rows"], rr.sets):
                ok = prow.get("real_acc")
                rows[r.name][f"fpr_{p['perturbation']}"] = None if ok is None else 1.0 - ok
        key = det.label if det.label not in out else f"{det.label} ({model})"   # two files of one name
        out[key] = {"model": model, "threshold": res.threshold, "sha256": det.sha256, "sets": rows,
                    "seconds": round(time.time() - t0, 1), **({"threshold_low_jpeg": det.low_jpeg} if det.low_jpeg else {})}
        print(f"{key}: {time.time() - t0:.0f} s", flush=True)
    Path(args.output).write_text(json.dumps(out, indent=1))
    print(markdown(out, [p for p in args.perturb.split(",") if p]))


def markdown(out: dict, perturb: list[str]) -> str:
    """One Markdown table per model: for each perturbation in ``perturb`` (in that order) an AUC column, and a column
    "at threshold": TPR for the sets with fakes, FPR for the real-only ones. A mean over a group counts only the
    sets that have the value, and reads n/a where none has."""
    def f(v, pct=False):
        if v is None:
            return "n/a"
        return f"{100 * v:.0f} %" if pct else f"{v:.3f}"

    def mean_of(rows, key):
        vals = [x[key] for x in rows if x.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    pcols = [f"auc_{p}" for p in perturb]
    tcols = [f"tpr_{p}" for p in perturb]
    lines = []
    for label, m in out.items():
        low = m.get("threshold_low_jpeg")
        lines += [f"**{label}** (threshold {m['threshold']:.3f}"
                  + (f"; JPEG quality <= {low['max_quality']}: {low['threshold']:.3f}" if low else "") + ")", "",
                  "| set | real / fake | AUC | AP | TPR at threshold | TPR at 5 % FPR | FPR | "
                  + "".join(f"AUC {p} | " for p in perturb) + "".join(f"at threshold, {p} | " for p in perturb).rstrip(),
                  "|---|---|---|---|---|---|---|" + "---|" * (2 * len(perturb))]
        fakes = {k: v for k, v in m["sets"].items() if "auc" in v}
        for name, r in fakes.items():
            lines.append(f"| {name} | {r['n_real']} / {r['n_fake']} | {f(r['auc'])} | {f(r['ap'])} | "
                         f"{f(r['tpr_at_threshold'], True)} | {f(r['tpr_at_5fpr'], True)} | {f(r['fpr_at_threshold'], True)} | "
                         + "".join(f"{f(r.get(c))} | " for c in pcols)
                         + "".join(f"TPR {f(r.get(c), True)} | " for c in tcols).rstrip())
        for group in ("val/", "own/", *(f"{g}/" for g in HELD_GROUPS)):
            g = [v for k, v in fakes.items() if k.startswith(group)]
            if g:
                mean = {k: mean_of(g, k) for k in ("auc", "ap", "tpr_at_threshold", "tpr_at_5fpr", *pcols, *tcols)}
                lines.append(f"| **mean {group[:-1]}** | | **{f(mean['auc'])}** | {f(mean['ap'])} | "
                             f"{f(mean['tpr_at_threshold'], True)} | {f(mean['tpr_at_5fpr'], True)} | | "
                             + "".join(f"{f(mean[c])} | " for c in pcols)
                             + "".join(f"TPR {f(mean[c], True)} | " for c in tcols).rstrip())
        for name, r in m["sets"].items():
            if "auc" not in r:
                lines.append(f"| {name} (real only) | {r['n_real']} / 0 | | | | | {f(r['fpr_at_threshold'], True)} | "
                             + "| " * len(perturb)
                             + "".join(f"FPR {f(r.get(f'fpr_{p}'), True)} | " for p in perturb).rstrip())
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
