"""Evidence beside the detector's score: perceptual hashes, generator metadata, C2PA, JPEG quality.

Every function here is defensive: malformed metadata gives an ``invalid`` signal, never an exception.
"""

from __future__ import annotations

import functools
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

# --- perceptual hashes ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _dct_matrix(n: int = 32) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


def _bits_hex(bits: np.ndarray) -> str:
    value = 0
    for b in bits.reshape(-1):
        value = (value << 1) | int(b)
    return f"{value:0{len(bits.reshape(-1)) // 4}x}"


def _grey(img: Image.Image) -> Image.Image:
    return img if img.mode == "L" else img.convert("L")


def phash(img: Image.Image) -> str:
    """64-bit DCT perceptual hash (hex): low 8x8 DCT frequencies of a 32x32 greyscale copy vs their median. A
    greyscale (L) image is read as it is: convert once for both hashes."""
    g = np.asarray(_grey(img).resize((32, 32), Image.BILINEAR), dtype=np.float64)
    d = _dct_matrix(32)
    low = (d @ g @ d.T)[:8, :8].reshape(-1)
    return _bits_hex(low > np.median(low[1:]))


def dhash(img: Image.Image) -> str:
    """64-bit difference hash (hex): is each pixel brighter than its right neighbour, on a 9x8 greyscale."""
    g = np.asarray(_grey(img).resize((9, 8), Image.BILINEAR), dtype=np.int16)
    return _bits_hex(g[:, 1:] > g[:, :-1])


REPEAT_SIDE = 512    # repeated_lines reads the central square of at most this many pixels a side
REPEAT_FLAG = 0.25   # share of repeated lines from which the score is flagged (nearest 1.5x repeats 1 in 3)


def repeated_lines(img: Image.Image) -> float | None:
    """Share of the rows and columns that repeat their neighbour exactly, among those that are not flat.
    Nearest-neighbour up-scaling repeats lines (1 in 2 at 2x, 1 in 3 at 1.5x); a camera photo almost never
    does. Read on the central square of at most REPEAT_SIDE pixels; None when it has fewer than 8 lines."""
    w, h = img.size
    side_w, side_h = min(w, REPEAT_SIDE), min(h, REPEAT_SIDE)
    if min(side_w, side_h) < 8:
        return None
    left, top = (w - side_w) // 2, (h - side_h) // 2
    crop = img.crop((left, top, left + side_w, top + side_h))
    a = np.asarray(crop.convert("RGB") if crop.mode != "RGB" else crop)[..., 1]   # green: resampled as the rest
    same, lines = 0, 0
    for m in (a, a.T):                                        # rows, then columns
        varied = (m != m[:, :1]).any(axis=1)                  # a flat line repeats anything flat: not counted
        rep = (m[1:] == m[:-1]).all(axis=1) & varied[1:]
        same, lines = same + int(rep.sum()), lines + int(varied[1:].sum())
    return same / lines if lines else None


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


# --- generator metadata -----------------------------------------------------------------------------

GENERATOR_TEXT_KEYS = ("parameters", "prompt", "workflow", "negative_prompt", "sd-metadata", "dream",
                       "invokeai_metadata", "generation_data", "aigc", "ai_metadata", "seed", "model")
GENERATOR_SOFTWARE = re.compile(
    r"stable.?diffusion|midjourney|dall.?e|firefly|comfyui|automatic1111|novelai|invokeai|imagen|"
    r"stylegan|progan|ganscan|diffusers|leonardo|flux|sdxl|ideogram|gan\b", re.I)
EDITOR_SOFTWARE = re.compile(r"photoshop|lightroom|gimp|affinity|pixelmator|capture one|snapseed|paint\.net", re.I)
AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
                   "compositeSynthetic", "trainedAlgorithmicData")
CAMERA_SOURCE_TYPES = ("digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print")

_XMP_RE = re.compile(rb"<x:xmpmeta.*?</x:xmpmeta>", re.S)
_XMP_START = re.compile(rb"<x:xmpmeta")


def image_text(img: Image.Image) -> dict[str, str]:
    """All text chunks of a decoded file (PNG tEXt/iTXt/zTXt and other string ``info`` entries)."""
    items = {}
    try:
        items.update(getattr(img, "text", None) or {})
    except Exception:  # reading PNG text can fail on damaged chunks after the image data
        pass
    for k, v in img.info.items():
        if isinstance(v, str) and k not in items:
            items[k] = v
    return {str(k): str(v) for k, v in items.items()}


