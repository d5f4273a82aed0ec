#!/usr/bin/env python3
"""Copy a fused detector (``ganscan models fuse``) into weights/ with its model card.

    python examples/ship_fusion.py runs/twins/fused.safetensors --name ganscan-fusion-v1 \\
        --table runs/twins/table.json --npr-run runs/twins/run --command-file runs/twins/commands.txt [--default]
    python examples/ship_fusion.py runs/twins/c56/fused.safetensors --name ganscan-fusion-v49 \\
        --table runs/twins/c56/table.json --member-card weights/ganscan-fusion-v48.json --command-file ... --default

The card holds the members (with their sha256 and the NPR member's training data, recipe and format
check; ``--npr-run`` given once per seed when the member is an average of several runs), the fusion
weights, the threshold and how it was calibrated, every number of the table (``examples/twins_table.py``),
the commands, the time, sha256 and size.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = "CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{len(os.sched_getaffinity(0))} cores of {cpu} ({platform.machine()}), no GPU"


def headline(table: dict, label: str) -> dict:
    """Scalar numbers `ganscan models` shows: means over val/ and the own held-out sets, and each real kind's FPR."""
    m = table.get(label) or next(iter(table.values()))
    out = {}
    for group, prefix in (("val", "val/"), ("own", "own/"), ("translate", "translate/"), ("long", "long/")):
        rows = [r for k, r in m["sets"].items() if k.startswith(prefix) and r.get("auc") is not None]
        for key in ("auc", "ap", "tpr_at_threshold", "tpr_at_5fpr", "auc_jpeg:90", "auc_resize:0.5"):
            vals = [r[key] for r in rows if r.get(key) is not None]
            if vals:
                out[f"{group}_mean_{key.replace(':', '').replace('.', '')}"] = round(sum(vals) / len(vals), 6)
    for k, r in m["sets"].items():
        if r.get("auc") is None:
            out[f"fpr_{k.replace('/', '_')}"] = round(r["fpr_at_threshold"], 6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("fused", help="the fused checkpoint, or RUN/best.safetensors of the NPR member to ship alone")
    ap.add_argument("--name", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--npr-run", action="append",
                    help="the NPR member's training run; once per seed for a member averaged over runs")
    ap.add_argument("--member-card", default=None,
                    help="instead of --npr-run: the card of a shipped fusion whose NPR member has the same sha256 "
                         "(a retiled detector: its training data, recipe, format check and time are that card's)")
    ap.add_argument("--command-file", required=True)
    ap.add_argument("--seconds", type=float, default=None, help="wall time of the whole build")
    ap.add_argument("--default", action="store_true", help="make it the default detector")
    ap.add_argument("--description", default="")
    args = ap.parse_args()
    if bool(args.npr_run) == bool(args.member_card):
        ap.error("give the NPR member's training run (--npr-run) or a card that has it (--member-card), not both")
    from ganscan.core.checkpoint import load_checkpoint, save_checkpoint, sha256_file

    state, meta = load_checkpoint(args.fused, verify=False)
    member, member_seconds = (member_from_card(args.member_card, meta) if args.member_card
                              else member_from_runs([Path(r) for r in args.npr_run]))
    dst = ROOT / "weights" / f"{args.name}.safetensors"
    meta = {**meta, "name": args.name}
    save_checkpoint(dst, state, meta)
    table = json.loads(Path(args.table).read_text())
    card = {
        "name": args.name, "kind": "detector", "arch": meta["arch"], "default": bool(args.default),
        "description": args.description,
        "members": meta.get("members"), "fusion": meta.get("fusion"),
        "threshold": meta["threshold"], "threshold_rule": meta.get("threshold_rule"),
        **({"threshold_precision": meta["threshold_precision"]} if meta.get("threshold_precision") else {}),
        "threshold_calibration": meta.get("threshold_calibration"),
        "preprocessing": meta["preprocessing"],
        **member,
        "command": Path(args.command_file).read_text().strip(),
        "time": {"npr_member_training_seconds": member_seconds, "build_seconds": args.seconds, "machine": machine()},
        "metrics": {**headline(table, meta.get("name") or args.name), "table": table},
        "sha256": sha256_file(dst),
        "file_bytes": dst.stat().st_size,
    }
    finish(args, dst, card)


def member_from_runs(runs: list[Path]) -> tuple[dict, float | None]:
    """The NPR member's card record (data, recipe, format check) from its training run(s), and its training time."""
    from ganscan.core.checkpoint import load_checkpoint, sha256_file

    run = runs[0]
    _, npr_meta = load_checkpoint(run / "best.safetensors", verify=False)
    rows = list(csv.DictReader(open(run / "log.csv")))
    training = npr_meta.get("training") or {}
    record = {
        "data": {"npr_member": training.get("data"), "n_train": training.get("n_train"), "n_val": training.get("n_val")},
        "recipe": {"npr_member": training.get("options"), "npr_member_epochs_run": len(rows),
                   "npr_member_best_epoch": training.get("epochs")},
        "format_check": json.loads((run / "format-check.json").read_text()),
    }
    seconds = float(rows[-1]["seconds"]) if rows else None
    if len(runs) > 1:   # the member is the average of these runs (ganscan models average): one record per run
        seeds = []
        for r in runs:
            _, m = load_checkpoint(r / "best.safetensors", verify=False)
            log = list(csv.DictReader(open(r / "log.csv")))
            t = m.get("training") or {}
            seeds.append({"run": str(r), "sha256": sha256_file(r / "best.safetensors"),
                          "seed": (t.get("options") or {}).get("seed"), "best_epoch": t.get("epochs"),
                          "epochs_run": len(log), "training_seconds": float(log[-1]["seconds"]) if log else None,
                          "format_check": json.loads((r / "format-check.json").read_text())["balanced_accuracy"]})
        record["recipe"]["npr_member_averaged_runs"] = seeds
        seconds = sum(x["training_seconds"] or 0 for x in seeds)
    return record, seconds


def member_from_card(path: str, meta: dict) -> tuple[dict, float | None]:
    """The same record from the card of a shipped detector whose NPR member is this one's (a retiled detector)."""
    earlier = json.loads(Path(path).read_text())
    mine, theirs = (meta.get("members") or {}).get("npr") or {}, (earlier.get("members") or {}).get("npr") or {}
    if not mine.get("weights_sha256") or mine.get("weights_sha256") != theirs.get("weights_sha256"):
        raise SystemExit(f"{path}: its NPR member (sha256 {theirs.get('weights_sha256')}) is not this "
                         f"detector's ({mine.get('weights_sha256')})")
    record = {"data": earlier.get("data"), "recipe": earlier.get("recipe"), "format_check": earlier.get("format_check"),
              "member_card": {"name": earlier.get("name"), "sha256": earlier.get("sha256")}}
    return record, (earlier.get("time") or {}).get("npr_member_training_seconds")


def finish(args, dst: Path, card: dict) -> None:
    dst.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    if args.default:
        for other in (ROOT / "weights").glob("*.json"):
            if other.stem == args.name:
                continue
            text = other.read_text()
            c = json.loads(text)
            if c.get("kind") == "detector" and c.get("default"):   # flip the flag, keep the card's layout
                other.write_text(text.replace('"default": true', '"default": false', 1))
    print(f"{dst}: {card['file_bytes']} bytes, sha256 {card['sha256']}")


if __name__ == "__main__":
    main()
