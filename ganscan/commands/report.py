"""ganscan report: a self-contained HTML page from a scan's Parquet report."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ganscan.cli import guard_options, quiet_option
from ganscan.errors import GanscanError

EXAMPLES = """
\b
Examples:
  ganscan scan photos/ -o report.parquet
  ganscan report report.parquet -o report.html      # open report.html in any browser (works offline)
"""


@click.command("report", epilog=EXAMPLES)
@click.argument("report", type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str), help="HTML file to write.")
@click.option("--force", is_flag=True, help="Overwrite the output.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes making thumbnails.")
@guard_options
@quiet_option
def command(report, output, force, workers, file_timeout, max_decode_mb):
    """Write one self-contained HTML file (inline thumbnails, no network) listing every file of a scan
    report: thumbnail, score bar, verdict, evidence, camera, errors; sortable, filterable, paginated.

    Rows whose image has moved since the scan are kept, with the thumbnail marked missing. The page
    shows whether the report still matches its sha256 sidecar.
    """
    from ganscan.console import Progress, info, warn
    from ganscan.core.checkpoint import atomic_write_bytes
    from ganscan.reports.html import build_html, load_report
    from ganscan.reports.sink import verify_sidecar

    out = Path(output)
    if out.exists() and not force:
        raise GanscanError(f"{out} exists", hint="use --force to overwrite")
    if not out.parent.exists():
        raise GanscanError(f"folder does not exist: {out.parent}")
    rows, run = load_report(report)
    integrity = verify_sidecar(Path(report))
    with Progress("thumbnails", total=len(rows)) as bar:
        page = build_html(rows, run, Path(report).name, integrity,
                          workers=workers or min(os.cpu_count() or 1, 8), on_progress=lambda n: bar.update(n),
                          file_timeout=file_timeout, max_bytes=max_decode_mb * 2 ** 20,
                          on_skip=lambda path, reason: warn(f"{path}: no thumbnail: {reason}"))
    atomic_write_bytes(out, page.encode("utf-8"))
    info(f"wrote {out} ({len(rows)} rows, {out.stat().st_size / 1e6:.1f} MB)")