def generator_text(items: dict[str, str]) -> dict[str, str]:
    """The text chunks a generator may have written (``parameters``, ``prompt``, ``workflow``, ...)."""
    out = {}
    for k, v in items.items():
        if not isinstance(v, str):
            continue
        if k.lower() in GENERATOR_TEXT_KEYS or GENERATOR_SOFTWARE.search(v[:2000] if k.lower() == "software" else ""):
            out[k] = v[:500]
    return out


def read_xmp(data: bytes) -> dict:
    """``status`` (absent/valid/invalid), ``creator_tool`` and ``digital_source_type`` from embedded XMP."""
    res = {"status": "absent", "creator_tool": None, "digital_source_type": None}
    m = _XMP_RE.search(data)
    if m is None:
        if _XMP_START.search(data):
            res["status"] = "invalid"  # an opening tag without its end: cut or damaged
        return res
    packet = m.group(0)[:1_000_000]
    try:
        if b"<!ENTITY" in packet or b"<!DOCTYPE" in packet:
            raise ValueError("XMP with DTD refused")
        ET.fromstring(packet)
        res["status"] = "valid"
    except (ET.ParseError, ValueError):
        res["status"] = "invalid"
    text = packet.decode("utf-8", "replace")
    tool = re.search(r"CreatorTool(?:=\"([^\"]*)\"|>([^<]*)<)", text)
    if tool:
        res["creator_tool"] = (tool.group(1) or tool.group(2) or "").strip()[:200] or None
    dst = re.search(r"DigitalSourceType(?:=\"([^\"]*)\"|>([^<]*)<|[^>]*rdf:resource=\"([^\"]*)\")", text)
    if dst:
        val = next(g for g in dst.groups() if g is not None).strip()
        res["digital_source_type"] = val.rsplit("/", 1)[-1][:200] or None
    return res


_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff",
         "HEIF": "image/heif", "AVIF": "image/avif", "GIF": "image/gif"}


@functools.lru_cache(maxsize=1)
def _c2pa_module():
    try:
        import c2pa  # noqa: F401

        return c2pa
    except Exception:
        return None


def read_c2pa(data: bytes, fmt: str | None) -> dict:
    """C2PA Content Credentials: ``status`` present/valid/invalid/absent/not checked, ``claim_generator``."""
    res = {"status": "absent", "claim_generator": None}
    if b"c2pa" not in data and b"jumb" not in data:
        return res  # no JUMBF box anywhere: nothing to validate
    mod = _c2pa_module()
    if mod is None or fmt not in _MIME:
        res["status"] = "not checked"
        return res
    try:
        import json

        reader = mod.Reader(_MIME[fmt], io.BytesIO(data))
        store = json.loads(reader.json())
    except Exception as exc:
        name = type(exc).__name__
        res["status"] = "absent" if "NotFound" in name or "not found" in str(exc).lower() else "invalid"
        return res
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    gen = active.get("claim_generator") or (active.get("claim_generator_info") or [{}])[0].get("name")
    res["claim_generator"] = str(gen)[:200] if gen else None
    errors = [s for s in store.get("validation_status") or [] if "error" in str(s.get("code", "")).lower()
              or str(s.get("code", "")).endswith(("mismatch", "invalid", "untrusted"))]
    res["status"] = "invalid" if errors else "valid"
    return res


# --- JPEG quality -----------------------------------------------------------------------------------

_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)


def _ijg_table(q: int) -> np.ndarray:
    scale = 5000 / q if q < 50 else 200 - 2 * q
    return np.clip(np.floor((_IJG_LUMA * scale + 50) / 100), 1, 255)


def jpeg_quality(tables: dict) -> int | None:
    """Estimated IJG quality (1-100) from the luminance quantisation table; order-independent."""
    fit = _ijg_fit(tables)
    return fit[0] if fit else None


def standard_tables(tables: dict) -> bool:
    """True when the luminance table is exactly libjpeg's scaled standard table: what software encoders
    (libjpeg, Pillow, most editors and web pipelines) write, and most camera firmware does not."""
    fit = _ijg_fit(tables)
    return bool(fit) and fit[1] == 0


def _ijg_fit(tables: dict) -> tuple[int, float] | None:
    if not tables:
        return None
    luma = np.sort(np.asarray(list(tables.get(0, next(iter(tables.values())))), dtype=np.float64))
    if luma.size != 64:
        return None
    errs = [np.abs(np.sort(_ijg_table(q)) - luma).sum() for q in range(1, 101)]
    best = int(np.argmin(errs))
    return best + 1, float(errs[best])


# --- all signals for one file -----------------------------------------------------------------------

