"""Hostile files beyond scan: explain, report thumbnails and generate --input survive a decoder that crashes or
hangs; a crashed file is journaled at once and not decoded again on --resume; the per-file memory guard."""

import csv
import json
import os
import signal
import struct
import threading
import zlib
from pathlib import Path

import pytest

from conftest import run_ok, write_images


def _hostile_decode(original):
    """A test-only decoder hook: files named crash* segfault, hang* never return."""
    def decode_image(data, info, *args, **kwargs):
        name = os.path.basename(info.path)
        if name.startswith("crash"):
            os.kill(os.getpid(), signal.SIGSEGV)
        if name.startswith("hang"):
            threading.Event().wait()
        return original(data, info, *args, **kwargs)
    return decode_image


@pytest.fixture
def hostile(monkeypatch, tmp_path):
    import ganscan.data.decode as decode

    monkeypatch.setattr(decode, "decode_image", _hostile_decode(decode.decode_image))
    folder = tmp_path / "hostile"
    write_images(folder, 2, size=(96, 72), prefix="ok")
    for bad in ("crash.png", "hang.png"):
        (folder / bad).write_bytes((folder / "ok00000.png").read_bytes())
    return folder


def test_explain_gives_a_crashing_and_a_hanging_file_their_error(runner, cli, hostile, tmp_path):
    out = tmp_path / "out"
    files = [str(hostile / n) for n in ("crash.png", "ok00000.png", "hang.png", "ok00001.png")]
    res = run_ok(runner, cli, ["explain", *files, "-o", str(out), "--model", "placeholder", "--file-timeout", "1"])
    run = json.loads((out / "summary.json").read_text())
    assert [r["path"] for r in run] == files
    assert [r.get("error") for r in run] == ["decoder crashed (signal 11, SIGSEGV)", None, "timed out after 1 s", None]
    assert (out / "ok00001.heatmap.png").exists() and not (out / "crash.json").exists()
    assert "explained 2 of 4" in res.stderr and "crash.png: decoder crashed" in res.stderr


def test_report_thumbnails_skip_crashing_and_hanging_files_with_the_reason(runner, cli, hostile, tmp_path):
    report = tmp_path / "r.parquet"
    run_ok(runner, cli, ["scan", str(hostile), "-o", str(report), "--workers", "1", "--model", "placeholder",
                         "--file-timeout", "1", "-q"])
    page = tmp_path / "r.html"
    res = run_ok(runner, cli, ["report", str(report), "-o", str(page), "--workers", "2", "--file-timeout", "1"])
    data = json.loads(page.read_text().split('<script id="data" type="application/json">')[1].split("</script>")[0])
    thumbs = {Path(r["path"]).name: r["thumb"] for r in data["rows"]}
    assert thumbs["crash.png"] is None and thumbs["hang.png"] is None
    assert thumbs["ok00000.png"].startswith("data:image/jpeg") and thumbs["ok00001.png"]
    assert "crash.png: no thumbnail: decoder crashed (signal 11, SIGSEGV)" in res.stderr
    assert "hang.png: no thumbnail: timed out after 1 s" in res.stderr


def test_generate_input_gives_a_crashing_and_a_hanging_file_an_error_row(runner, cli, hostile, tmp_path):
    out = tmp_path / "recon"
    res = run_ok(runner, cli, ["generate", "--model", "test-autogan", "--untrained", "--input", str(hostile),
                               "-o", str(out), "--file-timeout", "1", "--threads", "1"])
    rows = {r["input"]: r for r in csv.DictReader(open(out / "reconstructions.csv"))}
    assert set(rows) == {"crash.png", "hang.png", "ok00000.png", "ok00001.png"}
    assert rows["crash.png"]["status"] == "error" and rows["crash.png"]["error"] == "decoder crashed (signal 11, SIGSEGV)"
    assert rows["hang.png"]["error"] == "timed out after 1 s"
    assert rows["ok00001.png"]["status"] == "ok" and (out / "ok00001.png").exists()
    assert "2 errors" in res.stderr


class _Killed(BaseException):
    """Stands for a SIGKILL of the whole scan: nothing after it runs, the journal stays behind."""


