#!/usr/bin/env python3
"""The settings of a two-scale read (C44, C45: rules ``docs/selection-rule-v38.txt``, ``v39.txt``), chosen on fit sets.

    python examples/two_scale.py --work runs/twins                  # C46 (rule v40): v39 under a threshold limit
    python examples/two_scale.py --work runs/twins --rule v39       # C45: filter, files and margin by AUC
    python examples/two_scale.py --work runs/twins --rule v38       # C44: the margin alone (box filter, all files)
    python examples/two_scale.py --work runs/twins --rule v44       # C50: a margin of their own for JPEG files
    python examples/two_scale.py --work runs/twins --rule v45       # C51: the same from 256 px a side up
    python examples/two_scale.py --work runs/twins --rule v46       # C52: C51 under a limit on enlarged reals flagged

A tiles detector with a half-size read (``examples/retile.py --half-tiles 4``) scores an image as the larger of its
native mean logit and its half-size mean logit less a margin m. This script reads every image of the fusion's fit
sets (``heldout/fit``: autogan1 and progan; ``heldout/fit-translate``; ``heldout/twins-seen``) clean, as a JPEG 90 copy
and enlarged 2x by the bicubic filter (the same perturbations as ``ganscan evaluate --perturb``, made in memory),
keeps both reads' mean logits (under ``WORK/c45``, one file per reduction filter, reused when it exists), and prints,
for each setting, the AUC of every set and condition. Rule v38 chose the margin m with the highest mean of the 12 AUCs
(a tie: the larger m). Rule v39 also chooses the reduction (box or lanczos) and the files read at half size (all, or
lossless only: a JPEG keeps its native score): among the settings none of whose clean and JPEG-90 AUCs is more than
0.005 below the same set's without a half-size read, the one with the highest mean enlarged AUC (ties: the larger m,
then box, then all files). Rule v40 also reads the calibration reals (``heldout/calib``, ``heldout/calib-frac``), sets
each setting's threshold by the fusion's rule (5 % FPR on every kind) and requires the mean clean TPR of the fit sets
at that threshold to be at least the no-read one's less 2 points. Rule v44 (C50) starts from v43 (v40's read, small
JPEG files in overlapping tiles: the reads ``examples/overlap_tiles.py`` keeps under ``WORK/c48``) and gives JPEG files
a half-size read (Lanczos) at a margin of their own, chosen by the fit sets' AUC on copies enlarged 2x (bicubic) and
then saved as JPEG 90 (``bicubic:2+jpeg:90``, made in memory), under limits on the clean and JPEG-90 AUCs, the TPR at
the threshold and the share of ``heldout/calib-u2j`` (reals enlarged 2x then saved as JPEG 75) flagged. Nothing under
``val/`` is read. Rule v45 (C51) is rule v44 with the JPEG files' half-size read only for images of at least 256 px a
side (4 half-size tiles, not 1); rule v46 (C52) also limits the share of the fit sets' enlarged-then-JPEG reals flagged
at the threshold to v43's + 1 point.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # its sibling scripts import as modules

FIT = (("fit", "autogan1"), ("fit", "progan"), ("fit-translate", "translate-seen"), ("twins-seen", None))
CONDITIONS = ("none", "jpeg:90", "bicubic:2")


def fit_sets(held: Path) -> list:
    from ganscan.data.datasets import test_sets

    out = []
    for folder, name in FIT:
        for s in test_sets(str(held / folder)):
            if name is None or s.name == name:
                s.name = folder if name is None else f"{folder}/{name}"
                out.append(s)
    return out


def perturbed(path: str, condition: str):
    """(the image at ``path`` as ``ganscan evaluate --perturb condition`` would score it, whether that file is a
    JPEG): a JPEG copy is encoded and decoded in memory."""
    from PIL import Image

    from ganscan.data.augment import apply_perturbation, parse_perturbations
    from ganscan.data.decode import load_image

    img, info = load_image(path)
    if condition == "none":
        return img.convert("RGB"), info.format == "JPEG"
    jpg = False
    for step in condition.split("+"):   # "bicubic:2+jpeg:90": enlarged, then saved as JPEG
        (kind, value), = parse_perturbations(step)
        img, how = apply_perturbation(img, kind, value)
        jpg = how.startswith("jpeg:")
        if jpg:
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=int(how.split(":")[1]))
            buf.seek(0)
            img = Image.open(buf).convert("RGB")
    return img, jpg


def calib_sets(held: Path) -> list:
    """The calibration reals, one set per kind (as ``examples/retile.py --calibrate`` reads them)."""
    from ganscan.data.datasets import test_sets

    return [s for d in ("calib", "calib-frac") for s in test_sets(str(held / d))]


def scored_sets(sets: list, conditions, views, score, progress=print, tag: str = "") -> dict:
    """{set: {condition: rows}}: every file of ``sets`` under each condition (``perturbed``), its views
    (``views(img, is_jpeg)``) scored 32 files at a time (``score([(label, views, is_jpeg), ...])`` -> one row each); a
    file that does not decode is skipped."""
    from ganscan.data.decode import DecodeError

    out: dict = {}
    for s in sets:
        for cond in conditions:
            rows, batch = [], []
            for path, y in zip(s.paths, s.labels):
                try:
                    img, jpg = perturbed(path, cond)
                    batch.append((int(y), views(img, jpg), jpg))
                except (DecodeError, OSError):
                    continue
                if len(batch) == 32:
                    rows.extend(score(batch))
                    batch.clear()
            if batch:
                rows.extend(score(batch))
            out.setdefault(s.name, {})[cond] = rows
            progress(f"{tag}{s.name} {cond}: {len(rows)} images")
    return out


def two_reads(model: str, sets: list, half_filter: str = "box", progress=print,
              conditions: tuple[str, ...] = CONDITIONS) -> dict:
    """{set: {condition: [[label, native logit, half-size logit or None, is a JPEG], ...]}} for ``model``'s
    networks, the half-size read made with ``half_filter``."""
    from ganscan.core.device import choose_precision, configure_threads, resolve_device
    from ganscan.detectors.inference import forward_logits, prepare_model
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.preprocess import normalize, views_uint8

    configure_threads()
    det = load_detector(model)
    cfg = det.config.with_preprocessing({**det.config.preprocessing(), "half_tiles": 4, "half_margin": 0.0,
                                         "half_filter": half_filter})
    prec = choose_precision(resolve_device("auto"), "auto")
    net = prepare_model(det.model, prec)
    def score(batch):
        native = forward_logits(net, [v.native for _, v, _ in batch], prec)
        halves = [v.half for _, v, _ in batch if v.half.shape[0]]
        half = iter(forward_logits(net, halves, prec))
        return [[y, n, next(half) if v.half.shape[0] else None, jpg] for (y, v, jpg), n in zip(batch, native)]

    return scored_sets(sets, conditions, lambda img, jpg: normalize(views_uint8(img, cfg), cfg), score, progress)


def _logits(rows, m, lossless) -> list[float]:
    """Each image's logit under a setting (m None: no half-size read)."""
    return [n if h is None or m is None or (lossless and jpg) else max(n, h - m) for _, n, h, jpg in rows]


