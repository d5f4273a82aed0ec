"""Detection metrics in plain numpy: accuracy (overall, on real, on fake), AP, ROC-AUC, curves, and
threshold calibration.

Conventions: ``labels`` are 1 for fake and 0 for real; ``scores`` are P(fake) (higher = more fake); an
image is called fake when ``score >= threshold`` (the rule ``ganscan scan`` applies). A metric that a
set cannot define (AP on a real-only set, accuracy on fakes when there are none) is ``None``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} vs {s.size})")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y, s


def _ratio(num: int, den: int) -> float | None:
    return float(num) / float(den) if den else None


def accuracies(labels, scores, threshold: float = 0.5) -> dict:
    """accuracy, real_acc (true-negative rate), fake_acc (true-positive rate) at ``threshold``."""
    y, s = _arrays(labels, scores)
    pred = s >= threshold
    real, fake = y == 0, y == 1
    return {
        "accuracy": _ratio(int((pred == (y == 1)).sum()), y.size),
        "real_acc": _ratio(int((~pred & real).sum()), int(real.sum())),
        "fake_acc": _ratio(int((pred & fake).sum()), int(fake.sum())),
    }


def _distinct_desc(y: np.ndarray, s: np.ndarray):
    """Cumulative true/false positives at each distinct score, scores in decreasing order."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # index of the last element of each run of equal scores
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], y_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64), s_sorted[last]


def average_precision(labels, scores) -> float | None:
    """AP = sum_n (R_n - R_{n-1}) P_n over distinct score thresholds (no interpolation); ties count
    together. None when the set has no fakes (or no reals: AP would be trivially 1)."""
    y, s = _arrays(labels, scores)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    tps, fps, _ = _distinct_desc(y, s)
    precision = tps / (tps + fps)
    recall = tps / n_pos
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def roc_auc(labels, scores) -> float | None:
    """Area under the ROC curve = P(score of a random fake > score of a random real), ties count 1/2
    (Mann-Whitney U with mid-ranks). None unless both classes are present."""
    y, s = _arrays(labels, scores)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # mid-ranks for ties
    start = 0
    boundaries = np.r_[np.nonzero(np.diff(s_sorted))[0] + 1, s.size]
    for end in boundaries:
        ranks[order[start:end]] = (start + 1 + end) / 2.0
        start = end
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf."""
    y, s = _arrays(labels, scores)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    tps, fps, thr = _distinct_desc(y, s)
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.r_[0.0, np.zeros_like(tps)]
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.r_[0.0, np.zeros_like(fps)]
    return fpr, tpr, np.r_[np.inf, thr]


def pr_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at each distinct score, in order of increasing recall."""
    y, s = _arrays(labels, scores)
    n_pos = int(y.sum())
    tps, fps, thr = _distinct_desc(y, s)
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / n_pos if n_pos else np.zeros_like(tps)
    return precision, recall, thr


# --- threshold calibration --------------------------------------------------------------------------

@dataclass
class Calibration:
    threshold: float
    rule: str           # "eer", "fpr:0.05", "fixed:0.5"
    fpr: float | None   # on the calibration set, at ``threshold``
    fnr: float | None
    n_real: int
    n_fake: int

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"{self.rule}: threshold {self.threshold:.4g}"]
        if self.fpr is not None:
            parts.append(f"FPR {self.fpr:.3f}")
        if self.fnr is not None:
            parts.append(f"FNR {self.fnr:.3f}")
        return ", ".join(parts) + f" on {self.n_real} real / {self.n_fake} fake validation images"


def parse_rule(rule: str) -> tuple[str, float | None]:
    """``eer`` | ``fpr:X`` (0 <= X < 1) | ``fixed:T`` (0 <= T <= 1). Raises ValueError with a readable message."""
    text = (rule or "").strip().lower()
    if text == "eer":
        return "eer", None
    for kind in ("fpr", "fixed"):
        if text.startswith(kind + ":") or text.startswith(kind + "="):
            try:
                value = float(text[len(kind) + 1:])
            except ValueError:
                raise ValueError(f"threshold rule {rule!r}: {kind} needs a number, e.g. {kind}:0.05") from None
            if not (value >= 0 and (value < 1 if kind == "fpr" else value <= 1) and math.isfinite(value)):
                raise ValueError(f"threshold rule {rule!r}: value out of range")
            return kind, value
    raise ValueError(f"unknown threshold rule {rule!r} (use eer, fpr:0.05 or fixed:0.5)")


