"""Where the detector fires: patch scores over the whole image, plus the image's spectrum."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ganscan.data.decode import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS
from ganscan.detectors.preprocess import normalize
from ganscan.detectors.load import LoadedDetector
from ganscan.core.device import Precision
from ganscan.detectors.inference import forward_logits, prepare_model, sigmoid
from ganscan.detectors.spectrum import azimuthal_profile, load_reference, log_power_spectrum


def patch_grid(h: int, w: int, size: int, max_patches: int) -> tuple[list[tuple[int, int]], int]:
    """Top-left corners of ``size`` patches covering the image; the stride grows to keep at most
    ``max_patches`` (so a 12 MP photo stays a few seconds on a CPU)."""
    if h < size or w < size:
        return [(0, 0)], size
    stride = size
    while ((h - size) // stride + 1) * ((w - size) // stride + 1) > max_patches:
        stride = int(math.ceil(stride * 1.25))
    return [(y, x) for y in range(0, h - size + 1, stride) for x in range(0, w - size + 1, stride)], stride


def patch_scores(det: LoadedDetector, arr: np.ndarray, precision: Precision, max_patches: int = 256,
                 batch: int = 32, jpeg: bool = False) -> tuple[np.ndarray, list[tuple[int, int]], int]:
    """P(fake) of each patch of a grid over the image; ``jpeg``: the file is a JPEG (a fusion with a JPEG branch
    reads its patches with that branch, as scan does)."""
    size = det.config.input_size
    coords, stride = patch_grid(arr.shape[0], arr.shape[1], size, max_patches)
    from ganscan.detectors.preprocess import center_crop_array

    model = prepare_model(det.model, precision)
    scores = []
    for i in range(0, len(coords), batch):
        views = np.stack([center_crop_array(arr[y:y + size, x:x + size], size) for y, x in coords[i:i + batch]])
        t = normalize(views, det.config)
        logits = forward_logits(model, list(t.unsqueeze(1)), precision, max_batch=batch, jpeg=[jpeg] * len(t))
        scores.extend(sigmoid(v) for v in logits)
    return np.asarray(scores), coords, stride


def explain_images(det: LoadedDetector, paths, out_dir: Path, precision: Precision, max_patches: int = 256,
                   file_timeout: float | None = DEFAULT_FILE_TIMEOUT, max_bytes: int = DEFAULT_MAX_DECODE_BYTES,
                   on_error=None, progress=None) -> list[dict]:
    """Explain every image into ``out_dir``: its PNGs and ``<stem>.json``, then ``summary.json`` for all.

    Decoding runs in a supervised worker: a file that crashes or hangs the decoder gets its error (told to
    ``on_error(path, error)``) in the summary instead of stopping the run."""
    from ganscan.data.supervise import decoded_images

    results = []
    for path, img, info, error in decoded_images(paths, DEFAULT_MAX_PIXELS, file_timeout, max_bytes):
        if error is not None:
            summary = {"path": path, "error": error}
            if on_error is not None:
                on_error(path, error)
        else:
            summary = explain_image(det, path, img, out_dir, precision, max_patches,
                                    jpeg=getattr(info, "format", None) == "JPEG")
            (out_dir / f"{Path(path).stem}.json").write_text(json.dumps(summary, indent=2))
        results.append(summary)
        if progress is not None:
            progress.update(advance=1)
    (out_dir / "summary.json").write_text(json.dumps(results, indent=2))
    return results


def explain_image(det: LoadedDetector, path: str, img, out_dir: Path, precision: Precision,
                  max_patches: int = 256, jpeg: bool = False) -> dict:
    """Heatmap, spectrum and profile PNGs plus the summary of one decoded image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = Path(path).stem
    files = {}

    def save(fig, kind):
        files[kind] = str(out_dir / f"{stem}.{kind}.png")
        fig.savefig(files[kind], dpi=100, bbox_inches="tight")
        plt.close(fig)

    arr = np.array(img)
    h, w = arr.shape[:2]
    scores, coords, stride = patch_scores(det, arr, precision, max_patches, jpeg=jpeg)
    size = det.config.input_size
    # the map is drawn over a display copy of at most ~1600 px (the figure is 800 px wide anyway)
    f = max(1, int(math.ceil(max(h, w) / 1600)))
    shown = np.asarray(img.reduce(f)) if f > 1 else arr
    heat = np.zeros(shown.shape[:2])
    cover = np.zeros(shown.shape[:2])
    cell = max(size, stride)  # each patch stands for its cell of the grid, so the map has no gaps
    for s, (y, x) in zip(scores, coords):
        heat[y // f:(y + cell) // f, x // f:(x + cell) // f] += s
        cover[y // f:(y + cell) // f, x // f:(x + cell) // f] += 1
    heat = np.where(cover > 0, heat / np.maximum(cover, 1), np.nan)

    fig, ax = plt.subplots(figsize=(8, 8 * h / w if w else 8))
    ax.imshow(shown)
    im = ax.imshow(heat, cmap="inferno", alpha=0.45, vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="P(fake) of the patch")
    ax.set_title(f"{Path(path).name}: patch scores ({det.label}{', PLACEHOLDER' if det.placeholder else ''})")
    ax.axis("off")
    save(fig, "heatmap")

    spec = log_power_spectrum(img)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(spec, cmap="magma")
    ax.set_title("log power spectrum (centre crop, Hann window)")
    ax.axis("off")
    save(fig, "spectrum")

    prof = azimuthal_profile(img)
    ref = load_reference()
    freqs = (np.arange(len(prof)) + 0.5) / len(prof) * 0.5
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(freqs, prof, label=Path(path).name)
    if ref is not None:
        ax.plot(freqs, ref, "--", label="mean real photo")
    ax.set_xlabel("spatial frequency (cycles/pixel)")
    ax.set_ylabel("mean log power (normalised)")
    ax.set_title("azimuthally averaged spectrum")
    ax.legend()
    save(fig, "profile")

    hi = slice(len(prof) * 3 // 4, None)
    return {
        "path": path, "width": w, "height": h, "model": det.label, "placeholder": det.placeholder,
        "weights_sha256": det.sha256, "patch_size": size, "stride": stride, "patches": len(coords),
        "patch_score_mean": float(scores.mean()), "patch_score_max": float(scores.max()),
        "patch_score_min": float(scores.min()),
        "fraction_patches_over_threshold": float((scores >= det.threshold).mean()),
        "threshold": det.threshold,
        "high_frequency_power_vs_real": (float(prof[hi].mean() / ref[hi].mean()) if ref is not None else None),
        "spectrum_profile": [round(float(v), 5) for v in prof],
        "files": files,
    }
