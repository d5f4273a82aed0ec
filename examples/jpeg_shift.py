"""How one JPEG pass moves a detector's score, class by class: trace damage, or a "JPEG means real" shortcut?

    python examples/jpeg_shift.py -m ganscan-fusion-v4 -m ganscan-twins-v4 --quality 95,75 \
        runs/twins/heldout/full/lossless runs/twins/heldout/report/unchanged runs/twins/heldout/twins-seen \
        runs/twins/heldout/translate-seen

Most of the reals that training pairs are cut from are JPEG files, and half of the real twins keep their
pixels, so a detector could have learnt that JPEG block traces mean "real". If it had, a JPEG pass would
push the scores of lossless real photos down (more real) while it pushes fakes down too. This prints, per
folder, class and model, the mean logit of the files as they are and after a JPEG pass at each quality
(Pillow, 4:2:0), the mean shift, and the share at or above the model's threshold. Folders hold ``0_real``
and/or ``1_fake``; at most ``--max`` files of each class are read (sorted by name).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from ganscan.data.datasets import LabelledSet, list_images
from ganscan.detectors.evaluate import EvalSettings, perturbed_copies, score_models
from ganscan.detectors.load import open_detectors


def logits(scores: dict) -> np.ndarray:
    """The logits of the scores of the files that decoded."""
    p = np.clip([s for s, _ in scores.values() if s is not None], 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("-m", "--model", action="append", required=True)
    ap.add_argument("--quality", default="95,75", help="JPEG qualities, comma-separated")
    ap.add_argument("--max", type=int, default=300, help="most files per class and folder")
    args = ap.parse_args()
    qualities = [int(q) for q in args.quality.split(",")]
    _dev, prec, dets = open_detectors(args.model, "auto", "auto")
    settings = EvalSettings(workers=1)
    print("| folder | class | model | n | clean logit | "
          + " | ".join(f"JPEG {q}: logit (shift)" for q in qualities) + " | flagged clean | "
          + " | ".join(f"flagged JPEG {q}" for q in qualities) + " |")
    print("|---" * (5 + 2 * len(qualities) + 1) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for fi, folder in enumerate(args.folders):
            for cls in ("0_real", "1_fake"):
                sub = Path(folder) / cls
                files = sorted(list_images(str(sub)))[:args.max] if sub.is_dir() else []
                if not files:
                    continue
                clean = LabelledSet(cls, files, [int(cls[0])] * len(files))
                versions = {0: files}
                for q in qualities:   # evaluate --perturb's copies: JPEG files at quality q
                    versions[q] = perturbed_copies([clean], "jpeg", q, f"{tmp}/{fi}-{cls}-{q}", workers=1)[0].paths
                scores = {q: score_models(dets, paths, prec, settings) for q, paths in versions.items()}
                for d, det in enumerate(dets):
                    lg = {q: logits(scores[q][d]) for q in scores}
                    base = lg[0]
                    thr = np.log(det.threshold / (1 - det.threshold))
                    cells = [f"{lg[q].mean():+.2f} ({lg[q].mean() - base.mean():+.2f})" for q in qualities]
                    flags = [f"{(lg[q] >= thr).mean():.0%}" for q in [0, *qualities]]
                    print(f"| {folder} | {cls[2:]} | {det.label} | {len(base)} | {base.mean():+.2f} | "
                          + " | ".join(cells) + " | " + " | ".join(flags) + " |", flush=True)


if __name__ == "__main__":
    main()