def _candidates(s: np.ndarray) -> np.ndarray:
    """Thresholds between consecutive distinct scores, plus one below the lowest and one above the
    highest, all inside [0, 1]."""
    u = np.unique(s)
    mids = (u[:-1] + u[1:]) / 2.0
    lo = max(0.0, u[0] / 2.0) if u.size else 0.0
    hi = min(1.0, (u[-1] + 1.0) / 2.0) if u.size else 1.0
    return np.unique(np.r_[lo, mids, hi])


def calibrate_threshold(labels, scores, rule: str = "eer") -> Calibration:
    """Pick the decision threshold on a labelled set.

    - ``eer``: where the false-positive rate (reals called fake) equals the false-negative rate (fakes
      called real), i.e. the threshold minimising |FPR - FNR| (ties: the lower FPR + FNR, then the
      lower threshold), placed half-way between two observed scores.
    - ``fpr:X``: the lowest threshold whose FPR on the reals is at most X (catch as many fakes as
      possible while calling at most a fraction X of real photos fake).
    - ``fixed:T``: T, with its FPR/FNR reported.
    """
    kind, value = parse_rule(rule)
    y, s = _arrays(labels, scores)
    real, fake = s[y == 0], s[y == 1]
    n_real, n_fake = int(real.size), int(fake.size)

    def rates(t: float) -> tuple[float | None, float | None]:
        fpr = float((real >= t).mean()) if n_real else None
        fnr = float((fake < t).mean()) if n_fake else None
        return fpr, fnr

    if kind == "fixed":
        t = float(value)
        return Calibration(t, f"fixed:{t:g}", *rates(t), n_real, n_fake)
    if kind == "eer" and (not n_real or not n_fake):
        raise ValueError("the equal-error-rate threshold needs both real and fake images")
    if not n_real:
        raise ValueError("a target false-positive rate needs real images")
    cands = _candidates(s)
    fpr = (real[None, :] >= cands[:, None]).mean(axis=1)
    if kind == "eer":
        fnr = (fake[None, :] < cands[:, None]).mean(axis=1)
        key = np.lexsort((cands, fpr + fnr, np.abs(fpr - fnr)))
        t = float(cands[key[0]])
        return Calibration(t, "eer", *rates(t), n_real, n_fake)
    # target false-positive rate
    ok = np.nonzero(fpr <= value + 1e-12)[0]
    t = float(cands[ok[0]]) if ok.size else 1.0
    return Calibration(t, f"fpr:{value:g}", *rates(t), n_real, n_fake)


def summarize(labels, scores, threshold: float = 0.5) -> dict:
    """Everything a results row holds: n_real, n_fake, accuracy, real_acc, fake_acc, ap, auc."""
    y, s = _arrays(labels, scores)
    return {"n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()), **accuracies(y, s, threshold),
            "ap": average_precision(y, s), "auc": roc_auc(y, s)}


def mean_row(rows: list[dict], keys=("accuracy", "real_acc", "fake_acc", "ap", "auc")) -> dict:
    """Mean of each metric over the rows that define it (None when none do); counts are summed."""
    out = {"n_real": sum(r.get("n_real", 0) for r in rows), "n_fake": sum(r.get("n_fake", 0) for r in rows)}
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def bce_with_logits(logits, labels) -> np.ndarray:
    """Per-sample binary cross-entropy, numerically stable."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def balanced_loss(logits, labels) -> float | None:
    """Mean of the per-class mean BCE: each class weighs half, whatever the imbalance."""
    y = np.asarray(labels)
    per = bce_with_logits(logits, labels)
    parts = [per[y == c].mean() for c in (0, 1) if (y == c).any()]
    return float(np.mean(parts)) if parts else None