def _auc(rows, m, lossless):
    from ganscan.detectors.metrics import roc_auc

    return roc_auc([r[0] for r in rows], _logits(rows, m, lossless))


def threshold_and_tpr(fit: dict, calib: dict, m, lossless) -> tuple[float, float]:
    """(the threshold by the fusion's rule on the calibration reads, the mean clean TPR of the fit sets there)."""
    import math

    from ganscan.detectors.zoo.fusion import threshold_at_fpr

    def sig(v):
        return 1.0 / (1.0 + math.exp(-v))

    t, _ = threshold_at_fpr({k: [sig(v) for v in _logits(c["none"], m, lossless)] for k, c in calib.items()}, 0.05)
    tprs = []
    for sets in fit.values():
        rows = [r for r in sets["none"] if r[0] == 1]
        tprs.append(sum(sig(v) >= t for v in _logits(rows, m, lossless)) / len(rows))
    return t, sum(tprs) / len(tprs)


def table(reads: dict, margins: list[float], lossless: bool = False) -> tuple[list[str], dict]:
    """Markdown rows: the AUC of every set and condition without the half-size read and for each margin (``lossless``:
    JPEG files keep their native score); {margin (None: no half-size read): [AUC per set and condition]}."""
    keys = [(s, c) for s in reads for c in CONDITIONS]
    lines = ["| margin | " + " | ".join(f"{s} {c}" for s, c in keys) + " | mean |",
             "|---|" + "---|" * (len(keys) + 1)]
    aucs = {}
    for m in [None, *margins]:
        aucs[m] = [_auc(reads[s][c], m, lossless) for s, c in keys]
        lines.append(f"| {'no half-size read' if m is None else f'{m:g}'} | "
                     + " | ".join(f"{a:.4f}" for a in aucs[m]) + f" | **{sum(aucs[m]) / len(keys):.4f}** |")
    return lines, aucs


