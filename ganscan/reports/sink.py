"""Report files that survive interruption.

Rows are appended to a journal (``REPORT.partial.jsonl``, flushed and fsynced after every batch) while
the scan runs; at the end the report is written to a temporary file and renamed over ``REPORT`` in
one step. A killed scan leaves the journal behind; ``--resume`` reads it (and any finished report),
skips files already reported with the same size and mtime, and folds everything into one row per file.
A report scored by other models than the resuming scan's is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import pyarrow as pa

from ganscan.errors import GanscanError
from ganscan.reports.schema import SCAN_SCHEMA, model_names, us_from_iso
from ganscan.reports.writers import WRITERS, dumps, format_for_path, open_text


def read_report_rows(path: Path) -> list[dict]:
    """Rows of a finished report in any supported format (parquet, jsonl, json, csv)."""
    fmt = format_for_path(str(path))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        from ganscan.reports.schema import from_arrow_rows

        return from_arrow_rows(pq.read_table(path))
    if fmt == "jsonl":
        return list(_read_jsonl(path))
    if fmt == "json":
        return json.loads(path.read_text()).get("rows", [])
    if fmt == "csv":
        import csv

        rows = []
        with open(path, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                r = {k: (v if v != "" else None) for k, v in r.items()}
                if r.get("bytes") is not None:
                    r["bytes"] = int(r["bytes"])
                rows.append(r)
        return rows
    raise GanscanError(f"cannot resume from {path}: unknown report format")


def _read_jsonl(path: Path):
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a kill cut short


class ReportFile:
    def __init__(self, path: str, force: bool, resume: bool, run_meta: dict, schema: pa.Schema = SCAN_SCHEMA):
        self.path = Path(path)
        self.fmt = format_for_path(path)
        if self.fmt is None or self.fmt == "table":
            exts = ", ".join(sorted(e for w in WRITERS.values() for e in w.extensions))
            raise GanscanError(f"cannot tell the report format from {path!r}", hint=f"use one of {exts}")
        if not self.path.parent.exists():
            raise GanscanError(f"folder for the report does not exist: {self.path.parent}",
                               hint="create it first, or pick another -o path")
        self.journal = self.path.with_name(self.path.name + ".partial.jsonl")
        self.resume = resume
        if self.path.exists() and not (force or resume):
            raise GanscanError(f"report exists: {self.path}", hint="use --force to overwrite or --resume to continue")
        if self.journal.exists() and not resume:
            if force:
                self.journal.unlink()
            else:
                raise GanscanError(f"an interrupted scan left {self.journal}",
                                   hint="use --resume to continue it, or --force to start over")
        self.run_meta = run_meta
        self.schema = schema
        self.report_rows: list[dict] = []
        self._fh = None
        self._lock = threading.Lock()   # rows of crashed files arrive from the supervisor thread

    def previous(self) -> dict[str, tuple[int, int]]:
        """path -> (bytes, mtime in µs) of rows already reported (only with --resume)."""
        if not self.resume:
            return {}
        if self.path.exists():
            self.report_rows = read_report_rows(self.path)
        latest: dict[str, dict] = {r["path"]: r for r in self.report_rows}
        if self.journal.exists():
            latest.update((r["path"], r) for r in _read_jsonl(self.journal))
        self._check_models(latest.values())
        from ganscan.data.supervise import is_worker_failure

        # a file that crashed or stalled a decoder would do so again: it counts as reported
        return {p: (r.get("bytes"), us_from_iso(r.get("modified"))) for p, r in latest.items()
                if r.get("verdict") in ("real", "fake") or is_worker_failure(r.get("error"))}

    def _check_models(self, rows) -> None:
        """Refuse to resume a report whose rows were scored by other models than this scan's: the main model
        (name and weights) and the names of the per-model columns must be the same."""
        main = self.run_meta.get("model") or {}
        want = (main.get("model"), main.get("weights_sha256"), sorted(model_names(self.schema.names)))
        for r in rows:
            have = (r.get("model"), r.get("weights_sha256"), sorted(model_names(r)))
            if have != want:
                raise GanscanError(f"cannot resume {self.path}: it was scanned with {_models_text(*have)}, this "
                                   f"scan uses {_models_text(*want)}",
                                   hint="resume with the same --model options, or start over with --force instead of --resume")

    def append(self, rows: list[dict]) -> None:
        with self._lock:
            if self._fh is None:
                self._fh = open(self.journal, "a", encoding="utf-8")
                if self._fh.tell() > 0 and not _ends_with_newline(self.journal):
                    self._fh.write("\n")  # a kill cut the last line short: do not glue rows onto it
            for r in rows:
                self._fh.write(dumps(r) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def finalize(self) -> int:
        """Write the report atomically; returns its row count."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            writer_cls = WRITERS[self.fmt]
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            os.close(fd)
            from ganscan.core.checkpoint import default_file_mode

            os.chmod(tmp, default_file_mode())
            try:
                out = tmp if writer_cls.binary else open_text(tmp)
                writer = writer_cls(out, self.run_meta, self.schema)
                # one row per path: the journal's last word wins over the finished report it continues
                last: dict[str, int] = {}
                if self.journal.exists():
                    for i, r in enumerate(_read_jsonl(self.journal)):
                        last[r["path"]] = i
                carried = [r for r in self.report_rows if r["path"] not in last]
                writer.write(carried)
                count = len(carried)
                chunk = []
                if self.journal.exists():
                    for i, r in enumerate(_read_jsonl(self.journal)):
                        if last[r["path"]] != i:
                            continue
                        chunk.append(r)
                        if len(chunk) >= 4096:
                            writer.write(chunk)
                            count += len(chunk)
                            chunk = []
                writer.write(chunk)
                count += len(chunk)
                writer.close()
                if not writer_cls.binary:
                    out.close()
                os.replace(tmp, self.path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            if self.journal.exists():
                self.journal.unlink()
            write_sidecar(self.path)
            return count


def _models_text(main: str | None, sha256: str | None, names: list[str]) -> str:
    weights = f"model {main} (weights {(sha256 or '?')[:12]})"
    return weights + (f" and the model columns {', '.join(names)}" if names else "")


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_sidecar(path: Path) -> str:
    """``REPORT.sha256`` in ``sha256sum`` format, so anyone can show the report is untampered
    (``sha256sum -c report.parquet.sha256``)."""
    from ganscan.core.checkpoint import atomic_write_bytes, sha256_file

    digest = sha256_file(path)
    atomic_write_bytes(sidecar_path(path), f"{digest}  {path.name}\n".encode())
    return digest


def verify_sidecar(path: Path) -> bool | None:
    """True/False when a sidecar exists and matches/does not; None when there is none."""
    from ganscan.core.checkpoint import sha256_file

    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        expected = side.read_text().split()[0]
    except (OSError, IndexError):
        return False
    return expected == sha256_file(path)
