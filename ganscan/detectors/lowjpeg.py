"""A second threshold for low-quality JPEG files (rule ``docs/selection-rule-v54.txt``).

A detector's scores stay as they are; a JPEG file whose estimated quality (``ganscan.data.provenance.jpeg_quality``
of its own quantization tables) is at most ``max_quality`` is called fake at ``threshold_low_jpeg.threshold``, every
other file at the checkpoint's ``threshold``. Real photos enlarged and then saved at a low JPEG quality read as
generated to the fused default far more often than any other kind of real photo; their own threshold keeps them at
the false-positive rate of the others without moving the scores, the ranking (AUC, AP) or the verdicts on any other
file. ``LoadedDetector.threshold_for`` applies it; ``--threshold`` replaces both.
"""

from __future__ import annotations

MAX_QUALITY = 80


def file_quality(path: str) -> int | None:
    """The estimated JPEG quality of a file's own tables; None for a file that is not a readable JPEG."""
    from PIL import Image

    from ganscan.data.provenance import jpeg_quality

    try:
        with Image.open(path) as im:
            return jpeg_quality(im.quantization) if im.format == "JPEG" and im.quantization else None
    except OSError:
        return None


def low_quality(quality: int | None, max_quality: int = MAX_QUALITY) -> bool:
    return quality is not None and quality <= max_quality


def low_jpeg_threshold(scores: dict[str, list[tuple[float, int | None]]], threshold: float, fpr: float,
                       max_quality: int = MAX_QUALITY) -> tuple[float, dict]:
    """(threshold, {kind: its low-quality part's FPR there}) from {kind: [(score, JPEG quality or None), ...]}: the
    lowest threshold, never below ``threshold``, at which no kind's JPEG files of quality at most ``max_quality``
    are flagged more than ``fpr`` of the time (kinds without such files are left out)."""
    from ganscan.detectors.zoo.fusion import threshold_at_fpr

    parts = {k: [s for s, q in v if low_quality(q, max_quality)] for k, v in scores.items()}
    parts = {k: v for k, v in parts.items() if v}
    t, _ = threshold_at_fpr(parts, fpr) if parts else (threshold, {})
    t = max(t, threshold)
    return t, {k: sum(s >= t for s in v) / len(v) for k, v in parts.items()}


def calibrate_thresholds(det, calib_sets: list, fpr: float, precision, settings, max_quality: int | None = None,
                         keep: bool = False, progress=None) -> dict:
    """Checkpoint metadata from one scoring pass over the real images of each calibration kind (one set per kind, in
    ``precision`` through scan's pipeline; ``progress(n)`` follows the files): unless ``keep``, the threshold at
    ``fpr`` on every kind (``threshold``, ``threshold_rule``, ``threshold_calibration``, ``threshold_precision``, as
    ``fusion.calibrate``); with ``max_quality``, ``threshold_low_jpeg`` for JPEG files of that quality or less, never
    below the (new or kept) threshold."""
    from ganscan.detectors.evaluate import score_models
    from ganscan.detectors.zoo.fusion import reals_by_kind, threshold_meta, threshold_rule
    from ganscan.errors import DataError

    reals = reals_by_kind(calib_sets)
    quality: dict = {}   # path -> estimated JPEG quality, read by the scan that scores the file
    got = score_models([det], [p for files in reals.values() for p in files], precision, settings, progress,
                       quality)[0]
    meta = {} if keep else threshold_meta(reals, got, fpr, precision)
    if max_quality is None:
        return meta
    scored = {k: [(got[p][0], quality.get(p)) for p in files if got.get(p, (None,))[0] is not None]
              for k, files in reals.items()}
    if not any(low_quality(q, max_quality) for v in scored.values() for _, q in v):
        raise DataError(f"no calibration kind holds a JPEG file of quality {max_quality} or less")
    t, rates = low_jpeg_threshold(scored, meta.get("threshold", det.threshold), fpr, max_quality)
    meta["threshold_low_jpeg"] = {
        "threshold": t, "max_quality": max_quality, "rule": threshold_rule(fpr) + " (its JPEG files of quality "
        f"{max_quality} or less), never below the threshold", "fpr_by_kind": rates,
        "n_by_kind": {k: sum(low_quality(q, max_quality) for _, q in v) for k, v in scored.items()
                      if any(low_quality(q, max_quality) for _, q in v)},
        "precision": precision.name}
    return meta
