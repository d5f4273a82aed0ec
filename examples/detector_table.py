#!/usr/bin/env python3
"""Markdown tables from the evaluations that examples/train_default.py writes into each run folder.

    python examples/detector_table.py runs/default/run-*       # one row per run
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VAL = ("stargan128", "stargan256", "cyclegan", "pix2pix")


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _pert(ev: dict, name: str) -> dict | None:
    for p in ev.get("perturbations", []):
        if p["perturbation"] == name:
            return p["mean"]
    return None


def summary(run: Path) -> dict | None:
    val, held, cam = (_load(run / f"eval-{k}.json") for k in ("val", "heldout", "camera"))
    if val is None:
        return None
    sets = {r["set"]: r for r in val["sets"]}
    out = {"run": run.name, "arch": val["model"]["arch"], "threshold": val["threshold"],
           "sets": {k: sets.get(k) for k in VAL}, "mean": val["mean"],
           "jpeg90": _pert(val, "jpeg:90"), "resize05": _pert(val, "resize:0.5")}
    if held:
        out["heldout"] = {r["set"]: r for r in held["sets"]}
        out["heldout_mean"] = held["mean"]
    if cam:
        out["camera_fpr"] = 1.0 - cam["mean"]["real_acc"]
    return out


def f(v, digits=3):
    return "n/a" if v is None else f"{v:.{digits}f}"


def main(runs: list[str]) -> None:
    rows = [s for s in (summary(Path(r)) for r in runs) if s]
    print("| run | arch | " + " | ".join(f"{k} AP / acc" for k in VAL)
          + " | mean AP | mean AUC | mean acc (real / fake) | JPEG 90 AP | resize 0.5 AP | own held-out AP | camera FPR |")
    print("|---" * (len(VAL) + 10) + "|")
    for s in rows:
        cells = [f"{f(s['sets'][k]['ap'])} / {f(s['sets'][k]['accuracy'], 2)}" if s["sets"][k] else "n/a" for k in VAL]
        m = s["mean"]
        print(f"| {s['run']} | {s['arch']} | " + " | ".join(cells)
              + f" | **{f(m['ap'])}** | {f(m['auc'])} | {f(m['accuracy'], 2)} ({f(m['real_acc'], 2)} / {f(m['fake_acc'], 2)})"
              + f" | {f((s['jpeg90'] or {}).get('ap'))} | {f((s['resize05'] or {}).get('ap'))}"
              + f" | {f(s.get('heldout_mean', {}).get('ap'))} | {f(s.get('camera_fpr'), 2)} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
