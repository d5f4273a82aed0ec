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
from ganscan.detectors.load import LoadedDetector
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

    def scored(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        keep = [i for i, s in enumerate(self.scores) if s is not None]
        return (np.array([self.labels[i] for i in keep], dtype=np.int64),
                np.array([self.scores[i] for i in keep], dtype=np.float64), [self.paths[i] for i in keep])

    def misclassified(self, threshold: float, k: int) -> list[tuple[str, int, float]]:
        """The ``k`` most confident mistakes: (path, label, score), largest distance from the threshold first."""
        y, s, paths = self.scored()
        wrong = np.nonzero((s >= threshold) != (y == 1))[0]
        order = sorted(wrong, key=lambda i: (-abs(s[i] - threshold), paths[i]))
        return [(paths[i], int(y[i]), float(s[i])) for i in order[:k]]


@dataclass
class EvalSettings:
    batch_size: int = 32
    workers: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS
    threshold: float | None = None


def score_files(detector: LoadedDetector, paths: list[str], precision: Precision, settings: EvalSettings,
                progress: Callable[[int], None] | None = None) -> dict[str, tuple[float | None, str | None]]:
    """path -> (score, error) for every path, scored by scan's pipeline (no EXIF)."""
    scan = ScanSettings(paths=tuple(paths), recursive=False, batch_size=settings.batch_size,
                        workers=settings.workers, max_pixels=settings.max_pixels, threshold=settings.threshold,
                        read_exif=False, evidence=False)
    out: dict[str, tuple[float | None, str | None]] = {}
    for rows in scan_batches(scan, detector, precision):
        for r in rows:
            out[r["path"]] = (r["score"], r.get("error") or r.get("note") if r["score"] is None else None)
        if progress:
            progress(len(rows))
    return out


def evaluate_set(s: LabelledSet, scores: dict, threshold: float) -> SetResult:
    res = SetResult(s.name, list(s.paths), list(s.labels), [scores.get(p, (None, "not scored"))[0] for p in s.paths])
    res.errors = {p: (scores.get(p, (None, "not scored"))[1] or "unreadable") for p, sc in zip(s.paths, res.scores)
                  if sc is None}
    y, sc, _ = res.scored()
    row = {"set": s.name}
    row.update(M.summarize(y, sc, threshold))
    row["unreadable"] = len(res.errors)
    res.row = row
    return res


def _perturb_file(src: str, dst_stem: str, kind: str, value: float, max_pixels: int) -> str | None:
    """Write the perturbed copy of ``src`` (JPEG at the given quality, PNG otherwise); its path, or None when
    ``src`` does not decode."""
    try:
        img, _ = load_image(src, max_pixels)
    except DecodeError:
        return None
    img, how = apply_perturbation(img, kind, value)
    if how.startswith("jpeg:"):
        img.save(dst_stem + ".jpg", format="JPEG", quality=int(how.split(":")[1]))
        return dst_stem + ".jpg"
    img.save(dst_stem + ".png", format="PNG", compress_level=1)
    return dst_stem + ".png"


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
        ns = LabelledSet(s.name)
        for (p, _), y, dst in zip(items, s.labels, copies):
            ns.paths.append(dst or str(d / "missing" / os.path.basename(p)))
            ns.labels.append(y)
        out.append(ns)
    return out


@dataclass
class EvalResult:
    threshold: float
    threshold_source: str
    sets: list[SetResult]
    mean: dict
    perturbations: list[dict]     # {"perturbation": name, "rows": [...], "mean": {...}}

    def flat_rows(self) -> list[dict]:
        """One row per (perturbation, set) plus mean rows, with drops versus the clean run."""
        clean = {r.row["set"]: r.row for r in self.sets}
        clean["mean"] = self.mean
        rows = []
        for r in [*(x.row for x in self.sets), {**self.mean, "set": "mean"}]:
            rows.append({"perturbation": "none", **r})
        for p in self.perturbations:
            for r in [*p["rows"], {**p["mean"], "set": "mean"}]:
                rows.append({"perturbation": p["perturbation"], **r})
        cols = ["perturbation", "set", "n_real", "n_fake", *METRIC_KEYS, "unreadable"]
        out = []
        for r in rows:
            row = {k: r.get(k) for k in cols}
            base = clean.get(r["set"], {})
            for k in ("accuracy", "ap", "auc"):
                if r["perturbation"] == "none" or r.get(k) is None or base.get(k) is None:
                    row[f"drop_{k}"] = None
                else:
                    row[f"drop_{k}"] = base[k] - r[k]
            out.append(row)
        return out

    def as_dict(self) -> dict:
        return {"threshold": self.threshold, "threshold_source": self.threshold_source,
                "sets": [s.row for s in self.sets], "mean": self.mean, "perturbations": self.perturbations,
                "rows": self.flat_rows()}


def evaluate(detector: LoadedDetector, sets: list[LabelledSet], precision: Precision, settings: EvalSettings,
             perturbations: list[tuple[str, float]] = (), progress: Callable[[int], None] | None = None) -> EvalResult:
    """Score every set (and its perturbed copies) and compute the per-set rows and the mean row."""
    threshold = detector.threshold if settings.threshold is None else float(settings.threshold)
    source = "--threshold" if settings.threshold is not None else (
        f"model ({detector.meta.get('threshold_rule')})" if detector.meta.get("threshold_rule") else "model")
    all_paths = [p for s in sets for p in s.paths]
    scores = score_files(detector, list(dict.fromkeys(all_paths)), precision, settings, progress)
    results = [evaluate_set(s, scores, threshold) for s in sets]
    mean = M.mean_row([r.row for r in results])
    mean["unreadable"] = sum(r.row["unreadable"] for r in results)
    pert_out = []
    for kind, value in perturbations:
        name = perturbation_name(kind, value)
        with tempfile.TemporaryDirectory(prefix="ganscan-perturb-") as tmp:
            psets = perturbed_copies(sets, kind, value, tmp, settings.workers, settings.max_pixels)
            ppaths = [p for s in psets for p in s.paths]
            pscores = score_files(detector, ppaths, precision, settings, progress)
            prs = [evaluate_set(s, pscores, threshold) for s in psets]
        prow = [r.row for r in prs]
        pm = M.mean_row(prow)
        pm["unreadable"] = sum(r["unreadable"] for r in prow)
        pert_out.append({"perturbation": name, "rows": prow, "mean": pm})
    return EvalResult(threshold, source, results, mean, pert_out)
