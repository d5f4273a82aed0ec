#!/usr/bin/env python3
"""How much of a twin pair's difference a JPEG 90 pass leaves, and whether the fusion's misses are the pairs it erased.

    python examples/jpeg_ceiling.py --work runs/twins --cache runs/twins/c26/logits.json

A twin pair (``heldout/twins-shuffle``, ``heldout/twins-seen``: ``pairs.csv`` names each pair's files, tail and
real twin) differs only by its generator tail's trace. For each pair this saves both twins as JPEG 90 (in memory, as
``twins_table.py --perturb jpeg:90`` does) and measures what is left of their difference: the RMS, in grey levels of
luminance, of the difference's top-octave residual (``npr_residual``, the band the twin member reads), clean and
after the pass. It then reads the fusion's logit of each twin, clean and after JPEG 90, from the member logits that
``examples/jpeg_members.py`` cached (``--cache``; by default with the weights on ``ganscan-fusion-v10``'s card) and prints, by quintile of what the pass
left, the share of pairs whose fake scores above its own real twin: if the pairs whose difference JPEG erased are
the ones ranked wrongly, no detector of the trace can rank them, and the set's JPEG-90 AUC has a ceiling. Then the
same share, and the median fused logit of each class clean and after the pass, by set, by tail kind and by how the
real twin was made. Nothing under ``val/`` is read.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

SETS = ("twins-shuffle", "twins-seen")


def card_weights(name: str = "ganscan-fusion-v10") -> list[float]:
    """A shipped fusion's spectrum and twins weights and bias, from its card."""
    from ganscan.core.weights import weights_dir

    fusion = json.loads((weights_dir() / f"{name}.json").read_text())["fusion"]
    return [*fusion["weight"], fusion["bias"]]


def top_octave_rms(a, b) -> float:
    """RMS (grey levels) of the top-octave residual of the luminance difference of two same-size RGB images."""
    import numpy as np
    import torch

    from ganscan.detectors.zoo.families import npr_residual

    luma = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) @ np.array([0.299, 0.587, 0.114])
    return float(npr_residual(torch.from_numpy(luma)[None, None]).pow(2).mean().sqrt())


def pair_rows(work: Path, d: dict, weights) -> list[dict]:
    """One row per pair of both sets: its tail kind, real twin, what the pass left, and the fused margins."""
    import numpy as np

    from ganscan.data.augment import jpeg_roundtrip
    from ganscan.data.decode import load_image

    w = np.array(weights[:2])
    rows = []
    for name in SETS:
        folder = work / "heldout" / name
        clean, after = d.get(f"own/{name}"), d.get(f"ownj/{name}")
        if clean is None or after is None:
            raise SystemExit(f"error: {name} is not in the cache "
                             f"(python examples/jpeg_members.py --work {work} writes it)")
        index = {Path(p).relative_to(folder).as_posix(): i for i, p in enumerate(clean["paths"])}
        fused_c = np.array(clean["x"], dtype=float) @ w + weights[2]
        fused_j = np.array(after["x"], dtype=float) @ w + weights[2]
        with open(folder / "pairs.csv", newline="") as fh:
            for p in csv.DictReader(fh):
                r, f = f"0_real/{p['real']}", f"1_fake/{p['fake']}"
                if r not in index or f not in index:
                    continue
                a, _ = load_image(str(folder / r))
                b, _ = load_image(str(folder / f))
                if a.size != b.size:
                    continue
                ir, i_f = index[r], index[f]
                rows.append({"set": name, "tail": p["tail"].split("-")[0], "real_up": p["real_up"],
                             "left_clean": top_octave_rms(b, a), "left_jpeg": top_octave_rms(jpeg_roundtrip(b, 90), jpeg_roundtrip(a, 90)),
                             "margin_clean": fused_c[i_f] - fused_c[ir], "margin_jpeg": fused_j[i_f] - fused_j[ir],
                             "real": (fused_c[ir], fused_j[ir]), "fake": (fused_c[i_f], fused_j[i_f])})
        print(f"{name}: {sum(r['set'] == name for r in rows)} pairs", file=sys.stderr, flush=True)
    return rows


def report(rows: list[dict]) -> list[str]:
    import numpy as np

    def share(sel, key):
        return float(np.mean([r[key] > 0 for r in sel])) if sel else float("nan")

    left = np.array([r["left_jpeg"] for r in rows])
    edges = np.quantile(left, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    lines = ["| top-octave difference left by JPEG 90 (grey levels RMS) | pairs | left of the clean difference | "
             "fake above its twin, clean | after JPEG 90 |", "|---|---|---|---|---|"]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = [r for r in rows if lo <= r["left_jpeg"] <= hi]
        kept = np.median([r["left_jpeg"] / max(r["left_clean"], 1e-9) for r in sel])
        lines.append(f"| {lo:.2f}-{hi:.2f} | {len(sel)} | {kept * 100:.0f} % (median) | "
                     f"{share(sel, 'margin_clean') * 100:.1f} % "
                     f"| {share(sel, 'margin_jpeg') * 100:.1f} % |")
    lines += ["", "| pairs | n | median left after JPEG 90 | fake above its twin, clean | after JPEG 90 | "
              "median fused logit, real twin: clean -> JPEG 90 | fake |", "|---|---|---|---|---|---|---|"]
    for key in ("set", "tail", "real_up"):
        for value in sorted({r[key] for r in rows}):
            sel = [r for r in rows if r[key] == value]
            med = {c: [np.median([r[c][k] for r in sel]) for k in (0, 1)] for c in ("real", "fake")}
            lines.append(f"| {key} = {value} | {len(sel)} | {np.median([r['left_jpeg'] for r in sel]):.2f} | "
                         f"{share(sel, 'margin_clean') * 100:.1f} % | {share(sel, 'margin_jpeg') * 100:.1f} % | "
                         f"{med['real'][0]:+.2f} -> {med['real'][1]:+.2f} | "
                         f"{med['fake'][0]:+.2f} -> {med['fake'][1]:+.2f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/twins", help="the twins work folder (its heldout/ sets)")
    ap.add_argument("--cache", default=None, help="member logits written by examples/jpeg_members.py "
                    "(default WORK/jpeg-members.json)")
    ap.add_argument("--weights", default=None,
                    help="the fusion's spectrum and twins weights and bias, comma-separated (default: from "
                         "ganscan-fusion-v10's card)")
    args = ap.parse_args()
    work = Path(args.work)
    cache = Path(args.cache) if args.cache else work / "jpeg-members.json"
    if not cache.exists():
        raise SystemExit(f"error: {cache} not found (python examples/jpeg_members.py --work {work} --cache {cache} "
                         "writes it)")
    try:
        weights = card_weights() if args.weights is None else [float(v) for v in args.weights.split(",")]
        assert len(weights) == 3
    except (ValueError, AssertionError):
        raise SystemExit(f"error: --weights takes three numbers (spectrum,twins,bias), got {args.weights!r}")
    print("\n".join(report(pair_rows(work, json.loads(cache.read_text()), weights))))


if __name__ == "__main__":
    main()
