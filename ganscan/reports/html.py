"""A self-contained HTML report of a scan: thumbnails inline, sortable, filterable, paginated."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter
from pathlib import Path

from ganscan.data.decode import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS
from ganscan.errors import GanscanError

REQUIRED = ("path", "score", "verdict", "sha256", "model", "threshold")
SHOWN = ("path", "verdict", "evidence_verdict", "score", "threshold", "width", "height", "format", "bytes",
         "exif_make", "exif_model", "exif_datetime_original", "gps_latitude", "gps_longitude", "jpeg_quality",
         "c2pa", "xmp", "digital_source_type", "evidence_generation", "evidence_camera", "flags", "error",
         "note", "sha256", "phash", "modified")


def load_report(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """Rows and run metadata of a ganscan Parquet report; a clear error for anything else."""
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise GanscanError(f"report not found: {p}")
    try:
        table = pq.read_table(p)
    except Exception as exc:
        raise GanscanError(f"{p}: not a readable Parquet file ({str(exc).splitlines()[0][:120]})") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if missing or not any(k.startswith("ganscan.") for k in meta):
        raise GanscanError(f"{p}: not a ganscan scan report"
                           + (f" (missing columns: {', '.join(missing)})" if missing else " (no ganscan metadata)"),
                           hint="make one with `ganscan scan PATH -o report.parquet`")
    from ganscan.reports.schema import from_arrow_rows

    run = {}
    for k, v in meta.items():
        if k.startswith("ganscan."):
            try:
                run[k[len("ganscan."):]] = json.loads(v)
            except json.JSONDecodeError:
                run[k[len("ganscan."):]] = v
    return from_arrow_rows(table), run


def thumbnail(path: str, size: int = 96, max_pixels: int = DEFAULT_MAX_PIXELS,
              max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> str | None:
    """A small JPEG data URI for a file, or None when it is missing or unreadable."""
    from PIL import Image

    from ganscan.data.decode import decode_image, read_file

    try:
        data, info = read_file(path)
        with Image.open(io.BytesIO(data)) as probe:  # JPEG draft: decode at 1/8 scale, fast for 12 MP
            if probe.format == "JPEG" and probe.width * probe.height <= max_pixels:
                probe.draft("RGB", (size * 2, size * 2))
                probe.load()
                buf = io.BytesIO()
                probe.save(buf, "JPEG")
                data = buf.getvalue()
        img = decode_image(data, info, max_pixels, max_bytes)
        img.thumbnail((size, size))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=80)
    except Exception:  # a file that is missing or does not decode has no thumbnail
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def build_html(rows: list[dict], run: dict, report_name: str, integrity: bool | None, workers: int = 2,
               on_progress=None, file_timeout: float | None = DEFAULT_FILE_TIMEOUT,
               max_bytes: int = DEFAULT_MAX_DECODE_BYTES,
               on_skip=None) -> str:
    """The whole page as one string. Thumbnails are made in supervised workers: a file that crashes or
    hangs the decoder has none, and ``on_skip(path, reason)`` hears why."""
    from ganscan.data.supervise import supervised_map

    def make(path):
        return thumbnail(path, 96, max_bytes=max_bytes), None

    paths = [r["path"] for r in rows]
    thumbs: list[str | None] = []
    made = supervised_map(make, paths, lambda _path, reason: (None, reason), workers, file_timeout)
    for path, (t, reason) in zip(paths, made):
        thumbs.append(t)
        if reason is not None and on_skip is not None:
            on_skip(path, reason)
        if on_progress:
            on_progress(1)
    data = [{**{k: r.get(k) for k in SHOWN}, "thumb": t, "missing": t is None and not os.path.exists(r["path"])}
            for r, t in zip(rows, thumbs)]
    counts = dict(Counter(r.get("verdict") or "?" for r in rows))
    model = run.get("model") if isinstance(run.get("model"), dict) else {}
    summary = {
        "report": report_name, "rows": len(rows), "counts": counts, "model": model,
        "host": run.get("host"), "command": run.get("command"), "started_at": run.get("started_at"),
        "ganscan_version": run.get("ganscan_version"),
        "integrity": {True: "sha256 sidecar matches", False: "sha256 sidecar DOES NOT MATCH: report altered",
                      None: "no sha256 sidecar"}[integrity],
    }
    payload = json.dumps({"summary": summary, "rows": data}, default=str, ensure_ascii=True).replace("</", "<\\/")
    title = html.escape(f"ganscan report: {report_name}")
    return _TEMPLATE.replace("__TITLE__", title).replace("__DATA__", payload)


def write_page(report: str | os.PathLike, output: str | os.PathLike, force: bool = False, workers: int | None = None,
               progress=None, file_timeout: float | None = DEFAULT_FILE_TIMEOUT,
               max_bytes: int = DEFAULT_MAX_DECODE_BYTES, on_skip=None) -> int:
    """The HTML page of a scan report, written atomically to ``output``; returns the report's row count."""
    from ganscan.core.checkpoint import atomic_write_bytes
    from ganscan.reports.sink import verify_sidecar

    out = Path(output)
    if out.exists() and not force:
        raise GanscanError(f"{out} exists", hint="use --force to overwrite")
    if not out.parent.exists():
        raise GanscanError(f"folder does not exist: {out.parent}")
    rows, run = load_report(report)
    integrity = verify_sidecar(Path(report))
    if progress is not None:
        progress.update(total=len(rows))
    page = build_html(rows, run, Path(report).name, integrity, workers=workers or min(os.cpu_count() or 1, 8),
                      on_progress=progress and (lambda n: progress.update(advance=n)), file_timeout=file_timeout,
                      max_bytes=max_bytes, on_skip=on_skip)
    atomic_write_bytes(out, page.encode("utf-8"))
    return len(rows)


_TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:12px 20px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:18px;margin:0 0 6px}
.sum span{display:inline-block;margin-right:16px}
.warn{color:#b00;font-weight:bold}
.controls{padding:8px 20px;display:flex;gap:12px;align-items:center;flex-wrap:wrap}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{cursor:pointer;position:sticky;top:0;background:#f0f0f0;user-select:none}
td.path{max-width:320px;word-break:break-all}
img.thumb{width:96px;height:96px;object-fit:contain;background:#eee}
.missing{display:inline-block;width:96px;height:96px;line-height:96px;text-align:center;background:#fdd;color:#900}
.bar{width:100px;height:10px;background:#ddd;position:relative}
.bar i{position:absolute;left:0;top:0;bottom:0;background:#c33}
.bar b{position:absolute;top:-2px;bottom:-2px;width:2px;background:#000}
.v-fake{color:#b00;font-weight:bold}.v-real{color:#070}.v-error{color:#a60}
ul{margin:0;padding-left:16px}
</style></head><body>
<header><h1 id="title"></h1><div class="sum" id="summary"></div></header>
<div class="controls">
<label>filter <input id="q" type="search" placeholder="path, camera, error..."></label>
<label>verdict <select id="verdict"><option value="">all</option><option>fake</option><option>real</option><option>error</option></select></label>
<label>evidence <select id="evidence"><option value="">all</option><option>fake (metadata)</option><option>fake (detector)</option><option>real</option><option>inconclusive</option><option>error</option></select></label>
<button id="prev">&lt; prev</button><span id="page"></span><button id="next">next &gt;</button>
</div>
<table><thead><tr id="head"></tr></thead><tbody id="rows"></tbody></table>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const S = D.summary, ALL = D.rows, PAGE = 100;
let view = ALL.slice(), page = 0, sortKey = null, sortDir = 1;
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined && text !== null) e.textContent = String(text); if (cls) e.className = cls; return e; };
document.getElementById("title").textContent = "ganscan report: " + S.report;
const sum = document.getElementById("summary");
const m = S.model || {};
const parts = [["files", S.rows], ...Object.entries(S.counts), ["model", (m.model || "?") + (m.placeholder ? " (UNTRAINED PLACEHOLDER)" : "")],
  ["weights sha256", (m.weights_sha256 || "").slice(0, 16)], ["threshold", m.threshold], ["preprocessing", m.preprocessing],
  ["device", S.host && S.host.device], ["version", S.ganscan_version], ["started", S.started_at], ["integrity", S.integrity]];
for (const [k, v] of parts) { const s = el("span"); s.append(el("b", k + ": "), document.createTextNode(v === undefined ? "" : v)); if ((k === "integrity" && S.integrity.includes("NOT")) || (k === "model" && m.placeholder)) s.className = "warn"; sum.append(s); }
const COLS = [["thumb", ""], ["path", "path"], ["verdict", "verdict"], ["evidence_verdict", "evidence"], ["score", "score"],
  ["size", "size"], ["camera", "camera"], ["signals", "signals"], ["error", "error"]];
const head = document.getElementById("head");
for (const [key, label] of COLS) { const th = el("th", label); th.dataset.key = key; th.onclick = () => sortBy(key); head.append(th); }
const sortVal = (r, k) => k === "size" ? (r.width || 0) * (r.height || 0) : k === "camera" ? [r.exif_make, r.exif_model].join(" ") : r[k];
function sortBy(k) { if (k === "thumb" || k === "signals") return; sortDir = sortKey === k ? -sortDir : 1; sortKey = k;
  view.sort((a, b) => { const x = sortVal(a, k), y = sortVal(b, k); if (x === y) return 0; if (x === null || x === undefined) return 1; if (y === null || y === undefined) return -1; return (x < y ? -1 : 1) * sortDir; }); page = 0; render(); }
function list(items) { const ul = el("ul"); for (const i of items || []) ul.append(el("li", i)); return ul; }
function render() {
  const tb = document.getElementById("rows"); tb.textContent = "";
  const start = page * PAGE, rows = view.slice(start, start + PAGE);
  for (const r of rows) {
    const tr = el("tr", null, "row");
    const t = el("td");
    if (r.thumb) { const img = el("img", null, "thumb"); img.loading = "lazy"; img.alt = r.path; img.src = r.thumb; t.append(img); }
    else t.append(el("span", r.missing ? "missing" : "no preview", "missing"));
    tr.append(t, el("td", r.path, "path"), el("td", r.verdict, "v-" + r.verdict), el("td", r.evidence_verdict));
    const sc = el("td");
    if (r.score !== null && r.score !== undefined) { const bar = el("div", null, "bar"); const fill = el("i"); fill.style.width = (100 * r.score) + "%"; const thr = el("b"); thr.style.left = (100 * (r.threshold || 0.5)) + "%"; bar.append(fill, thr); sc.append(el("div", r.score.toFixed(3)), bar); }
    tr.append(sc, el("td", r.width ? r.width + "x" + r.height : ""), el("td", [r.exif_make, r.exif_model].filter(Boolean).join(" ")));
    const sig = el("td"); const gen = (r.evidence_generation || []).map(s => "generation: " + s), cam = (r.evidence_camera || []).map(s => "camera: " + s), fl = (r.flags || []).map(s => "flag: " + s);
    sig.append(list([...gen, ...cam, ...fl])); tr.append(sig, el("td", r.error));
    tb.append(tr);
  }
  const pages = Math.max(1, Math.ceil(view.length / PAGE));
  document.getElementById("page").textContent = ` page ${page + 1} of ${pages} (${view.length} rows) `;
}
function applyFilter() {
  const q = document.getElementById("q").value.toLowerCase(), v = document.getElementById("verdict").value, e = document.getElementById("evidence").value;
  view = ALL.filter(r => (!v || r.verdict === v) && (!e || r.evidence_verdict === e) &&
    (!q || [r.path, r.exif_make, r.exif_model, r.error, r.format, r.sha256].join(" ").toLowerCase().includes(q)));
  page = 0; if (sortKey) { sortDir = -sortDir; sortBy(sortKey); } else render();
}
document.getElementById("q").oninput = applyFilter;
document.getElementById("verdict").onchange = applyFilter;
document.getElementById("evidence").onchange = applyFilter;
document.getElementById("prev").onclick = () => { if (page > 0) { page--; render(); } };
document.getElementById("next").onclick = () => { if ((page + 1) * PAGE < view.length) { page++; render(); } };
render();
</script></body></html>
"""
