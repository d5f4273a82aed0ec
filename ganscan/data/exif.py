"""EXIF metadata: flat columns analysts filter on, plus a map of every tag."""

from __future__ import annotations

import io
import logging

logging.getLogger("exifread").setLevel(logging.CRITICAL)

FLAT_FIELDS = ("exif_make", "exif_model", "exif_datetime_original", "exif_software", "gps_latitude",
               "gps_longitude", "exif_orientation")

_MAX_VALUE_CHARS = 256


def empty_exif() -> dict:
    return {**{k: None for k in FLAT_FIELDS}, "exif": {}}


def read_exif(data: bytes) -> dict:
    """Flat EXIF fields and a ``{tag: text}`` map. Never raises: broken EXIF gives empty fields."""
    out = empty_exif()
    try:
        import exifread

        tags = exifread.process_file(io.BytesIO(data), details=False, debug=False)
    except Exception:  # exifread raises many types on hostile files
        return out
    if not tags:
        return out
    all_tags: dict[str, str] = {}
    for key, val in tags.items():
        if key in ("JPEGThumbnail", "TIFFThumbnail") or key.startswith("Thumbnail "):
            continue
        try:
            text = str(val.printable if hasattr(val, "printable") else val)
        except Exception:
            continue
        all_tags[key] = _clean(text)[:_MAX_VALUE_CHARS]
    out["exif"] = all_tags
    out["exif_make"] = _text(tags, "Image Make")
    out["exif_model"] = _text(tags, "Image Model")
    out["exif_datetime_original"] = _text(tags, "EXIF DateTimeOriginal") or _text(tags, "Image DateTime")
    out["exif_software"] = _text(tags, "Image Software")
    orient = tags.get("Image Orientation")
    if orient is not None:
        try:
            out["exif_orientation"] = int(orient.values[0])
        except Exception:
            pass
    out["gps_latitude"] = _gps(tags, "GPS GPSLatitude", "GPS GPSLatitudeRef", "S")
    out["gps_longitude"] = _gps(tags, "GPS GPSLongitude", "GPS GPSLongitudeRef", "W")
    return out


def _clean(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable()).strip()


def _text(tags, key) -> str | None:
    val = tags.get(key)
    if val is None:
        return None
    try:
        text = _clean(str(val.printable))
    except Exception:
        return None
    return text[:_MAX_VALUE_CHARS] or None


def _ratio(v) -> float:
    num = getattr(v, "num", None)
    den = getattr(v, "den", None)
    if num is not None:
        return float(num) / float(den) if den else float("nan")
    return float(v)


def _gps(tags, key, ref_key, negative) -> float | None:
    val = tags.get(key)
    if val is None:
        return None
    try:
        parts = [_ratio(x) for x in val.values]
        deg = parts[0] + (parts[1] / 60 if len(parts) > 1 else 0) + (parts[2] / 3600 if len(parts) > 2 else 0)
    except Exception:
        return None
    if deg != deg or abs(deg) > 180:  # NaN or nonsense
        return None
    ref = tags.get(ref_key)
    if ref is not None and str(ref.printable).strip().upper().startswith(negative):
        deg = -deg
    return round(deg, 7)