def choose_v38(aucs: dict, margins: list[float]) -> float | None:
    """Rule v38: the margin with the highest mean AUC (ties: the larger), or None if it does not beat no read."""
    mean = {m: sum(a) / len(a) for m, a in aucs.items()}
    best = max(margins, key=lambda m: (mean[m], m))
    return best if mean[best] > mean[None] else None


def choose_v39(aucs_by_setting: dict, margins: list[float], tpr_ok=None) -> tuple | None:
    """Rule v39: ``aucs_by_setting`` maps (filter, lossless) to ``table``'s AUCs (conditions in CONDITIONS order per
    set). Eligible: no clean or JPEG-90 AUC more than 0.005 below no read's; chosen: the highest mean enlarged AUC
    (ties: larger margin, then box, then all files). (filter, lossless, margin), or None. ``tpr_ok(filter,
    lossless, margin)``, when given, must also hold (rule v40's limit on the threshold's cost)."""
    n = len(CONDITIONS)
    enlarged = CONDITIONS.index("bicubic:2")
    best, best_key = None, None
    for (filt, lossless), aucs in aucs_by_setting.items():
        base = aucs[None]
        for m in margins:
            a = aucs[m]
            if any(a[i] < base[i] - 0.005 for i in range(len(a)) if i % n != enlarged):
                continue
            if tpr_ok is not None and not tpr_ok(filt, lossless, m):
                continue
            up = [a[i] for i in range(len(a)) if i % n == enlarged]
            key = (sum(up) / len(up), m, filt == "box", not lossless)
            if best_key is None or key > best_key:
                best, best_key = (filt, lossless, m), key
    if best is None:
        return None
    base_up = [v for i, v in enumerate(next(iter(aucs_by_setting.values()))[None]) if i % n == enlarged]
    return best if best_key[0] > sum(base_up) / len(base_up) else None


ENLARGED_JPEG = "bicubic:2+jpeg:90"
JPEG_MARGINS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def v43_rows(half_reads: dict, v43: dict) -> dict:
    """``half_reads``' rows ([label, native, half or None, is a JPEG]) with the native logit replaced by v43's logit
    of the same file (``v43``: {set: {condition: [[label, logit], ...]}}, the same files in the same order)."""
    out = {}
    for name, conds in half_reads.items():
        out[name] = {}
        for c, rows in conds.items():
            other = v43[name][c]
            if len(other) != len(rows) or any(a[0] != b[0] for a, b in zip(rows, other)):
                raise SystemExit(f"error: the reads of {name} {c} do not line up (remove WORK/c45 and WORK/c48, rerun)")
            out[name][c] = [[y, o[1], h, jpg] for (y, _, h, jpg), o in zip(rows, other)]
    return out


def jpeg_logits(rows, mj) -> list[float]:
    """v44's logit: v43's, and for a JPEG with a half-size read the larger of it and half - ``mj`` (None: v43)."""
    return [v if mj is None or h is None or not jpg else max(v, h - mj) for _, v, h, jpg in rows]


def summary_v44(fit: dict, calib: dict, u2j: list, mj) -> dict:
    """AUCs per condition and set, the threshold (v10's rule on ``calib``), the mean clean fit TPR there and the share
    of ``u2j``'s rows flagged there, for JPEG margin ``mj``."""
    from ganscan.detectors.metrics import roc_auc
    from ganscan.detectors.zoo.fusion import threshold_at_fpr

    def sig(v):
        return 1.0 / (1.0 + math.exp(-v))

    conds = ("none", "jpeg:90", ENLARGED_JPEG)
    auc = {c: [roc_auc([r[0] for r in fit[s][c]], jpeg_logits(fit[s][c], mj)) for s in fit] for c in conds}
    t, _ = threshold_at_fpr({k: [sig(v) for v in jpeg_logits(c["none"], mj)] for k, c in calib.items()}, 0.05)
    tprs = []
    for s in fit:
        fakes = [r for r in fit[s]["none"] if r[0] == 1]
        tprs.append(sum(sig(v) >= t for v in jpeg_logits(fakes, mj)) / len(fakes))
    flagged = sum(sig(v) >= t for v in jpeg_logits(u2j, mj)) / len(u2j)
    reals = [r for s in fit for r in fit[s][ENLARGED_JPEG] if r[0] == 0]   # rule v46's (iv), pooled over the sets
    enlarged_reals = sum(sig(v) >= t for v in jpeg_logits(reals, mj)) / max(len(reals), 1)
    return {"auc": auc, "threshold": t, "tpr": sum(tprs) / len(tprs), "u2j": flagged, "enlarged_reals": enlarged_reals}


