"""The results of ``ganscan evaluate``: a results file (JSON, CSV, Parquet), stdout (table, JSON, CSV) and
the figures of each test set."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

from ganscan.errors import GanscanError

FORMATS = ("table", "json", "csv", "parquet")


def results_format(output: str | None, fmt: str | None, force: bool) -> str:
    """The format to write: ``--format``, else the extension of ``-o``, else a table on a terminal and JSON
    when piped. Refused before any scoring: a format the destination cannot take, an existing file."""
    out_fmt = fmt
    if output:
        ext = Path(output).suffix.lower().lstrip(".")
        if fmt is None:
            if ext not in ("json", "csv", "parquet"):
                raise GanscanError(f"cannot tell the format of {output}", hint="use .json, .csv or .parquet, or --format")
            out_fmt = ext
        if out_fmt == "table":
            raise GanscanError("a table cannot be written to a file", hint="use .json, .csv or .parquet")
        if os.path.exists(output) and not force:
            raise GanscanError(f"{output} exists", hint="pass --force to overwrite it")
    elif fmt is None:
        out_fmt = "table" if sys.stdout.isatty() else "json"
    if out_fmt == "parquet" and not output:
        raise GanscanError("parquet cannot be written to stdout", hint="use -o results.parquet")
    return out_fmt


def write_csv(fh, rows: list[dict]) -> None:
    import csv

    w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def write_results(path: str, fmt: str, payload: dict) -> None:
    """The results file, written atomically: the whole payload as JSON, or its flat rows as CSV or Parquet
    (Parquet keeps the model and the threshold in the file's metadata)."""
    from ganscan.core.checkpoint import atomic_write_bytes

    if fmt == "json":
        data = json.dumps(payload, indent=2, default=str).encode()
    elif fmt == "csv":
        buf = io.StringIO()
        write_csv(buf, payload["rows"])
        data = buf.getvalue().encode()
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(payload["rows"])
        meta = {b"ganscan": json.dumps({"model": payload["model"], "threshold": payload["threshold"],
                                        "threshold_source": payload["threshold_source"]}, default=str).encode()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
    else:
        raise GanscanError(f"cannot write format {fmt!r} to a file")
    atomic_write_bytes(path, data)


def show_results(fmt: str, payload: dict, detector, result) -> None:
    """The results on stdout in ``fmt`` (table, json or csv)."""
    if fmt == "table":
        from ganscan.console import stdout_console

        print_tables(stdout_console(), detector, result)
    elif fmt == "json":
        print(json.dumps(payload, indent=2, default=str))
    elif fmt == "csv":
        write_csv(sys.stdout, payload["rows"])


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def print_tables(con, detector, result) -> None:
    """The per-set table (percentages) and, with perturbations, the table of drops under each."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(f"{detector.label} ({detector.config.name}, {detector.config.describe_preprocessing()}), "
                           f"threshold {result.threshold:.4g} [{result.threshold_source}], percentages"),
              header_style="bold")
    for c in ("set", "n real", "n fake", "acc", "real acc", "fake acc", "AP", "ROC-AUC"):
        t.add_column(c, justify="left" if c == "set" else "right")

    def add(name, row, style=None):
        t.add_row(escape(name), str(row["n_real"]), str(row["n_fake"]),
                  *(_pct(row[k]) for k in ("accuracy", "real_acc", "fake_acc", "ap", "auc")), style=style)

    for r in result.sets:
        add(r.name, r.row)
    t.add_section()
    add("mean", result.mean, style="bold")
    con.print(t)
    if not result.perturbations:
        return
    p = Table(title="Under perturbation (drop = clean - perturbed, percentage points)", header_style="bold")
    for c in ("perturbation", "set", "acc", "drop acc", "AP", "drop AP", "ROC-AUC", "drop AUC"):
        p.add_column(c, justify="left" if c in ("perturbation", "set") else "right")
    clean = {r.name: r.row for r in result.sets}
    clean["mean"] = result.mean
    for pert in result.perturbations:
        for row in [*pert["rows"], {**pert["mean"], "set": "mean"}]:
            base = clean.get(row["set"], {})
            cells = []
            for k in ("accuracy", "ap", "auc"):
                b, v = base.get(k), row.get(k)
                cells += [_pct(v), "n/a" if b is None or v is None else f"{100 * (b - v):+.1f}"]
            p.add_row(pert["perturbation"], escape(row["set"]), *cells, style="bold" if row["set"] == "mean" else None)
        p.add_section()
    con.print(p)


def write_figures(result, folder: str, misclassified: int) -> list[str]:
    """``<set>_roc.png``, ``<set>_pr.png`` and (``misclassified`` > 0) ``<set>_misclassified.png`` per set."""
    from ganscan.reports.figures import misclassified_grid, roc_pr_curves

    Path(folder).mkdir(parents=True, exist_ok=True)
    written = []
    for r in result.sets:
        y, sc, _ = r.scored()
        written += roc_pr_curves(r.name, y, sc, result.threshold, folder)
        if misclassified:
            grid = misclassified_grid(r.name, r.misclassified(result.threshold, misclassified), folder)
            if grid:
                written.append(grid)
    return written
