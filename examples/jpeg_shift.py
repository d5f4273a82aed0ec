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
import math
import tempfile
from pathlib import Path

import numpy as np

from ganscan.data.augment import jpeg_roundtrip
from ganscan.data.datasets import list_images
from ganscan.data.decode import DecodeError, load_image
from ganscan.detectors.evaluate import EvalSettings, score_models
from ganscan.detectors.load import open_detectors


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


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
          + " | ".join(f"JPEG {q}: logit (shift)" for q in qualities) + " | flagged clean | " + " | ".join(f"flagged JPEG {q}" for q in qualities) + " |")
    print("|---" * (5 + 2 * len(qualities) + 1) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for fi, folder in enumerate(args.folders):
            for cls in ("0_real", "1_fake"):
                sub = Path(folder) / cls
                files = sorted(list_images(str(sub)))[:args.max] if sub.is_dir() else []
                if not files:
                    continue
                versions = {0: files}
                for q in qualities:
                    out = Path(tmp) / f"{fi}-{cls}-{q}"
                    out.mkdir()
                    versions[q] = []
                    for i, f in enumerate(files):
                        dst = out / f"{i:06d}.png"
                        try:
                            img = load_image(f)[0]
                        except DecodeError:
                            continue
                        # one JPEG pass, its pixels kept losslessly
                        jpeg_roundtrip(img, q).save(dst, format="PNG", compress_level=1)
                        versions[q].append(str(dst))
                scores = {q: score_models(dets, paths, prec, settings) for q, paths in versions.items()}
                for d, det in enumerate(dets):
                    logits = {q: np.array([logit(s) for s, _ in scores[q][d].values() if s is not None])
                              for q in scores}
                    clean = logits[0]
                    thr = logit(det.threshold)
                    cells = [f"{logits[q].mean():+.2f} ({logits[q].mean() - clean.mean():+.2f})" for q in qualities]
                    flags = [f"{(logits[q] >= thr).mean():.0%}" for q in [0, *qualities]]
                    print(f"| {folder} | {cls[2:]} | {det.label} | {len(clean)} | {clean.mean():+.2f} | "
                          + " | ".join(cells) + " | " + " | ".join(flags) + " |", flush=True)


if __name__ == "__main__":
    main()
