#!/usr/bin/env python3
"""How sure is v43's JPEG-90 gain? A paired bootstrap over the images of our own held-out report sets.

    python examples/jpeg_gain_ci.py --work runs/twins          # about 5 min from nothing (reads kept in WORK/c49)

``ganscan-fusion-v43`` differs from ``ganscan-fusion-v40`` only on JPEG files whose tile grid is under the cap
(overlapping tiles at stride 16: ``examples/overlap_tiles.py``). This scores the own report sets of the default's
table (``twins-shuffle``, ``twins-seen``, ``report/autogan1``, ``report/progan``) clean and as JPEG 90 copies (made in
memory) under both reads, and resamples each set's reals and fakes with replacement (``--rounds`` times, the same
draw for both models) to give 95 % intervals for: the own mean AUC under JPEG 90 of each model, v43's gain there,
and v43's drop (clean mean minus JPEG-90 mean; the issue's target is 0.05). It measures the sets' sampling noise,
not how a new family would read. Nothing under ``val/`` is read.

    python examples/jpeg_gain_ci.py --work runs/twins --pair v43-v48   # about 15 min from nothing (reads in WORK/c54)

``--pair v43-v48`` does the same for ``ganscan-fusion-v48`` against ``ganscan-fusion-v43`` (which differ only in how
a JPEG file's tiles are pooled), one family at a time: the own report sets, the translation report halves and
``large/``, each model read as it reads (``overlap_tiles.read_logits`` at stride 16); it also gives the clean gain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overlap_tiles as ot  # noqa: E402
import two_scale as ts  # noqa: E402
from twins_table import held_sets  # noqa: E402

def bootstrap(v40: dict, v43: dict, rounds: int = 1000, seed: int = 0, names: tuple[str, str] = ("v40", "v43")) -> dict:
    """{quantity: (point, low, high)} from {set: {condition: [[label, logit], ...]}} of each model (``names``: the
    first, the second), the same files in the same order; each round draws every set's reals and fakes with
    replacement, one draw for both models."""
    a, b = names
    import numpy as np

    from ganscan.detectors.metrics import roc_auc

    rng = np.random.default_rng(seed)

    def means(pick):
        out = {}
        for name, reads in ((a, v40), (b, v43)):
            for c in ("none", "jpeg:90"):
                aucs = []
                for s, rows in reads.items():
                    idx = pick[s]
                    aucs.append(roc_auc([rows[c][i][0] for i in idx], [rows[c][i][1] for i in idx]))
                out[name, c] = sum(aucs) / len(aucs)
        return {f"{a} JPEG-90 mean": out[a, "jpeg:90"], f"{b} JPEG-90 mean": out[b, "jpeg:90"],
                f"{b} gain, clean": out[b, "none"] - out[a, "none"],
                f"{b} gain under JPEG 90": out[b, "jpeg:90"] - out[a, "jpeg:90"],
                f"{b} drop (clean - JPEG 90)": out[b, "none"] - out[b, "jpeg:90"],
                f"{a} drop (clean - JPEG 90)": out[a, "none"] - out[a, "jpeg:90"]}

    labels = {s: [r[0] for r in rows["none"]] for s, rows in v40.items()}
    classes = {s: ([i for i, v in enumerate(y) if v == 0], [i for i, v in enumerate(y) if v == 1])
               for s, y in labels.items()}
    point = means({s: list(range(len(y))) for s, y in labels.items()})
    draws = {k: [] for k in point}
    for _ in range(rounds):
        pick = {s: list(rng.choice(real, len(real))) + list(rng.choice(fake, len(fake)))
                for s, (real, fake) in classes.items()}
        for k, v in means(pick).items():
            draws[k].append(v)
    return {k: (point[k], float(np.percentile(draws[k], 2.5)), float(np.percentile(draws[k], 97.5))) for k in point}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--pair", choices=["v40-v43", "v43-v48"], default="v40-v43")
    args = ap.parse_args()
    if args.rounds < 10:
        sys.exit("error: --rounds must be at least 10")
    held = ts.heldout(args.work)
    if args.pair == "v43-v48":
        return pair_v48(args, held)
    sets = held_sets(held, ("own",))
    reads = {s: ts.cached(args.work / "c49" / f"own-{s}.json",
                          lambda s=s: ot.read_logits("ganscan-fusion-v40", s, sets, ("none", "jpeg:90")))
             for s in (0, 16)}
    v43 = ot.mixed(reads[0], reads[16], ot.jpeg_flags(sets))   # JPEG files take the overlapping read
    print_intervals(bootstrap(reads[0], v43, args.rounds), args.rounds)


def print_intervals(result: dict, rounds: int) -> None:
    print(f"| quantity | point | 95 % interval ({rounds} paired resamples of each set's reals and fakes) |")
    print("|---|---|---|")
    for k, (p, lo, hi) in result.items():
        print(f"| {k} | {p:.4f} | {lo:.4f} - {hi:.4f} |")


def pair_v48(args, held: Path) -> None:
    for family in ("own", "translate", "large"):
        sets = held_sets(held, (family,))
        reads = {m: ts.cached(args.work / "c54" / f"ci-{family}-{m}.json",
                              lambda m=m: ot.read_logits(f"ganscan-fusion-{m}", 16, sets, ("none", "jpeg:90")))
                 for m in ("v43", "v48")}
        print(f"\n{family} ({len(sets)} sets)\n")
        print_intervals(bootstrap(reads["v43"], reads["v48"], args.rounds, names=("v43", "v48")), args.rounds)


if __name__ == "__main__":
    main()