def provenance(data: bytes, fmt: str | None, text: dict | None, quantization: dict | None) -> dict:
    """Metadata columns for the report; ``text`` and ``quantization`` come from the decoder."""
    xmp = read_xmp(data)
    c2 = read_c2pa(data, fmt)
    text = generator_text(text or {})
    quality = jpeg_quality(quantization) if fmt == "JPEG" and quantization else None
    tables = ("standard" if standard_tables(quantization) else "custom") if quality is not None else None
    return {"xmp": xmp["status"], "xmp_creator_tool": xmp["creator_tool"],
            "digital_source_type": xmp["digital_source_type"], "c2pa": c2["status"],
            "c2pa_claim_generator": c2["claim_generator"], "generator_text": text or None,
            "jpeg_quality": quality, "jpeg_tables": tables}


def exif_dimensions(exif_tags: dict) -> tuple[int, int] | None:
    try:
        w = int(str(exif_tags.get("EXIF ExifImageWidth")).split()[0])
        h = int(str(exif_tags.get("EXIF ExifImageLength")).split()[0])
        return (w, h) if w > 0 and h > 0 else None
    except (TypeError, ValueError):
        return None


UNRELIABLE = ("low JPEG", "smaller", "resized", "up-scaled")   # flags after which the score decides nothing


def assess(row: dict, threshold: float, input_size: int, placeholder: bool, margin: float = 0.1) -> dict:
    """The combined ``evidence``: signals for generation, for a camera, reliability flags, and a verdict
    among ``fake (metadata)``, ``fake (detector)``, ``real``, ``inconclusive`` (or ``error``)."""
    gen, cam, flags = [], [], []
    if row.get("digital_source_type") in AI_SOURCE_TYPES:
        gen.append(f"IPTC DigitalSourceType {row['digital_source_type']}")
    elif row.get("digital_source_type") in CAMERA_SOURCE_TYPES:
        cam.append(f"IPTC DigitalSourceType {row['digital_source_type']}")
    if row.get("generator_text"):
        gen.append("generator text chunks: " + ", ".join(sorted(row["generator_text"]))[:120])
    for label, val in (("EXIF Software", row.get("exif_software")), ("XMP CreatorTool", row.get("xmp_creator_tool")),
                       ("C2PA claim generator", row.get("c2pa_claim_generator"))):
        if val and GENERATOR_SOFTWARE.search(val):
            gen.append(f"{label} {val}"[:120])
    if row.get("c2pa") == "valid":
        cam.append("valid C2PA manifest" + (f" ({row['c2pa_claim_generator']})" if row.get("c2pa_claim_generator") else ""))
    elif row.get("c2pa") == "invalid":
        flags.append("C2PA manifest invalid")
    if row.get("exif_make") and row.get("exif_model"):
        cam.append(f"camera EXIF {row['exif_make']} {row['exif_model']}"[:120])
    if row.get("exif_datetime_original"):
        cam.append("EXIF DateTimeOriginal")
    if row.get("gps_latitude") not in (None, 0.0):
        cam.append("GPS position")
    if row.get("xmp") == "invalid":
        flags.append("XMP malformed")
    q = row.get("jpeg_quality")
    if q is not None and q < 75:
        flags.append(f"low JPEG quality ({q})")
    if row.get("exif_make") and row.get("jpeg_tables") == "standard":
        flags.append("re-compressed: a camera file with a software encoder's standard JPEG tables")
    sw = row.get("exif_software") or row.get("xmp_creator_tool") or ""
    if row.get("exif_make") and EDITOR_SOFTWARE.search(sw):
        flags.append(f"camera file edited ({sw})"[:120])
    dims = exif_dimensions(row.get("exif") or {})
    if dims and row.get("width") and sorted(dims) != sorted((row["width"], row["height"])):
        flags.append(f"resized since capture (EXIF {dims[0]}x{dims[1]})")
    rep = row.get("repeated_lines")
    if rep is not None and rep >= REPEAT_FLAG:
        flags.append(f"up-scaled by pixel repetition ({rep:.0%} of lines repeated)")
    if row.get("width") and min(row["width"], row["height"]) < input_size:
        flags.append(f"smaller than the detector input ({input_size} px)")
    score = row.get("score")
    if row.get("verdict") == "error":
        verdict = "error"
    elif gen:
        verdict = "fake (metadata)"
    elif placeholder or score is None:
        verdict = "inconclusive"
    elif abs(score - threshold) < margin or any(f.startswith(UNRELIABLE) for f in flags):
        verdict = "inconclusive"
    elif score >= threshold:
        verdict = "fake (detector)"
    else:
        verdict = "real"
    return {"evidence_generation": gen, "evidence_camera": cam, "flags": flags, "evidence_verdict": verdict}