def choose_v44(summaries: dict, reals_limit: float | None = None):
    """Rule v44 on {margin (None: v43): summary_v44}: the chosen margin, or None. ``reals_limit`` (rule v46, 0.01):
    the share of the fit sets' enlarged-then-JPEG reals flagged may rise by at most that much."""
    base = summaries[None]
    best, best_key = None, None
    for mj, m in summaries.items():
        if mj is None:
            continue
        if any(a < b - 0.005 for a, b in zip(m["auc"]["none"], base["auc"]["none"])):
            continue
        if any(a < b - 0.002 for a, b in zip(m["auc"]["jpeg:90"], base["auc"]["jpeg:90"])):
            continue
        if m["tpr"] < base["tpr"] - 0.02 or m["u2j"] > base["u2j"] + 0.02:
            continue
        if reals_limit is not None and m["enlarged_reals"] > base["enlarged_reals"] + reals_limit:
            continue
        key = (sum(m["auc"][ENLARGED_JPEG]) / len(m["auc"][ENLARGED_JPEG]), mj)
        if best_key is None or key > best_key:
            best, best_key = mj, key
    base_mean = sum(base["auc"][ENLARGED_JPEG]) / len(base["auc"][ENLARGED_JPEG])
    return best if best is not None and best_key[0] >= base_mean + 0.05 else None


def small_jpegs_unread(reads: dict, sizes: dict, min_side: int) -> dict:
    """``reads`` with the half-size logit of every JPEG row whose smaller side is under ``min_side`` dropped (rule
    v45); ``sizes``: {set: [smaller side of each file]}; the enlarged condition doubles it."""
    out = {}
    for name, conds in reads.items():
        out[name] = {}
        for c, rows in conds.items():
            scale = 2 if c.startswith("bicubic:2") else 1
            out[name][c] = [[y, v, h if not jpg or scale * side >= min_side else None, jpg]
                            for (y, v, h, jpg), side in zip(rows, sizes[name])]
    return out


def rule_v44(args, held: Path, min_side: int = 0, reals_limit: float | None = None) -> None:
    """C50: v43's reads, and a half-size read for JPEG files at a margin of their own (C51, ``min_side`` 256: only
    for JPEG files at least that large)."""
    from ganscan.data.datasets import test_sets

    import overlap_tiles as ot   # it imports this module: imported here, not at the top

    fits, calibs = fit_sets(held), calib_sets(held)
    u2j_sets = test_sets(str(held / "calib-u2j"))
    c45, c48 = args.work / "c45", args.work / "c48"
    half = cached(c45 / "reads-lanczos.json", lambda: two_reads(args.model, fits, "lanczos"))
    half_calib = cached(c45 / "calib-lanczos.json",
                        lambda: two_reads(args.model, calibs, "lanczos", conditions=("none",)))
    enlarged = cached(c45 / "reads-lanczos-enlarged-jpeg.json",
                      lambda: two_reads(args.model, fits, "lanczos", conditions=(ENLARGED_JPEG,)))
    u2j = cached(c45 / "calib-u2j-lanczos.json",
                 lambda: two_reads(args.model, u2j_sets, "lanczos", conditions=("none",)))
    flags = {**ot.jpeg_flags(fits), **ot.jpeg_flags(calibs)}
    missing = [f for f in ("fit-0", "calib-0", "fit-16", "calib-16") if not (c48 / f"{f}.json").is_file()]
    if missing:
        sys.exit(f"error: {c48} lacks {', '.join(missing)} (python examples/overlap_tiles.py --work {args.work} makes them)")
    plain = {k: json.loads((c48 / f"{k}-0.json").read_text()) for k in ("fit", "calib")}
    over = {k: json.loads((c48 / f"{k}-16.json").read_text()) for k in ("fit", "calib")}
    fit = v43_rows({k: {c: v[c] for c in ("none", "jpeg:90")} for k, v in half.items()},
                   ot.mixed(plain["fit"], over["fit"], flags))
    for name in fit:   # 256 px JPEGs fill the tile cap: their native read is v43's
        fit[name][ENLARGED_JPEG] = enlarged[name][ENLARGED_JPEG]
    calib = v43_rows(half_calib, ot.mixed(plain["calib"], over["calib"], flags))
    if min_side:
        heads = {**ot.file_headers(fits), **ot.file_headers(calibs), **ot.file_headers(u2j_sets)}
        sizes = {name: [side for _, side in h] for name, h in heads.items()}
        fit, calib = small_jpegs_unread(fit, sizes, min_side), small_jpegs_unread(calib, sizes, min_side)
        u2j = small_jpegs_unread(u2j, sizes, min_side)
    u2j_rows = [r for s in u2j.values() for r in s["none"]]
    summaries = {mj: summary_v44(fit, calib, u2j_rows, mj) for mj in (None, *JPEG_MARGINS)}
    names = list(fit)
    conds = ("none", "jpeg:90", ENLARGED_JPEG)
    print("| JPEG margin | " + " | ".join(f"{n} {c}" for c in conds for n in names)
          + " | enlarged-JPEG mean | threshold | mean clean fit TPR | calib-u2j flagged | enlarged-JPEG reals flagged |")
    print("|---|" + "---|" * (3 * len(names) + 5))
    for mj, m in summaries.items():
        a = m["auc"]
        print(f"| {'none (v43)' if mj is None else f'{mj:g}'} | " + " | ".join(f"{v:.4f}" for c in conds for v in a[c])
              + f" | {sum(a[ENLARGED_JPEG]) / len(names):.4f} | {m['threshold']:.3f} | {100 * m['tpr']:.1f} % | "
              f"{100 * m['u2j']:.1f} % | {100 * m['enlarged_reals']:.1f} % |")
    best = choose_v44(summaries, reals_limit)
    print("\nchosen: " + ("nothing (no eligible JPEG margin gains 0.05 on the enlarged-then-JPEG fit sets)"
                          if best is None else f"--half-jpeg-margin {best:g}"))