def test_a_crashed_file_is_journaled_at_once_and_resume_does_not_decode_it_again(runner, cli, tmp_path,
                                                                                 monkeypatch):
    import ganscan.detectors.inference as inference
    from ganscan.reports.sink import ReportFile

    folder = tmp_path / "imgs"
    write_images(folder, 6, size=(48, 40))
    (folder / "crash.png").write_bytes((folder / "img00000.png").read_bytes())
    marks = tmp_path / "marks"
    marks.mkdir()
    original = inference.decode_image

    def decode_image(data, info, *args):
        if os.path.basename(info.path) == "crash.png":
            (marks / f"{os.getpid()}").touch()      # the decoder met the file (in this worker)
            os.kill(os.getpid(), signal.SIGSEGV)
        return original(data, info, *args)

    monkeypatch.setattr(inference, "decode_image", decode_image)
    report = tmp_path / "r.jsonl"
    batches = []

    def killed_append(self, rows):
        if len(rows) > 1:                             # the first whole batch: the scan dies before journaling it
            batches.append(rows)
            raise _Killed()
        return real_append(self, rows)

    real_append = ReportFile.append
    monkeypatch.setattr(ReportFile, "append", killed_append)
    args = ["scan", str(folder), "-o", str(report), "--workers", "2", "--batch-size", "64", "--model", "placeholder",
            "-q"]
    with pytest.raises(_Killed):
        runner.invoke(cli, args)
    assert batches
    journal = [json.loads(x) for x in (tmp_path / "r.jsonl.partial.jsonl").read_text().splitlines()]
    assert [(Path(r["path"]).name, r["error"]) for r in journal] == [("crash.png", "decoder crashed (signal 11, SIGSEGV)")]
    assert journal[0]["model"] and journal[0]["scanned_at"]      # a finished row, not a stub
    assert len(list(marks.iterdir())) == 1

    monkeypatch.setattr(ReportFile, "append", real_append)
    run_ok(runner, cli, [*args, "--resume"])
    assert len(list(marks.iterdir())) == 1                       # not decoded again: no crash loop
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in folder.iterdir())
    crash = [r for r in rows if r["path"].endswith("crash.png")]
    assert len(crash) == 1 and crash[0]["error"] == "decoder crashed (signal 11, SIGSEGV)"
    assert sum(r["verdict"] in ("real", "fake") for r in rows) == 6


def _zero_png(path: Path, width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> None:
    """A valid PNG of zeros written row by row: a few hundred kB on disk whatever its pixel count."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    channels = {0: 1, 2: 3, 6: 4}[color_type]
    row = b"\x00" * (1 + width * channels * bit_depth // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth,
                                                                        color_type, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_decode_cost_guard_refuses_before_decoding(tmp_path):
    from ganscan.data.decode import DecodeError, decode_cost, load_image

    assert decode_cost(100, 100, "RGB") == 100 * 100 * 7   # the decoded frame and the RGB array
    assert decode_cost(100, 100, "I;16") > decode_cost(100, 100, "RGBA") > decode_cost(100, 100, "RGB")
    _zero_png(tmp_path / "gray16.png", 2000, 1500, bit_depth=16, color_type=0)
    img, _ = load_image(str(tmp_path / "gray16.png"))              # fine under the default limit
    assert img.size == (2000, 1500)
    need = decode_cost(2000, 1500, "I;16")
    with pytest.raises(DecodeError, match=r"2000x1500 I;16 would need about 74 MB to decode, over the per-file "
                                          r"memory limit of 70 MB \(raise it with --max-decode-mb\)"):
        load_image(str(tmp_path / "gray16.png"), max_bytes=70 * 2 ** 20)
    load_image(str(tmp_path / "gray16.png"), max_bytes=need)         # the limit is inclusive


def test_scan_gives_a_memory_hungry_file_an_error_row(runner, cli, tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 3, size=(64, 48))
    _zero_png(folder / "big.png", 6000, 5000)                        # 30 MP: ~200 MB to decode
    res = run_ok(runner, cli, ["scan", str(folder), "--model", "placeholder", "--max-decode-mb", "150",
                               "--format", "jsonl", "-q", "--workers", "1"])
    rows = {Path(r["path"]).name: r for r in map(json.loads, res.stdout.splitlines())}
    assert len(rows) == 4 and rows["big.png"]["verdict"] == "error"
    assert rows["big.png"]["error"].startswith("6000x5000 RGB would need about 200 MB")
    assert all(rows[n]["verdict"] in ("real", "fake") for n in rows if n != "big.png")
    bad = runner.invoke(cli, ["scan", str(folder), "--max-decode-mb", "0"])
    assert bad.exit_code == 2 and "--max-decode-mb" in bad.output
