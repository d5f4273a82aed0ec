"""ganscan scan end to end through the CLI."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import EDGE, PHOTOS, run_ok, write_images
from ganscan.detectors.load import default_detector_name
from ganscan.reports.schema import COLUMNS


def _jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_edge_file_gets_exactly_one_row(runner, cli):
    res = run_ok(runner, cli, ["scan", str(EDGE), "--workers", "2", "--batch-size", "4"])
    rows = _jsonl(res.stdout)  # not a terminal: JSON Lines
    files = sorted(str(p) for p in EDGE.iterdir())
    assert sorted(r["path"] for r in rows) == files
    by_name = {Path(r["path"]).name: r for r in rows}
    for bad in ("broken.png", "truncated_jpeg.jpg", "decompression_bomb.gif", "xs1n0g01.png",
                "cross_scan_line_truncated.tga"):
        assert by_name[bad]["verdict"] == "error" and by_name[bad]["error"], bad
        assert by_name[bad]["score"] is None
    for good in ("hopper.webp", "cheers_1440x960.heic", "pil_sample_cmyk.jpg", "targa.tga", "basn0g16.png"):
        r = by_name[good]
        assert r["verdict"] in ("real", "fake") and 0 <= r["score"] <= 1, good
        assert r["sha256"] and r["width"] > 0
    assert "errors" in res.stderr
    name = default_detector_name()   # the summary names the model, and flags it only if it is the placeholder
    assert f"model {name}" in res.stderr and ("PLACEHOLDER" in res.stderr) == (name == "placeholder")


def test_exif_columns_and_gps(runner, cli):
    res = run_ok(runner, cli, ["scan", str(PHOTOS), "--workers", "0"])
    rows = {Path(r["path"]).name: r for r in _jsonl(res.stdout)}
    iphone = rows["apple-iphone-4.jpg"]
    assert (iphone["exif_make"], iphone["exif_model"]) == ("Apple", "iPhone 4")
    assert iphone["exif_datetime_original"] == "2011:01:13 14:33:39"
    assert iphone["gps_latitude"] == pytest.approx(41.853, abs=1e-3)
    assert iphone["gps_longitude"] == pytest.approx(12.4888, abs=1e-3)
    assert iphone["exif"]["Image Make"] == "Apple"
    samsung = rows["samsung-galaxy-s.jpg"]
    assert samsung["exif_orientation"] == 6 and (samsung["width"], samsung["height"]) == (480, 640)


def test_formats_to_stdout(runner, cli, tmp_path):
    write_images(tmp_path / "d", 3)
    table = run_ok(runner, cli, ["scan", str(tmp_path / "d"), "-f", "table", "--workers", "0"]).stdout
    assert "img00001.png" in table and "verdict" in table
    csv_out = run_ok(runner, cli, ["scan", str(tmp_path / "d"), "-f", "csv", "--workers", "0"]).stdout
    lines = csv_out.strip().splitlines()
    assert lines[0].split(",")[:3] == ["path", "sha256", "bytes"] and len(lines) == 4
    js = json.loads(run_ok(runner, cli, ["scan", str(tmp_path / "d"), "-f", "json", "--workers", "0",
                                         "--model", "placeholder"]).stdout)
    assert len(js["rows"]) == 3 and js["run"]["model"]["placeholder"] is True


def test_parquet_report_schema_and_run_metadata(runner, cli, tmp_path):
    write_images(tmp_path / "d", 5)
    (tmp_path / "d" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "report.parquet"
    res = run_ok(runner, cli, ["scan", str(tmp_path / "d"), "-o", str(out), "--workers", "1"])
    assert res.stdout == ""  # a report file, nothing on stdout unless --format is given
    table = pq.read_table(out)
    assert table.column_names == COLUMNS and table.num_rows == 6
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert json.loads(meta["ganscan.model"])["weights_sha256"]
    assert "device" in json.loads(meta["ganscan.host"])
    assert meta["ganscan.command"].startswith("ganscan")
    rows = table.to_pylist()
    assert sum(r["verdict"] == "error" for r in rows) == 1
    assert all(r["modified"] is not None for r in rows)
    duckdb = pytest.importorskip("duckdb")
    n, errors = duckdb.connect().execute(f"select count(*), count(error) from '{out}'").fetchall()[0]
    assert (n, errors) == (6, 1)


def test_report_is_not_overwritten_without_force(runner, cli, tmp_path):
    write_images(tmp_path / "d", 2)
    out = tmp_path / "r.csv"
    out.write_text("precious")
    res = runner.invoke(cli, ["scan", str(tmp_path / "d"), "-o", str(out)])
    assert res.exit_code == 1 and "--force" in res.output and out.read_text() == "precious"
    run_ok(runner, cli, ["scan", str(tmp_path / "d"), "-o", str(out), "--force", "--workers", "0"])
    assert out.read_text().startswith("path,")
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_resume_skips_reported_files_and_keeps_one_row_each(runner, cli, tmp_path):
    paths = write_images(tmp_path / "d", 6)
    out = tmp_path / "r.parquet"
    # an interrupted scan: its journal holds the first batch
    run_ok(runner, cli, ["scan", str(paths[0]), str(paths[1]), "-o", str(out), "--workers", "0"])
    journal = out.with_name(out.name + ".partial.jsonl")
    rows = pq.read_table(out).to_pylist()
    out.unlink()
    with open(journal, "w") as fh:
        for r in rows:
            r = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
            r["exif"] = dict(r["exif"])
            fh.write(json.dumps(r) + "\n")
        fh.write('{"path": "half a line')  # cut by the kill
    res = run_ok(runner, cli, ["scan", str(tmp_path / "d"), "-o", str(out), "--resume", "--workers", "0"])
    assert "2 already reported" in res.stderr
    final = pq.read_table(out).to_pylist()
    assert sorted(r["path"] for r in final) == sorted(map(str, paths))
    assert not journal.exists()
    # a changed file is scanned again, replacing its row
    Image.new("RGB", (10, 10)).save(paths[0])
    res = run_ok(runner, cli, ["scan", str(tmp_path / "d"), "-o", str(out), "--resume", "--workers", "0"])
    assert "5 already reported" in res.stderr
    final = pq.read_table(out).to_pylist()
    assert len(final) == 6 and {r["width"] for r in final if r["path"] == str(paths[0])} == {10}


def test_fail_on_fake_exit_code(runner, cli, tmp_path):
    write_images(tmp_path / "d", 2)
    res = runner.invoke(cli, ["scan", str(tmp_path / "d"), "--threshold", "0", "--fail-on-fake", "--workers", "0"])
    assert res.exit_code == 3
    assert all(r["verdict"] == "fake" for r in _jsonl(res.stdout))
    run_ok(runner, cli, ["scan", str(tmp_path / "d"), "--threshold", "1", "--fail-on-fake", "--workers", "0"])


def test_discovery_options(runner, cli, tmp_path):
    d = tmp_path / "d"
    write_images(d, 2, fmt="PNG")
    write_images(d / "sub", 2, fmt="JPEG", prefix="j")
    (d / "notes.txt").write_text("not an image")
    (d / "loop").symlink_to(d)  # a cycle must not hang the scan
    paths = lambda *a: sorted(Path(r["path"]).name for r in _jsonl(run_ok(runner, cli, ["scan", *a, "--workers", "0"]).stdout))
    assert paths(str(d)) == ["img00000.png", "img00001.png", "j00000.jpg", "j00001.jpg"]
    assert paths(str(d), "--no-recursive") == ["img00000.png", "img00001.png"]
    assert paths(str(d), "--include", "*.jpg") == ["j00000.jpg", "j00001.jpg"]
    assert paths(str(d), "--exclude", "sub") == ["img00000.png", "img00001.png"]
    # a non-image named explicitly gets its row
    rows = _jsonl(run_ok(runner, cli, ["scan", str(d / "notes.txt"), "--workers", "0"]).stdout)
    assert rows[0]["verdict"] == "error" and "not a recognised image" in rows[0]["error"]


def test_mixed_sizes_and_policies(runner, cli, tmp_path):
    write_images(tmp_path / "d", 6, size=lambda i: (20 + 37 * i, 300 - 40 * i))
    rows = _jsonl(run_ok(runner, cli, ["scan", str(tmp_path / "d"), "--batch-size", "6", "--workers", "0"]).stdout)
    assert len(rows) == 6 and all(r["score"] is not None for r in rows)


def test_bad_input_messages(runner, cli, tmp_path):
    res = runner.invoke(cli, ["scan", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "path not found" in res.output
    res = runner.invoke(cli, ["scan", str(EDGE), "-o", str(tmp_path / "nope" / "r.parquet")])
    assert res.exit_code == 1 and "does not exist" in res.output
    res = runner.invoke(cli, ["scan", str(EDGE), "--model", "placeholdr"])
    assert res.exit_code == 1 and "did you mean 'placeholder'" in res.output
    res = runner.invoke(cli, ["scan", str(EDGE), "-o", str(tmp_path / "r.xlsx")])
    assert res.exit_code == 1 and "report format" in res.output
    res = runner.invoke(cli, ["scann"])
    assert res.exit_code == 2 and "Did you mean 'scan'" in res.output
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    res = runner.invoke(cli, ["scan", str(EDGE), "--model", str(bad)])
    assert res.exit_code == 1 and "checkpoint" in res.output and "Traceback" not in res.output


def test_quiet_silences_summary(runner, cli, tmp_path):
    write_images(tmp_path / "d", 1)
    res = run_ok(runner, cli, ["scan", str(tmp_path / "d"), "-q", "--workers", "0"])
    assert "files:" not in res.stderr and "files" not in res.stderr.replace("PLACEHOLDER", "")
    assert len(_jsonl(res.stdout)) == 1
