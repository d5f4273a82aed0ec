#!/usr/bin/env python3
"""Models side by side from the tables ``examples/twins_table.py`` writes: the fusion and each of its members.

    python examples/members_table.py runs/twins/members43/table.json runs/twins/c49/table.json \\
        --names twins spectrum fusion

For every set: each model's AUC, its AUC under JPEG 90 (when the table has that column) and its TPR at its own
threshold; for every real-only set: the share each model flags at its threshold. Family means (own, small, translate,
large, val) are the means over the sets, as ``twins_table.py`` computes them. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FAMILIES = ("own", "small", "translate", "large", "val")


def load_models(paths: list[Path]) -> list[tuple[str, dict]]:
    """[(model name, its table entry)] in the order given, every model of every file."""
    out = []
    for p in paths:
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: cannot read {p}: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) and "sets" in v for v in data.values()):
            raise SystemExit(f"error: {p} is not a table written by examples/twins_table.py")
        out.extend(data.items())
    return out


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def rows(models: list[tuple[str, dict]]) -> list[tuple[str, list]]:
    """[(set or family mean, [(AUC, AUC under JPEG 90, TPR at threshold) or FPR, one per model])]: the fake sets in the
    first model's order, their family means, then the real-only sets."""
    first = models[0][1]["sets"]
    fakes = [s for s, v in first.items() if "n_fake" in v]
    reals = [s for s, v in first.items() if "n_fake" not in v]
    out = []

    def cell(v):
        return (v.get("auc"), v.get("auc_jpeg:90"), v.get("tpr_at_threshold"))

    for s in fakes:
        out.append((s, [cell(m["sets"][s]) if s in m["sets"] else None for _, m in models]))
    for fam in FAMILIES:
        names = [s for s in fakes if s.startswith(fam + "/")]
        if not names:
            continue
        per = []
        for _, m in models:
            cells = [cell(m["sets"][s]) for s in names if s in m["sets"]]
            per.append(tuple(_mean([c[i] for c in cells]) for i in range(3)) if cells else None)
        out.append((f"**mean {fam}**", per))
    for s in reals:
        out.append((s, [m["sets"][s].get("fpr_at_threshold") if s in m["sets"] else None for _, m in models]))
    return out


def markdown(models: list[tuple[str, dict]], names: list[str]) -> str:
    head = "| set | " + " | ".join(f"{n}: AUC (JPEG 90); TPR" for n in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for label, cells in rows(models):
        out = []
        for c in cells:
            if c is None:
                out.append("")
            elif isinstance(c, tuple):
                auc, jpeg, tpr = c
                out.append(("" if auc is None else f"{auc:.3f}") + ("" if jpeg is None else f" ({jpeg:.3f})")
                           + ("" if tpr is None else f"; {100 * tpr:.0f} %"))
            else:
                out.append(f"FPR {100 * c:.1f} %")
        lines.append(f"| {label} | " + " | ".join(out) + " |")
    thr = "; ".join(f"{n} {m['threshold']:.3f}" for n, (_, m) in zip(names, models))
    return "\n".join(lines) + f"\n\nThresholds: {thr}."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+", type=Path, help="tables written by examples/twins_table.py")
    ap.add_argument("--names", nargs="+", help="a column name for each model (default: the models' names)")
    args = ap.parse_args()
    models = load_models(args.tables)
    names = args.names or [n for n, _ in models]
    if len(names) != len(models):
        sys.exit(f"error: {len(names)} names for {len(models)} models")
    print(markdown(models, names))


if __name__ == "__main__":
    main()
