"""Per-file guards: the memory guard refuses, from the header, an image too large to decode."""

import json
import struct
import zlib
from pathlib import Path

import pytest

from conftest import run_ok, write_images


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

    assert decode_cost(100, 100, "RGB") == 100 * 100 * 11
    assert decode_cost(100, 100, "I;16") > decode_cost(100, 100, "RGBA") > decode_cost(100, 100, "RGB")
    _zero_png(tmp_path / "gray16.png", 2000, 1500, bit_depth=16, color_type=0)
    img, _ = load_image(str(tmp_path / "gray16.png"))              # fine under the default limit
    assert img.size == (2000, 1500)
    need = decode_cost(2000, 1500, "I;16")
    with pytest.raises(DecodeError, match=r"2000x1500 I;16 would need about 86 MB to decode, over the per-file "
                                          r"memory limit of 80 MB \(raise it with --max-decode-mb\)"):
        load_image(str(tmp_path / "gray16.png"), max_bytes=80 * 2 ** 20)
    load_image(str(tmp_path / "gray16.png"), max_bytes=need)         # the limit is inclusive


def test_scan_gives_a_memory_hungry_file_an_error_row(runner, cli, tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 3, size=(64, 48))
    _zero_png(folder / "big.png", 6000, 5000)                        # 30 MP: ~330 MB to decode
    res = run_ok(runner, cli, ["scan", str(folder), "--model", "placeholder", "--max-decode-mb", "200",
                               "--format", "jsonl", "-q", "--workers", "1"])
    rows = {Path(r["path"]).name: r for r in map(json.loads, res.stdout.splitlines())}
    assert len(rows) == 4 and rows["big.png"]["verdict"] == "error"
    assert rows["big.png"]["error"].startswith("6000x5000 RGB would need about 315 MB")
    assert all(rows[n]["verdict"] in ("real", "fake") for n in rows if n != "big.png")
    bad = runner.invoke(cli, ["scan", str(folder), "--max-decode-mb", "0"])
    assert bad.exit_code == 2 and "--max-decode-mb" in bad.output
