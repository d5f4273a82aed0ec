"""ganscan report: the HTML page, checked in a real headless browser (Debian's chromium)."""

import re
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import run_ok
from ganscan.detectors.load import default_detector_name

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def _browser(tmp_path, url, *extra):
    if not CHROMIUM:
        # `make test` installs Debian's chromium when it runs as root with apt-get, and says so when it cannot
        pytest.skip("chromium is not installed (as root, `make test` installs it: apt-get install chromium)")
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def scanned(runner, cli, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(5):
        Image.new("RGB", (120, 90), (255, 0, 0)).save(d / f"red{i}.png")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    Image.new("RGB", (50, 50), (255, 0, 0)).save(d / "moved.png")
    out = tmp_path / "r.parquet"
    run_ok(runner, cli, ["scan", str(d), "-o", str(out), "--workers", "0", "-q"])
    (d / "moved.png").unlink()  # the image moves after the scan: its row stays, thumbnail missing
    return out


def test_html_report_renders_rows_and_thumbnails(runner, cli, scanned, tmp_path):
    html_path = tmp_path / "r.html"
    run_ok(runner, cli, ["report", str(scanned), "-o", str(html_path)])
    page = html_path.read_text()
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no network
    dom = _browser(tmp_path, html_path.as_uri(), "--dump-dom").stdout
    rows = re.findall(r'<tr class="row">', dom)
    assert len(rows) == 7
    assert len(re.findall(r'<img class="thumb"[^>]*src="data:image/jpeg;base64,', dom)) == 5
    assert dom.count(">missing<") == 1
    assert "sha256 sidecar matches" in dom
    name = default_detector_name()   # the summary names the model, flagged only if it is the placeholder
    shown = name + (" (UNTRAINED PLACEHOLDER)" if name == "placeholder" else "")
    assert re.search(rf'<span( class="warn")?><b>model: </b>{re.escape(shown)}</span>', dom)
    shot = tmp_path / "shot.png"
    _browser(tmp_path, html_path.as_uri(), f"--screenshot={shot}", "--window-size=1200,1400")
    arr = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = (arr[..., 0] > 200) & (arr[..., 1] < 60) & (arr[..., 2] < 60)
    assert red.sum() > 5 * 60 * 60  # the five red thumbnails are painted (plus score bars)


def test_tampered_report_is_flagged(runner, cli, scanned, tmp_path):
    side = scanned.with_name(scanned.name + ".sha256")
    side.write_text("0" * 64 + "  r.parquet\n")
    run_ok(runner, cli, ["report", str(scanned), "-o", str(tmp_path / "t.html")])
    assert "DOES NOT MATCH" in (tmp_path / "t.html").read_text()


def test_ten_thousand_rows_paginate(runner, cli, scanned, tmp_path):
    table = pq.read_table(scanned)
    row = table.slice(0, 1).to_pylist()[0]
    rows = [{**row, "path": f"/nowhere/img{i:05d}.jpg", "score": (i % 100) / 100} for i in range(10_000)]
    from ganscan.reports.schema import to_arrow_rows

    big = to_arrow_rows([{**r, "exif": dict(r["exif"]) if isinstance(r["exif"], list) else r["exif"]} for r in rows])
    big = big.replace_schema_metadata(table.schema.metadata)
    pq.write_table(big, tmp_path / "big.parquet")
    run_ok(runner, cli, ["report", str(tmp_path / "big.parquet"), "-o", str(tmp_path / "big.html")])
    dom = _browser(tmp_path, (tmp_path / "big.html").as_uri(), "--dump-dom").stdout
    assert len(re.findall(r'<tr class="row">', dom)) == 100
    assert "page 1 of 100 (10000 rows)" in dom


def test_foreign_parquet_is_refused(runner, cli, tmp_path):
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "other.parquet")
    res = runner.invoke(cli, ["report", str(tmp_path / "other.parquet"), "-o", str(tmp_path / "o.html")])
    assert res.exit_code == 1 and "not a ganscan scan report" in res.output
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 nonsense")
    res = runner.invoke(cli, ["report", str(tmp_path / "junk.parquet"), "-o", str(tmp_path / "o.html")])
    assert res.exit_code == 1 and "not a readable Parquet file" in res.output
