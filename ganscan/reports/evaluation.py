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
    w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)


def results_payload(detectors: list, results: list) -> dict:
    """What is written: for one model its run information and results; for several, ``models`` (one such
    payload each) and ``rows`` (every model's flat rows, a ``model`` column first: the unique names of
    ``column_names``, as in a multi-model scan)."""
    each = [{"model": d.run_info(), **r.as_dict()} for d, r in zip(detectors, results)]
    if len(each) == 1:
        return each[0]
    from ganscan.detectors.load import column_names

    return {"models": each, "rows": [{"model": name, **row} for name, p in zip(column_names(detectors), each)
                                     for row in p["rows"]]}


def write_results(path: str, fmt: str, payload: dict) -> None:
    """The results file, written atomically: the whole payload as JSON, or its flat rows as CSV or Parquet
    (Parquet keeps the models and their thresholds in the file's metadata)."""
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

        def about(p):
            return {"model": p["model"], "threshold": p["threshold"], "threshold_source": p["threshold_source"]}

        table = pa.Table.from_pylist(payload["rows"])
        info = {"models": [about(p) for p in payload["models"]]} if "models" in payload else about(payload)
        meta = {b"ganscan": json.dumps(info, default=str).encode()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
    else:
        raise GanscanError(f"cannot write format {fmt!r} to a file")
    atomic_write_bytes(path, data)


def show_results(fmt: str, payload: dict, detectors: list, results: list) -> None:
    """The results on stdout in ``fmt`` (table, json or csv)."""
    if fmt == "table":
        from ganscan.console import stdout_console

        print_tables(stdout_console(), detectors, results)
    elif fmt == "json":
        print(json.dumps(payload, indent=2, default=str))
    elif fmt == "csv":
        write_csv(sys.stdout, payload["rows"])


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def print_tables(con, detectors: list, results: list) -> None:
    """The per-set table (percentages) and, with perturbations, the table of drops under each. Several
    models share each table, one block of rows per model (its name in the first column)."""
    from rich.markup import escape
    from rich.table import Table

    blocks = list(zip(detectors, results))
    lead = ["model"] if len(blocks) > 1 else []

    def model_cell(text: str) -> list[str]:
        return [escape(text)] if lead else []

    def low(d, r) -> str:   # the threshold in force for low-quality JPEG files, where there is one
        lj = r.low_jpeg
        return f" (JPEG quality <= {lj['max_quality']}: {lj['threshold']:.4g})" if lj else ""

    about = [f"{d.label} ({d.config.name}, {d.config.describe_preprocessing()}), threshold {r.threshold:.4g}"
             f"{low(d, r)} [{r.threshold_source}]" for d, r in blocks]
    if lead:
        t = Table(title=f"{len(blocks)} models, percentages", caption=escape("\n".join(about)),
                  caption_justify="left", header_style="bold")
    else:
        t = Table(title=escape(f"{about[0]}, percentages"), header_style="bold")
    for c in (*lead, "set", "n real", "n fake", "acc", "real acc", "fake acc", "AP", "ROC-AUC"):
        t.add_column(c, justify="left" if c in ("model", "set") else "right")

    def add(first, name, row, style=None):
        t.add_row(*first, escape(name), str(row["n_real"]), str(row["n_fake"]),
                  *(_pct(row[k]) for k in ("accuracy", "real_acc", "fake_acc", "ap", "auc")), style=style)

    for i, (d, r) in enumerate(blocks):
        if i:
            t.add_section()
        for j, s in enumerate(r.sets):
            add(model_cell(d.label if j == 0 else ""), s.name, s.row)
        t.add_section()
        add(model_cell(""), "mean", r.mean, style="bold")
    con.print(t)
    if not any(r.perturbations for r in results):
        return
    p = Table(title="Under perturbation (drop = clean - perturbed, percentage points)", header_style="bold")
    for c in (*lead, "perturbation", "set", "acc", "drop acc", "AP", "drop AP", "ROC-AUC", "drop AUC"):
        p.add_column(c, justify="left" if c in ("model", "perturbation", "set") else "right")
    for d, r in blocks:
        clean = {s.name: s.row for s in r.sets}
        clean["mean"] = r.mean
        for pert in r.perturbations:
            for row in [*pert["rows"], {**pert["mean"], "set": "mean"}]:
                base = clean.get(row["set"], {})
                cells = []
                for k in ("accuracy", "ap", "auc"):
                    b, v = base.get(k), row.get(k)
                    cells += [_pct(v), "n/a" if b is None or v is None else f"{100 * (b - v):+.1f}"]
                p.add_row(*model_cell(d.label), pert["perturbation"], escape(row["set"]), *cells,
                          style="bold" if row["set"] == "mean" else None)
            p.add_section()
    con.print(p)


def write_figures(detectors: list, results: list, folder: str, misclassified: int) -> list[str]:
    """``<set>_roc.png``, ``<set>_pr.png`` and (``misclassified`` > 0) ``<set>_misclassified.png`` per set;
    with several models each file name starts with the model's (``<model>_<set>_roc.png``)."""
    from ganscan.reports.figures import misclassified_grid, roc_pr_curves

    Path(folder).mkdir(parents=True, exist_ok=True)
    written = []
    from ganscan.detectors.load import column_names

    for model, res in zip(column_names(detectors), results):
        for r in res.sets:
            name = f"{model}_{r.name}" if len(results) > 1 else r.name
            y, sc, paths = r.scored()
            written += roc_pr_curves(name, y, sc, res.threshold, folder,
                                     r.file_thresholds(res.threshold, paths) if r.thresholds else None)
            if misclassified:
                grid = misclassified_grid(name, r.misclassified(res.threshold, misclassified), folder)
                if grid:
                    written.append(grid)
    return written
