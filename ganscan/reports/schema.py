"""The scan report's columns, in one place (documented in the README)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

SCAN_SCHEMA = pa.schema([
    ("path", pa.string()),
    ("sha256", pa.string()),
    ("bytes", pa.int64()),
    ("modified", TS),
    ("format", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("score", pa.float64()),
    ("verdict", pa.string()),
    ("threshold", pa.float64()),
    ("model", pa.string()),
    ("weights_sha256", pa.string()),
    ("preprocessing", pa.string()),
    ("error", pa.string()),
    ("note", pa.string()),
    ("exif_make", pa.string()),
    ("exif_model", pa.string()),
    ("exif_datetime_original", pa.string()),
    ("exif_software", pa.string()),
    ("gps_latitude", pa.float64()),
    ("gps_longitude", pa.float64()),
    ("exif_orientation", pa.int32()),
    ("exif", pa.map_(pa.string(), pa.string())),
    ("phash", pa.string()),
    ("dhash", pa.string()),
    ("changed", TS),
    ("xmp", pa.string()),
    ("xmp_creator_tool", pa.string()),
    ("digital_source_type", pa.string()),
    ("c2pa", pa.string()),
    ("c2pa_claim_generator", pa.string()),
    ("generator_text", pa.map_(pa.string(), pa.string())),
    ("jpeg_quality", pa.int32()),
    ("jpeg_tables", pa.string()),
    ("repeated_lines", pa.float64()),
    ("evidence_verdict", pa.string()),
    ("evidence_generation", pa.list_(pa.string())),
    ("evidence_camera", pa.list_(pa.string())),
    ("flags", pa.list_(pa.string())),
    ("scanned_at", TS),
    ("ganscan_version", pa.string()),
])

COLUMNS = [f.name for f in SCAN_SCHEMA]


def scan_schema(models: list[str] | tuple[str, ...] = ()) -> pa.Schema:
    """The report's schema. A scan with several models has ``score_<name>`` and ``verdict_<name>`` for each
    (``models``: their names), after ``verdict``; one model keeps SCAN_SCHEMA."""
    if not models:
        return SCAN_SCHEMA
    at = SCAN_SCHEMA.get_field_index("verdict") + 1
    extra = [pa.field(f"{kind}_{name}", typ) for name in models
             for kind, typ in (("score", pa.float64()), ("verdict", pa.string()))]
    return pa.schema([*SCAN_SCHEMA][:at] + extra + [*SCAN_SCHEMA][at:])


def model_names(columns) -> list[str]:
    """The model names of a report's per-model columns (``score_<name>``), in column order."""
    return [c[len("score_"):] for c in columns if c.startswith("score_")]
TIMESTAMP_COLUMNS = ("modified", "changed", "scanned_at")
MAP_COLUMNS = tuple(f.name for f in SCAN_SCHEMA if pa.types.is_map(f.type))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso_from_us(us: int | None) -> str | None:
    """Exact ISO 8601 (UTC) for integer microseconds; round-trips with ``us_from_iso``."""
    if us is None:
        return None
    return (_EPOCH + timedelta(microseconds=us)).isoformat()


def us_from_iso(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(microseconds=1)


def to_arrow_rows(rows: list[dict], schema: pa.Schema = SCAN_SCHEMA) -> pa.Table:
    cols = {}
    for f in schema:
        vals = [r.get(f.name) for r in rows]
        if f.name in TIMESTAMP_COLUMNS:
            vals = [datetime.fromisoformat(v) if isinstance(v, str) else v for v in vals]
        elif pa.types.is_map(f.type):
            vals = [list(v.items()) if isinstance(v, dict) else (v or []) for v in vals]
        cols[f.name] = pa.array(vals, type=f.type)
    return pa.table(cols, schema=schema)


def from_arrow_rows(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    for r in rows:
        for c in TIMESTAMP_COLUMNS:
            if isinstance(r.get(c), datetime):
                r[c] = r[c].isoformat()
        for c in MAP_COLUMNS:
            if isinstance(r.get(c), list):
                r[c] = dict(r[c])
    return rows
