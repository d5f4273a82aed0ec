#!/usr/bin/env python3
"""Markdown tables from the evaluations that examples/train_default.py writes into each run folder.

    python examples/detector_table.py runs/default/run-*           # one row per run
    python examples/detector_table.py --short runs/default/cmp-*   # the unseen generators only
    python examples/detector_table.py --sets runs/default/ship     # one run, every set, plain and perturbed
"""

from __future__ import annotations

import json
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


def main(runs: list[str], short: bool = False) -> None:
    rows = [s for s in (summary(Path(r)) for r in runs) if s]
    extra = "" if short else " JPEG 90 AP | resize 0.5 AP | own held-out AP | camera FPR |"
    print("| run | arch | " + " | ".join(f"{k} AP / acc" for k in VAL)
          + " | mean AP | mean AUC | mean acc (real / fake) |" + extra)
    print("|---" * (len(VAL) + (5 if short else 9)) + "|")
    for s in rows:
        cells = [f"{f(s['sets'][k]['ap'])} / {f(s['sets'][k]['accuracy'], 2)}" if s["sets"][k] else "n/a" for k in VAL]
        m = s["mean"]
        print(f"| {s['run']} | {s['arch']} | " + " | ".join(cells)
              + f" | **{f(m['ap'])}** | {f(m['auc'])} | {f(m['accuracy'], 2)} ({f(m['real_acc'], 2)} / {f(m['fake_acc'], 2)}) |"
              + ("" if short else f" {f((s['jpeg90'] or {}).get('ap'))} | {f((s['resize05'] or {}).get('ap'))}"
              + f" | {f(s.get('heldout_mean', {}).get('ap'))} | {f(s.get('camera_fpr'), 2)} |"))


def sets_table(run: Path) -> None:
    """Per set of one run: counts, accuracy (real / fake), AP, AUC, and accuracy / AP after each perturbation."""
    evals = [(k, _load(run / f"eval-{k}.json")) for k in ("val", "heldout")]
    evals = [(k, e) for k, e in evals if e]
    perts = [p["perturbation"] for _, e in evals[:1] for p in e.get("perturbations", [])]
    print("| set | real / fake | acc | real acc | fake acc | AP | AUC |" + "".join(f" {p} acc / AP (drop) |" for p in perts))
    print("|---" * (7 + len(perts)) + "|")
    for kind, e in evals:
        rows = [*e["sets"], {**e["mean"], "set": f"**mean ({kind})**"}]
        prows = {p["perturbation"]: {r["set"]: r for r in p["rows"]} | {rows[-1]["set"]: p["mean"]}
                 for p in e.get("perturbations", [])}
        for r in rows:
            cells = [r["set"], f"{r['n_real']} / {r['n_fake']}", f(r["accuracy"], 2), f(r["real_acc"], 2),
                     f(r["fake_acc"], 2), f(r["ap"]), f(r["auc"])]
            for p in perts:
                q = prows.get(p, {}).get(r["set"])
                cells.append(f"{f(q['accuracy'], 2)} / {f(q['ap'])} ({q['ap'] - r['ap']:+.3f})" if q else "n/a")
            print("| " + " | ".join(cells) + " |")
    cam = _load(run / "eval-camera.json")
    if cam:
        m = cam["mean"]
        print(f"| camera photos (real only) | {m['n_real']} / 0 | {f(m['accuracy'], 2)} | {f(m['real_acc'], 2)} "
              f"| n/a | n/a | n/a |" + " n/a |" * len(perts))


def cli(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders (examples/train_default.py --run)")
    ap.add_argument("--short", action="store_true", help="the unseen generators only")
    ap.add_argument("--sets", action="store_true", help="one table per run: every set, plain and perturbed")
    args = ap.parse_args(argv)
    if args.sets:
        for r in args.runs:
            sets_table(Path(r))
        return
    main(args.runs, short=args.short)


if __name__ == "__main__":
    cli()
