#!/usr/bin/env python3
"""A test-time real twin (C36): the twin member's logit on an image against its logit on the image's own enlargement.

    python examples/test_time_twin.py --work runs/twins

The twin member was trained to tell a generator's up-sampling from a standard enlargement of the same picture. A
scanner can make that second picture itself: ``T(x)`` is ``x`` down-scaled 2x and enlarged back 2x with PIL's bicubic
filter, saved as JPEG at ``x``'s own estimated quality when ``x`` is a JPEG (losslessly otherwise). This script writes
``T(x)`` for the fusion's fit sets, the four own held-out sets (clean, and as JPEG 90 copies) and the calibration and
report reals; scores ``ganscan-spectrum-v1(x)``, the twin member on ``x`` and on ``T(x)``; fits a linear fusion of the
three on the fit sets, sets its threshold by v10's rule (5 % FPR on every ``heldout/calib`` and ``calib-frac`` kind)
and prints the own mean AUC, clean and under JPEG 90, and each real kind's share flagged, beside v10's two-member
fusion refitted the same way, and a fusion of the spectrum member with the difference twins(x) - twins(T(x))
(C37). Copies and logits are kept under ``--out`` (default ``WORK/c36``) and reused: a copy that exists is not
written again, and ``--logits FILE`` keeps another member's logits apart (C41: ``--npr RUN/best.safetensors
--npr-arch npr32`` reads an ``npr32-ref`` member's network g alone, so that the C37 row is g(x) - g(T(x))). Nothing
under ``val/`` is read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

FIT = ("fit-translate", "twins-seen", "fit")
OWN = ("twins-shuffle", "twins-seen", "report/autogan1", "report/progan")
CALIB = ("calib", "calib-frac")
REPORT = ("report/camera", "report/unchanged", "report/upscaled2x", "report/upscaled-frac",
          "report/upscaled2x-jpeg75", "report/jpeg75", "report/downscaled0.5", "full/lossless", "full/web")


def enlarged_twin(img):
    """T(x): down-scaled 2x and enlarged back with the bicubic filter (odd sizes cut to even)."""
    from PIL import Image

    w, h = img.size
    w2, h2 = max(w // 2, 1), max(h // 2, 1)
    img = img.convert("RGB").crop((0, 0, 2 * w2, 2 * h2))
    return img.resize((w2, h2), Image.BICUBIC).resize((2 * w2, 2 * h2), Image.BICUBIC)


def write_twin(src: Path, dst_stem: Path) -> Path | None:
    """Write T(src) at ``dst_stem`` (JPEG at src's estimated quality, or PNG); its path, or None if src does not
    decode."""
    from PIL import Image

    from ganscan.data.provenance import jpeg_quality

    for old in (dst_stem.with_suffix(".jpg"), dst_stem.with_suffix(".png")):
        if old.exists():   # written by an earlier run
            return old
    try:
        with Image.open(src) as im:
            q = jpeg_quality(getattr(im, "quantization", None) or {}) if im.format == "JPEG" else None
            twin = enlarged_twin(im)
    except OSError:
        return None
    dst = dst_stem.with_suffix(".jpg" if q else ".png")
    dst.parent.mkdir(parents=True, exist_ok=True)
    twin.save(dst, **({"format": "JPEG", "quality": q} if q else {"format": "PNG", "compress_level": 1}))
    return dst


def jpeg90_copy(src: Path, dst_stem: Path) -> Path | None:
    """The JPEG 90 copy ``twins_table.py --perturb jpeg:90`` scores; its path, or None if src does not decode."""
    from ganscan.data.decode import DEFAULT_MAX_PIXELS
    from ganscan.detectors.evaluate import _perturb_file

    old = sorted(dst_stem.parent.glob(dst_stem.name + ".*")) if dst_stem.parent.is_dir() else []
    if old:   # written by an earlier run
        return old[0]
    dst_stem.parent.mkdir(parents=True, exist_ok=True)
    out = _perturb_file(str(src), str(dst_stem), "jpeg", 90, DEFAULT_MAX_PIXELS)
    return Path(out) if out else None


def collect(work: Path, out: Path) -> dict:
    """{"group/set": {"paths", "twins", "y"}}: every image of each group, its T(x) copy, and its label."""
    from ganscan.data.datasets import test_sets

    held = work / "heldout"
    groups = {"fit": FIT, "own": OWN, "calib": CALIB, "report": REPORT}
    sets = {}
    for group, names in groups.items():
        for name in names:
            if not (held / name).is_dir():
                raise SystemExit(f"error: not found: {held / name} (python examples/train_twins.py --recipe v10 "
                                 "--stage heldout writes it)")
            for s in test_sets(str(held / name)):
                sets[f"{group}/{s.name if group in ('fit', 'calib') else name}"] = (list(s.paths), list(s.labels))
    done = {}
    for key, (paths, labels) in sets.items():
        rows = {"paths": [], "twins": [], "y": []}
        jp = [] if key.startswith("own/") else None
        for p, lab in zip(paths, labels):
            rel = Path(os.path.abspath(p)).relative_to(os.path.abspath(held))   # links kept as links
            t = write_twin(Path(p), out / "twins" / rel.with_suffix(""))
            if t is None:
                continue
            rows["paths"].append(p)
            rows["twins"].append(str(t))
            rows["y"].append(int(lab))
            if jp is not None:   # the JPEG 90 copy and its own twin
                j = jpeg90_copy(Path(p), out / "jpeg90" / rel.with_suffix(""))
                jp.append((str(j), str(write_twin(j, out / "jpeg90-twins" / rel.with_suffix(""))), int(lab)))
        done[key] = rows
        if jp is not None:
            done["ownj/" + key.split("/", 1)[1]] = {"paths": [a for a, _, _ in jp], "twins": [b for _, b, _ in jp],
                                                    "y": [c for _, _, c in jp]}
        print(f"copies: {key} {len(rows['paths'])}", file=sys.stderr, flush=True)
    return done


def as_arch(model: str, arch: str, dst: Path) -> str:
    """A copy of ``model``'s tensors under another architecture that has the same tensors (e.g. an npr32-ref
    member as npr32: its network g alone), written at ``dst``; its path."""
    from ganscan.core.checkpoint import load_checkpoint, save_checkpoint
    from ganscan.core.weights import resolve_weights
    from ganscan.detectors.train.model import SAME_TENSORS

    state, meta = load_checkpoint(resolve_weights(model, "detector"))
    if meta.get("arch") != arch and frozenset((meta.get("arch"), arch)) not in SAME_TENSORS:
        raise SystemExit(f"error: {model} is {meta.get('arch')}, whose tensors {arch} does not share")
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, state, {**meta, "arch": arch, "name": f"{meta.get('name') or Path(model).stem} as {arch}"})
    return str(dst)


def score(sets: dict, npr: str, workers: int) -> dict:
    """Adds "x": (N, 3) logits (spectrum on x, twin member on x, twin member on T(x)) to each set."""
    import numpy as np

    from ganscan.detectors.evaluate import EvalSettings
    from ganscan.detectors.load import load_detector, open_detector
    from ganscan.detectors.zoo.fusion import member_logits

    _, prec, spectrum = open_detector("ganscan-spectrum-v1", "auto", "auto")
    twin = load_detector(npr)
    settings = EvalSettings(workers=workers)
    for key, s in sets.items():
        a = member_logits([spectrum, twin], s["paths"], prec, settings)
        b = member_logits([twin], s["twins"], prec, settings)
        s["x"] = np.concatenate([a, b], 1).tolist()
        print(f"scored {key}: {len(s['paths'])} images and their twins", file=sys.stderr, flush=True)
    return sets


def analyse(d: dict) -> list[str]:
    import numpy as np
    import torch

    from ganscan.detectors import metrics as M
    from ganscan.detectors.zoo.fusion import fit_logistic, threshold_at_fpr

    def arr(key, cols):
        x = np.array(d[key]["x"], dtype=float)
        return cols(x), np.array(d[key]["y"])

    lines = []
    for name, cols in (("v10's two members (spectrum, twins(x))", lambda x: x[:, [0, 1]]),
                       ("C36 (spectrum, twins(x), twins(T(x)))", lambda x: x),
                       ("C37 (spectrum, twins(x) - twins(T(x)))", lambda x: np.stack([x[:, 0], x[:, 1] - x[:, 2]], 1))):
        fx = [arr(k, cols) for k in d if k.startswith("fit/")]
        x, y = np.concatenate([a for a, _ in fx]), np.concatenate([b for _, b in fx])
        ok = ~np.isnan(x).any(1)
        w, b = fit_logistic(torch.from_numpy(x[ok]), torch.from_numpy(y[ok]))
        w = w.double().numpy()

        def fused(key):
            xx, yy = arr(key, cols)
            m = ~np.isnan(xx).any(1)
            return 1 / (1 + np.exp(-(xx[m] @ w + b))), yy[m]

        own = [k.split("/", 1)[1] for k in d if k.startswith("own/")]
        aucs = {g: [M.roc_auc(*fused(f"{g}/{s}")[::-1]) for s in own] for g in ("own", "ownj")}
        reals = {k: fused(k)[0][fused(k)[1] == 0] for k in d if k.startswith("calib/")}
        t, _ = threshold_at_fpr(reals, 0.05)
        c, j = float(np.mean(aucs["own"])), float(np.mean(aucs["ownj"]))
        tpr = float(np.mean([np.mean(fused(f"own/{s}")[0][fused(f"own/{s}")[1] == 1] >= t) for s in own]))
        lines += [f"{name}: weights " + ", ".join(f"{v:.3f}" for v in w) + f", bias {b:+.3f}; threshold {t:.3f}",
                  f"  own mean AUC {c:.4f}, under JPEG 90 {j:.4f}, drop {c - j:.4f}; own mean TPR at the threshold "
                  f"{tpr * 100:.1f} %",
                  "  by set, clean -> JPEG 90: " + ", ".join(f"{s} {a:.4f} -> {b_:.4f}" for s, a, b_ in
                                                             zip(own, aucs["own"], aucs["ownj"])),
                  "  real photos flagged: " + ", ".join(
                      f"{k.split('/', 1)[1]} {np.mean(fused(k)[0][fused(k)[1] == 0] >= t) * 100:.1f} %"
                      for k in d if k.startswith("report/")), ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/twins", help="the twins work folder (its heldout/ sets)")
    ap.add_argument("--npr", default="ganscan-twins-v10", help="the twin member (a shipped name or a checkpoint)")
    ap.add_argument("--npr-arch", default=None,
                    help="read the member's tensors as this architecture (npr32 for an npr32-ref member's g alone)")
    ap.add_argument("--out", default=None, help="copies and logits (default WORK/c36)")
    ap.add_argument("--logits", default=None, help="the logits cache (default OUT/logits.json)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.work)
    out = Path(args.out) if args.out else work / "c36"
    cache = Path(args.logits) if args.logits else out / "logits.json"
    if cache.exists():
        d = json.loads(cache.read_text())
    else:
        npr = as_arch(args.npr, args.npr_arch, cache.with_suffix(".member.safetensors")) if args.npr_arch else args.npr
        d = score(collect(work, out), npr, args.workers)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(d))
    print("\n".join(analyse(d)))


if __name__ == "__main__":
    main()