def heldout(work: Path) -> Path:
    """``WORK/heldout``, or a one-line exit when the held-out sets have not been made."""
    held = work / "heldout"
    if not held.is_dir():
        sys.exit(f"error: {held} does not exist (python examples/train_twins.py --stage heldout makes it)")
    return held


def cached(path: Path, make) -> dict:
    """The reads kept at ``path`` by an earlier run, or ``make()``'s, kept there."""
    if path.exists():
        return json.loads(path.read_text())
    out = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/twins"))
    ap.add_argument("--model", default="ganscan-fusion-v10")
    ap.add_argument("--margins", default="0,0.5,1,1.5,2,3,4,6")
    ap.add_argument("--rule", choices=["v38", "v39", "v40", "v44", "v45", "v46"], default="v40")
    args = ap.parse_args()
    margins = [float(m) for m in args.margins.split(",") if m.strip()]
    if not margins or min(margins) < 0:
        sys.exit("error: --margins must list margins >= 0")
    held = heldout(args.work)
    if args.rule in ("v44", "v45", "v46"):
        rule_v44(args, held, 0 if args.rule == "v44" else 256, 0.01 if args.rule == "v46" else None)
        return
    filters = ("box",) if args.rule == "v38" else ("box", "lanczos")
    reads = {f: cached(args.work / "c45" / f"reads-{f}.json", lambda f=f: two_reads(args.model, fit_sets(held), f))
             for f in filters}
    if args.rule == "v38":
        lines, aucs = table(reads["box"], margins)
        print("\n".join(lines))
        best = choose_v38(aucs, margins)
        print("chosen margin: " + ("none (no margin beats leaving the half-size read out)" if best is None
                                   else f"{best:g}"))
        return
    by_setting = {}
    for f in filters:
        for lossless in (False, True):
            lines, by_setting[f, lossless] = table(reads[f], margins, lossless)
            print(f"\n{f} filter, {'lossless files only' if lossless else 'all files'}:\n" + "\n".join(lines))
    tpr_ok = None
    if args.rule == "v40":
        calib = {f: cached(args.work / "c45" / f"calib-{f}.json",
                           lambda f=f: two_reads(args.model, calib_sets(held), f, conditions=("none",)))
                 for f in filters}
        t0, tpr0 = threshold_and_tpr(reads["box"], calib["box"], None, False)
        print(f"\nwithout a half-size read: threshold {t0:.3f}, mean clean fit TPR {100 * tpr0:.1f} %")
        cost = {}
        for f in filters:
            for lossless in (False, True):
                for m in margins:
                    cost[f, lossless, m] = threshold_and_tpr(reads[f], calib[f], m, lossless)
                print(f"{f}, {'lossless only' if lossless else 'all files'}: " + "; ".join(
                    f"m {m:g}: {cost[f, lossless, m][0]:.3f}, {100 * cost[f, lossless, m][1]:.1f} %" for m in margins))

        def tpr_ok(f, lossless, m):
            return cost[f, lossless, m][1] >= tpr0 - 0.02

    best = choose_v39(by_setting, margins, tpr_ok)
    print("\nchosen: " + ("nothing (no eligible setting beats leaving the half-size read out)" if best is None else
                          f"--half-filter {best[0]}{' --half-lossless' if best[1] else ''} --half-margin {best[2]:g}"))


if __name__ == "__main__":
    main()
