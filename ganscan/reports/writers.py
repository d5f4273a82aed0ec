"""Report writers behind one interface. ``--format`` choices and file extensions derive from WRITERS."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import IO

import pyarrow as pa

from ganscan.reports.schema import SCAN_SCHEMA, model_names, to_arrow_rows


def _json_default(o):
    return o.isoformat() if hasattr(o, "isoformat") else str(o)


def dumps(row: dict) -> str:
    return json.dumps(row, default=_json_default, ensure_ascii=False, separators=(",", ":"))


class Writer:
    """``write(rows)`` any number of times, then ``close()``. ``binary`` writers need a path."""

    extensions: tuple[str, ...] = ()
    binary = False

    def __init__(self, out: IO | str, run_meta: dict | None = None, schema: pa.Schema = SCAN_SCHEMA):
        self.out = out
        self.run_meta = run_meta or {}
        self.schema = schema
        self.columns = schema.names

    def write(self, rows: list[dict]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JsonlWriter(Writer):
    extensions = (".jsonl", ".ndjson")

    def write(self, rows):
        for r in rows:
            self.out.write(dumps({k: r.get(k) for k in self.columns}) + "\n")
        self.out.flush()


class JsonWriter(Writer):
    extensions = (".json",)

    def __init__(self, out, run_meta=None, schema=SCAN_SCHEMA):
        super().__init__(out, run_meta, schema)
        self.first = True
        self.out.write('{"run": ' + json.dumps(self.run_meta, default=_json_default) + ', "rows": [')

    def write(self, rows):
        for r in rows:
            self.out.write(("\n" if self.first else ",\n") + dumps({k: r.get(k) for k in self.columns}))
            self.first = False

    def close(self):
        self.out.write("\n]}\n")
        self.out.flush()


class CsvWriter(Writer):
    extensions = (".csv",)

    def __init__(self, out, run_meta=None, schema=SCAN_SCHEMA):
        super().__init__(out, run_meta, schema)
        self.writer = csv.writer(self.out)
        self.writer.writerow(self.columns)

    def write(self, rows):
        for r in rows:
            self.writer.writerow([_csv_cell(r.get(k)) for k in self.columns])
        self.out.flush()


def _csv_cell(v):
    if v is None:
        return ""
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False)
    return v


class ParquetWriter(Writer):
    """Row groups as rows arrive; the run's metadata goes in the file's key-value metadata."""

    extensions = (".parquet", ".pq")
    binary = True

    def __init__(self, out, run_meta=None, schema=SCAN_SCHEMA):
        super().__init__(out, run_meta, schema)
        import pyarrow.parquet as pq

        meta = {k: (v if isinstance(v, str) else json.dumps(v, default=_json_default))
                for k, v in self.run_meta.items()}
        self.schema = schema.with_metadata({f"ganscan.{k}": v for k, v in meta.items()})
        self.pq = pq.ParquetWriter(out, self.schema, compression="zstd")
        self.buffer: list[dict] = []

    def write(self, rows):
        self.buffer.extend(rows)
        if len(self.buffer) >= 4096:
            self._flush()

    def _flush(self):
        if self.buffer:
            self.pq.write_table(to_arrow_rows(self.buffer, self.schema))
            self.buffer = []

    def close(self):
        self._flush()
        self.pq.close()


class TableWriter(Writer):
    """A rich table on the terminal, rendered at the end."""

    def __init__(self, out, run_meta=None, schema=SCAN_SCHEMA):
        super().__init__(out, run_meta, schema)
        self.rows: list[dict] = []

    def write(self, rows):
        self.rows.extend(rows)

    def close(self):
        from rich.table import Table

        from ganscan.console import stdout_console

        names = model_names(self.columns)   # several models: one score column each, side by side
        title = self.run_meta.get("table_title")
        table = Table(title=title, show_lines=False, header_style="bold")
        table.add_column("path", overflow="fold", ratio=3)
        table.add_column("verdict")
        for name in names or ["score"]:
            table.add_column(name, justify="right")
        for col, kw in (("size", {"justify": "right"}), ("camera", {"overflow": "fold"}),
                        ("error", {"overflow": "fold", "ratio": 2})):
            table.add_column(col, **kw)
        styles = {"fake": "bold red", "real": "green", "error": "yellow"}
        for r in sorted(self.rows, key=lambda r: r["path"]):
            v = r.get("verdict") or ""
            size = f"{r['width']}x{r['height']}" if r.get("width") else ""
            cam = " ".join(x for x in (r.get("exif_make"), r.get("exif_model")) if x)
            scores = [_score_cell(r.get(f"score_{n}"), r.get(f"verdict_{n}")) for n in names] if names else \
                [_score_cell(r.get("score"))]
            table.add_row(r["path"], f"[{styles.get(v, '')}]{v}[/]" if v in styles else v, *scores, size, cam,
                          r.get("error") or "")
        stdout_console().print(table)


def _score_cell(score, verdict=None) -> str:
    """A score for the table; in red where its model (of several) calls the file fake."""
    text = "" if score is None else f"{score:.3f}"
    return f"[bold red]{text}[/]" if verdict == "fake" else text


WRITERS: dict[str, type[Writer]] = {
    "table": TableWriter,
    "jsonl": JsonlWriter,
    "json": JsonWriter,
    "csv": CsvWriter,
    "parquet": ParquetWriter,
}

FORMATS = tuple(WRITERS)
FILE_FORMATS = {ext: name for name, w in WRITERS.items() for ext in w.extensions}


def format_for_path(path: str) -> str | None:
    return next((name for ext, name in FILE_FORMATS.items() if path.lower().endswith(ext)), None)


def stdout_format(requested: str | None) -> str:
    return requested or ("table" if sys.stdout.isatty() else "jsonl")


def open_text(path) -> IO:
    return io.open(path, "w", encoding="utf-8", newline="")
