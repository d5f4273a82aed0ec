"""Evaluation on labelled test sets through scan's own code path.

Every file is scored by ``ganscan.detectors.inference.scan_batches``, the function ``ganscan scan`` runs
(same decoding, same preprocessing, same batched forward pass, same sigmoid), so ``evaluate`` and
``scan`` give the same score for the same file. Perturbed copies (``--perturb``) are written to a
temporary folder as files (JPEG at the given quality, PNG otherwise) and scored the same way.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ganscan.data.augment import apply_perturbation, perturbation_name
from ganscan.data.datasets import LabelledSet
from ganscan.data.decode import DEFAULT_MAX_PIXELS, DecodeError, load_image
from ganscan.detectors.load import LoadedDetector, column_names
from ganscan.detectors import metrics as M
from ganscan.core.device import Precision, worker_init
from ganscan.data.supervise import supervised_map
from ganscan.detectors.inference import ScanSettings, scan_batches

METRIC_KEYS = ("accuracy", "real_acc", "fake_acc", "ap", "auc")


@dataclass
class SetResult:
    name: str
    paths: list[str]
    labels: list[int]
    scores: list[float | None]          # None: unreadable
    errors: dict[str, str] = field(default_factory=dict)
    row: dict = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)   # a file's own threshold, where it has one

    def file_thresholds(self, threshold: float, paths: list[str]) -> np.ndarray:
        """Each of ``paths``' threshold: its own (a low-quality JPEG's, ``threshold_low_jpeg``) or ``threshold``."""
        return np.array([self.thresholds.get(p, threshold) for p in paths], dtype=np.float64)

    def scored(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        keep = [i for i, s in enumerate(self.scores) if s is not None]
        return (np.array([self.labels[i] for i in keep], dtype=np.int64),
                np.array([self.scores[i] for i in keep], dtype=np.float64), [self.paths[i] for i in keep])

    def misclassified(self, threshold: float, k: int) -> list[tuple[str, int, float]]:
        """The ``k`` most confident mistakes: (path, label, score), largest distance from the threshold first."""
        y, s, paths = self.scored()
        t = self.file_thresholds(threshold, paths)
        wrong = np.nonzero((s >= t) != (y == 1))[0]
        order = sorted(wrong, key=lambda i: (-abs(s[i] - t[i]), paths[i]))
        return [(paths[i], int(y[i]), float(s[i])) for i in order[:k]]


@dataclass
class EvalSettings:
    batch_size: int = 32
    workers: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS
    threshold: float | None = None
    low_jpeg: dict | None = None   # --low-jpeg-threshold (ScanSettings.low_jpeg)


def score_models(detectors: list[LoadedDetector], paths: list[str], precision: Precision, settings: EvalSettings,
                 progress: Callable[[int], None] | None = None,
                 qualities: dict | None = None) -> list[dict[str, tuple[float | None, str | None]]]:
    """For each detector, path -> (score, error) for every path, scored by scan's pipeline (no EXIF); each
    file is decoded once for all of them. ``qualities``: filled with path -> the estimated quality of every JPEG
    file (what a low-quality JPEG threshold needs)."""
    scan = ScanSettings(paths=tuple(paths), recursive=False, batch_size=settings.batch_size,
                        workers=settings.workers, max_pixels=settings.max_pixels, threshold=settings.threshold,
                        low_jpeg=settings.low_jpeg, read_exif=False, evidence=False)
    keys = [f"score_{n}" for n in column_names(detectors)] if len(detectors) > 1 else ["score"]
    out: list[dict[str, tuple[float | None, str | None]]] = [{} for _ in detectors]
    for rows in scan_batches(scan, detectors, precision):
        for r in rows:
            for scores, key in zip(out, keys):
                scores[r["path"]] = (r[key], (r.get("error") or r.get("note")) if r[key] is None else None)
            if qualities is not None and r.get("jpeg_quality") is not None:
                qualities[r["path"]] = r["jpeg_quality"]
        if progress:
            progress(len(rows))
    return out


def score_files(detector: LoadedDetector, paths: list[str], precision: Precision, settings: EvalSettings,
                progress: Callable[[int], None] | None = None) -> dict[str, tuple[float | None, str | None]]:
    """path -> (score, error) for every path, scored by scan's pipeline (no EXIF)."""
    return score_models([detector], paths, precision, settings, progress)[0]


def own_thresholds(det: LoadedDetector, qualities: dict, settings: EvalSettings) -> dict[str, float]:
    """path -> threshold for the JPEG files (``qualities``: path -> estimated quality) whose threshold is not the
    detector's (a low-quality JPEG: the checkpoint's ``threshold_low_jpeg``, or ``settings.low_jpeg``)."""
    base = det.threshold if settings.threshold is None else settings.threshold
    own = {p: det.threshold_for("JPEG", q, settings.threshold, settings.low_jpeg) for p, q in qualities.items()}
    return {p: t for p, t in own.items() if t != base}


def evaluate_set(s: LabelledSet, scores: dict, threshold: float, own: dict | None = None) -> SetResult:
    """One set's row at ``threshold``, or at a file's own threshold where ``own`` (path -> threshold) has one."""
    got = [scores.get(p, (None, "not scored")) for p in s.paths]
    res = SetResult(s.name, list(s.paths), list(s.labels), [g[0] for g in got])
    res.errors = {p: (g[1] or "unreadable") for p, g in zip(s.paths, got) if g[0] is None}
    res.thresholds = {p: own[p] for p in s.paths if own and p in own}
    y, sc, paths = res.scored()
    res.row = {"set": s.name, **M.summarize(y, sc, res.file_thresholds(threshold, paths) if res.thresholds
                                            else threshold), "unreadable": len(res.errors)}
    return res


