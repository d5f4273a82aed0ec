"""A scan run: the rows of ``scan_batches`` go to a report file (journaled, resumable) and to stdout, and
are counted for the summary line."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

from ganscan import __version__
from ganscan.errors import GanscanError
from ganscan.reports.sink import ReportFile
from ganscan.reports.writers import WRITERS, Writer, stdout_format


def check_request(paths, output: str | None, resume: bool) -> None:
    """Refuse, before any model is loaded, paths that do not exist and a --resume without a report."""
    for p in paths:
        if not os.path.lexists(p):
            raise GanscanError(f"path not found: {p}")
    if resume and not output:
        raise GanscanError("--resume needs the report to continue", hint="pass -o REPORT")


def run_metadata(detector, device_text: str, precision, paths, rank: int, world: int) -> dict:
    """What a report records about its run: command, model and its card, host, start time."""
    command = (" ".join(["ganscan", *sys.argv[1:]]) if sys.argv and "ganscan" in sys.argv[0]
               else "ganscan scan " + " ".join(paths))
    return {
        "command": command,
        "ganscan_version": __version__,
        "model": detector.run_info(),
        "model_card": {k: v for k, v in detector.meta.items() if k not in ("metrics_table",)},
        "host": {"device": device_text, "precision": precision.name, "platform": platform.platform(),
                 "python": platform.python_version(), "rank": rank, "world_size": world},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def open_report(output: str | None, force: bool, resume: bool, run_meta: dict, rank: int,
                world: int) -> ReportFile | None:
    """The report of ``-o`` (under torchrun: OUTPUT/part-RANK.EXT, one file per rank), or None."""
    if not output:
        return None
    path = output
    if world > 1:
        if Path(output).parent.exists():
            Path(output).mkdir(exist_ok=True)
        path = str(Path(output) / f"part-{rank:05d}{Path(output).suffix or '.parquet'}")
    return ReportFile(path, force, resume, run_meta)


def open_stdout(fmt: str | None, output: str | None, run_meta: dict, title: str) -> Writer | None:
    """The stdout writer: ``--format``, else a table on a terminal and JSON Lines when piped; none with -o."""
    fmt = fmt or (None if output else stdout_format(None))
    if fmt is None:
        return None
    if WRITERS[fmt].binary:
        raise GanscanError(f"{fmt} cannot be written to stdout", hint=f"use -o report.{fmt}")
    return WRITERS[fmt](sys.stdout, {**run_meta, "table_title": title})


def run_scan(settings, detector, precision, report: ReportFile | None = None, stdout: Writer | None = None,
             progress=None):
    """Scan, journaling every batch to ``report`` and writing it to ``stdout``; returns (counts, Throughput).

    A reader of stdout that goes away (``| head``) ends the scan quietly; the report keeps what was scanned.
    """
    from ganscan.detectors.inference import SKIPPED, Throughput, scan_batches

    counts = {"files": 0, "fake": 0, "real": 0, "error": 0, "not_image": 0, "resumed": 0}
    rate = Throughput()
    on_failure = (lambda row: report.append([row])) if report is not None else None
    for rows in scan_batches(settings, detector, precision, on_failure):
        kept = []
        for r in rows:
            if r["verdict"] == SKIPPED:
                counts["resumed" if r.get("note") == "already in report" else "not_image"] += 1
                continue
            counts[r["verdict"]] += 1
            counts["files"] += 1
            kept.append(r)
        rate.add(sum(1 for r in kept if r["verdict"] != "error"))
        if report is not None and kept:
            report.append(kept)
        if stdout is not None and kept and not _to_stdout(stdout.write, kept):
            return counts, rate
        if progress is not None:
            progress.update(advance=len(rows), **{"img/s": rate.rate})
    if stdout is not None:
        _to_stdout(stdout.close)
    return counts, rate


def _to_stdout(write, *args) -> bool:
    """False when stdout's reader has gone; stdout is then pointed at /dev/null so the exit stays quiet."""
    try:
        write(*args)
        return True
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return False
