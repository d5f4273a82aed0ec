"""Could a detector tell the classes apart by file format alone? (the format shortcut of RESEARCH.md)

A file's *format signature* is what a shortcut could use without looking at the pixels: container format,
JPEG quantisation tables (as the nearest IJG quality, or "custom"), chroma subsampling, width and height.
``format_separability`` returns the balanced accuracy of the best possible classifier that sees only the
signature, on the given labelled set: for each signature it picks the class with the larger share. That is an
exact upper bound for every format-only detector on this data: 0.5 means format tells nothing, 1.0 means
format alone separates real from fake.
"""

from __future__ import annotations

from collections import Counter

from ganscan.data.datasets import LabelledSet


def format_signature(path: str) -> tuple:
    """(format, JPEG quality, subsampling, width, height) from the file's header; ("unreadable",) on failure."""
    from PIL import Image, JpegImagePlugin

    from ganscan.data.decode import register_plugins
    from ganscan.data.provenance import jpeg_quality

    register_plugins()
    try:
        with Image.open(path) as im:
            q = s = None
            if im.format == "JPEG":
                tables = getattr(im, "quantization", None) or {}
                q = jpeg_quality(tables) if tables else None
                q = q if q is not None else "custom"
                s = JpegImagePlugin.get_sampling(im)
            return (im.format, q, s, im.size[0], im.size[1])
    except Exception:  # noqa: BLE001 - any unreadable header is its own signature
        return ("unreadable",)


def format_separability(data: LabelledSet, max_files: int | None = None) -> dict:
    """{"balanced_accuracy": best format-only balanced accuracy, "signatures": distinct signatures,
    "files": files read, "top": the most class-skewed common signatures}."""
    idx = list(range(len(data)))
    if max_files is not None and len(idx) > max_files:
        step = len(idx) / max_files
        idx = [idx[int(i * step)] for i in range(max_files)]
    counts: dict[tuple, Counter] = {}
    n = Counter()
    for i in idx:
        sig = format_signature(data.paths[i])
        counts.setdefault(sig, Counter())[data.labels[i]] += 1
        n[data.labels[i]] += 1
    if not n[0] or not n[1]:
        return {"balanced_accuracy": None, "signatures": len(counts), "files": len(idx), "top": []}
    best = 0.5 * sum(max(c[0] / n[0], c[1] / n[1]) for c in counts.values())
    skew = sorted(counts.items(), key=lambda kv: -abs(kv[1][0] / n[0] - kv[1][1] / n[1]))[:5]
    top = [{"signature": list(sig), "real": c[0], "fake": c[1]} for sig, c in skew]
    return {"balanced_accuracy": round(best, 4), "signatures": len(counts), "files": len(idx), "top": top}


def describe(result: dict) -> str:
    b = result["balanced_accuracy"]
    if b is None:
        return "format check: needs both classes"
    verdict = "format tells the classes apart: a detector can cheat" if b >= 0.75 else (
        "format leaks some class information" if b >= 0.6 else "format alone cannot separate the classes")
    return (f"format check: the best format-only classifier (format, JPEG tables, subsampling, size) reaches "
            f"balanced accuracy {b:.3f} on the training data (0.5 = chance; {result['signatures']} signatures "
            f"in {result['files']} files): {verdict}")
