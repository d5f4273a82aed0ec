#!/usr/bin/env python3
"""Copy a trained detector run into weights/ with its model card, and make it the default.

    python examples/ship_detector.py runs/default/run-npr-gan+ae1 --name ganscan-npr-v1 \\
        --compare runs/default/run-*        # the card keeps the table of every compared run

The card holds: data, recipe, the exact commands (from the run), training time, the format check, the
evaluations written by examples/train_default.py (unseen generators, own held-out fakes, camera photos,
JPEG 90 and 0.5x resize), the comparison table, sha256 and size. The placeholder loses ``default``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detector_table import summary  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _headline(evals: dict) -> dict:
    """The scalar numbers `ganscan models` shows: mean AP / AUC / accuracy on val/, own held-out AP,
    the AP drop under JPEG 90 and 0.5x resize."""
    out = {}
    val = evals.get("val")
    if val:
        out.update(val_mean_ap=val["mean"]["ap"], val_mean_auc=val["mean"]["auc"], val_mean_acc=val["mean"]["accuracy"])
        for p in val.get("perturbations", []):
            key = p["perturbation"].replace(":", "").replace(".", "")
            out[f"val_ap_drop_{key}"] = val["mean"]["ap"] - p["mean"]["ap"]
    if evals.get("heldout"):
        out["heldout_mean_ap"] = evals["heldout"]["mean"]["ap"]
    return {k: round(v, 6) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="run folder with best.safetensors and eval-*.json")
    ap.add_argument("--name", required=True)
    ap.add_argument("--compare", nargs="*", default=[], help="other run folders for the card's table")
    ap.add_argument("--description", default="")
    ap.add_argument("--extra", default=None, help="JSON file merged into the card")
    ap.add_argument("--no-default", action="store_true")
    args = ap.parse_args()
    from ganscan.core.checkpoint import load_checkpoint, save_checkpoint, sha256_file

    run = Path(args.run)
    src = run / "best.safetensors"
    state, meta = load_checkpoint(src, verify=False)
    dst = ROOT / "weights" / f"{args.name}.safetensors"
    # same tensors; the metadata names the shipped model (scan reports and tables show this name)
    meta = {**meta, "name": args.name, "trained_as": meta.get("name")}
    data = (meta.get("training") or {}).get("data") or {}
    for key, paths in data.items():   # folders relative to the repository, as the README's commands give them
        data[key] = [str(Path(q).relative_to(ROOT)) if Path(q).is_relative_to(ROOT) else q for q in paths]
    save_checkpoint(dst, state, meta)
    import csv

    rows = list(csv.DictReader(open(run / "log.csv"))) if (run / "log.csv").exists() else []
    seconds = float(rows[-1]["seconds"]) if rows else None
    cmd_file = run / "command.txt"   # written by examples/train_default.py
    command = cmd_file.read_text().strip() if cmd_file.exists() else None
    evals = {k: json.loads((run / f"eval-{k}.json").read_text())
             for k in ("val", "heldout", "camera") if (run / f"eval-{k}.json").exists()}
    table = [s for s in (summary(Path(r)) for r in sorted(set(args.compare) | {args.run})) if s]
    opts = (meta.get("training") or {}).get("options") or {}
    card = {
        "name": args.name, "kind": "detector", "arch": meta["arch"], "default": not args.no_default,
        "description": args.description,
        "data": {label: {str(Path(d) / sub.name): sum(1 for _ in sub.rglob("*.*"))
                         for d in data.get(label, []) for sub in sorted((ROOT / d).iterdir()) if sub.is_dir()}
                 for label in ("real", "fake")},
        "recipe": f"{(meta.get('training') or {}).get('recipe')}: {opts.get('optimizer')} lr {opts.get('lr')}, "
                  f"batch {opts.get('batch_size')}, {opts.get('epochs')} epochs, crop {opts.get('crop')}, "
                  f"blur p={opts.get('blur_prob')} JPEG p={opts.get('jpeg_prob')} q={opts.get('jpeg_quality')} "
                  + (f"rescale p={opts.get('rescale_prob')} x{opts.get('rescale_range')} "
                     if opts.get("rescale_prob") else "")
                  + f"on both classes, seed {opts.get('seed')}, threshold {opts.get('threshold_rule')} "
                  f"on a {opts.get('val_split')} validation split of the training data",
        "threshold": meta["threshold"], "threshold_rule": meta.get("threshold_rule"),
        "preprocessing": meta["preprocessing"],
        "training": meta.get("training"),
        "format_check": json.loads((run / "format-check.json").read_text())
        if (run / "format-check.json").exists() else None,
        "command": command,
        "time": {"seconds": seconds, "human": f"{seconds / 60:.1f} min" if seconds else None,
                 "machine": "2 CPU cores (AMD EPYC, AVX2), no GPU"},
        "metrics": {
            **_headline(evals),
            "val_mean": evals.get("val", {}).get("mean"),
            "val_sets": evals.get("val", {}).get("sets"),
            "val_perturbed": [{"perturbation": p["perturbation"], "mean": p["mean"], "sets": p["rows"]}
                              for p in evals.get("val", {}).get("perturbations", [])],
            "heldout_sets": evals.get("heldout", {}).get("sets"),
            "heldout_mean": evals.get("heldout", {}).get("mean"),
            "camera_fpr": (1 - evals["camera"]["mean"]["real_acc"]) if "camera" in evals else None,
            "own_validation": meta.get("metrics"),
        },
        "comparison": table,
        "sha256": sha256_file(dst),
        "file_bytes": dst.stat().st_size,
    }
    if args.extra:
        card.update(json.loads(Path(args.extra).read_text()))
    (dst.with_suffix(".json")).write_text(json.dumps(card, indent=2) + "\n")
    if not args.no_default:
        for other in (ROOT / "weights").glob("*.json"):
            if other.stem == args.name:
                continue
            c = json.loads(other.read_text())
            if c.get("kind") == "detector" and c.get("default"):
                c["default"] = False
                other.write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
    print(f"{dst}: {card['file_bytes']} bytes, sha256 {card['sha256']}")


if __name__ == "__main__":
    main()