def _perturb_file(src: str, dst_stem: str, kind: str, value: float, max_pixels: int) -> str | None:
    """Write the perturbed copy of ``src`` (JPEG at the given quality, PNG otherwise); its path, or None when
    ``src`` does not decode."""
    try:
        img, _ = load_image(src, max_pixels)
    except DecodeError:
        return None
    img, how = apply_perturbation(img, kind, value)
    jpeg = how.startswith("jpeg:")
    dst = dst_stem + (".jpg" if jpeg else ".png")
    opts = {"format": "JPEG", "quality": int(how.split(":")[1])} if jpeg else {"format": "PNG", "compress_level": 1}
    img.save(dst, **opts)
    return dst


def perturbed_copies(sets: list[LabelledSet], kind: str, value: float, folder: str, workers: int,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> list[LabelledSet]:
    """Write perturbed copies of every image of every set under ``folder`` (in supervised workers); the same
    sets, new paths. An image that does not decode gets a path that does not exist: scored, it is an error."""
    out = []
    for si, s in enumerate(sets):
        d = Path(folder) / f"{si:03d}"
        d.mkdir(parents=True, exist_ok=True)
        items = [(p, str(d / f"{i:07d}")) for i, p in enumerate(s.paths)]
        copies = supervised_map(lambda item: _perturb_file(*item, kind, value, max_pixels), items,
                                lambda _item, _reason: None, workers, init=worker_init)
        out.append(LabelledSet(s.name, [dst or str(d / "missing" / os.path.basename(p))
                                        for (p, _), dst in zip(items, copies)], list(s.labels)))
    return out


@dataclass
class EvalResult:
    threshold: float
    threshold_source: str
    sets: list[SetResult]
    mean: dict
    perturbations: list[dict]     # {"perturbation": name, "rows": [...], "mean": {...}}
    low_jpeg: dict | None = None  # the low-quality JPEG files' threshold in force ({"threshold", "max_quality"})

    def flat_rows(self) -> list[dict]:
        """One row per (perturbation, set) plus mean rows, with drops versus the clean run."""
        clean = {r.row["set"]: r.row for r in self.sets}
        clean["mean"] = self.mean
        groups = [{"perturbation": "none", "rows": [x.row for x in self.sets], "mean": self.mean},
                  *self.perturbations]
        rows = [{"perturbation": g["perturbation"], **r}
                for g in groups for r in [*g["rows"], {**g["mean"], "set": "mean"}]]
        cols = ["perturbation", "set", "n_real", "n_fake", *METRIC_KEYS, "unreadable"]
        out = []
        for r in rows:
            row = {k: r.get(k) for k in cols}
            base = clean.get(r["set"], {})
            for k in ("accuracy", "ap", "auc"):
                none = r["perturbation"] == "none" or r.get(k) is None or base.get(k) is None
                row[f"drop_{k}"] = None if none else base[k] - r[k]
            out.append(row)
        return out

    def as_dict(self) -> dict:
        return {"threshold": self.threshold, "threshold_source": self.threshold_source,
                **({"threshold_low_jpeg": self.low_jpeg} if self.low_jpeg else {}),
                "sets": [s.row for s in self.sets], "mean": self.mean, "perturbations": self.perturbations,
                "rows": self.flat_rows()}


def evaluate(detector: LoadedDetector, sets: list[LabelledSet], precision: Precision, settings: EvalSettings,
             perturbations: list[tuple[str, float]] = (), progress: Callable[[int], None] | None = None) -> EvalResult:
    """Score every set (and its perturbed copies) and compute the per-set rows and the mean row."""
    return evaluate_models([detector], sets, precision, settings, perturbations, progress)[0]


def evaluate_models(detectors: list[LoadedDetector], sets: list[LabelledSet], precision: Precision,
                    settings: EvalSettings, perturbations: list[tuple[str, float]] = (),
                    progress: Callable[[int], None] | None = None) -> list[EvalResult]:
    """``evaluate`` for several detectors, one result each; every file (and perturbed copy) is decoded once."""
    thresholds = [d.threshold if settings.threshold is None else float(settings.threshold) for d in detectors]
    all_paths = [p for s in sets for p in s.paths]
    q: dict = {}
    scores = score_models(detectors, list(dict.fromkeys(all_paths)), precision, settings, progress, q)
    clean = [[evaluate_set(s, sc, t, own_thresholds(d, q, settings)) for s in sets]
             for d, sc, t in zip(detectors, scores, thresholds)]
    perturbed: list[list[dict]] = [[] for _ in detectors]
    for kind, value in perturbations:
        with tempfile.TemporaryDirectory(prefix="ganscan-perturb-") as tmp:
            psets = perturbed_copies(sets, kind, value, tmp, settings.workers, settings.max_pixels)
            pq: dict = {}
            pscores = score_models(detectors, [p for s in psets for p in s.paths], precision, settings, progress, pq)
            for d, out, sc, t in zip(detectors, perturbed, pscores, thresholds):
                own = own_thresholds(d, pq, settings)
                rows = [evaluate_set(s, sc, t, own).row for s in psets]
                out.append({"perturbation": perturbation_name(kind, value), "rows": rows, "mean": _mean(rows)})
    results = []
    for det, t, res, pert in zip(detectors, thresholds, clean, perturbed):
        source = "--threshold" if settings.threshold is not None else (
            f"model ({det.meta.get('threshold_rule')})" if det.meta.get("threshold_rule") else "model")
        low = settings.low_jpeg or (det.low_jpeg if settings.threshold is None else None)
        results.append(EvalResult(t, source, res, _mean([r.row for r in res]), pert, low))
    return results


def _mean(rows: list[dict]) -> dict:
    mean = M.mean_row(rows)
    mean["unreadable"] = sum(r["unreadable"] for r in rows)
    return mean
