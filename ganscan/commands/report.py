"""ganscan report: a self-contained HTML page from a scan's Parquet report."""

from __future__ import annotations

from pathlib import Path

import click

from ganscan.cli import guard_options, quiet_option

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
    from ganscan.reports.html import write_page

    with Progress("thumbnails") as bar:
        rows = write_page(report, output, force, workers, bar, file_timeout, max_decode_mb * 2 ** 20,
                          on_skip=lambda path, reason: warn(f"{path}: no thumbnail: {reason}"))
    out = Path(output)
    info(f"wrote {out} ({rows} rows, {out.stat().st_size / 1e6:.1f} MB)")
