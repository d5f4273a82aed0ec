"""Evidence beside the score: hashes, generator metadata, C2PA, JPEG quality, the combined verdict."""

import io
import json
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import EDGE, PHOTOS, run_ok
from ganscan.data import provenance as pv
from ganscan.reports.sink import verify_sidecar

XMP_AI = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
          b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
          b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="Some Diffusion App" '
          b'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>'
          b'</rdf:RDF></x:xmpmeta>')


def _rows(runner, cli, *paths):
    # the untrained placeholder: verdicts then come from metadata alone, whatever detector is the default
    res = run_ok(runner, cli, ["scan", *map(str, paths), "--workers", "0", "--model", "placeholder"])
    return {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, res.stdout.splitlines())}


def _photo(rng_seed=0, size=(160, 120)):
    rng = np.random.default_rng(rng_seed)
    base = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return Image.fromarray(base).resize(size, Image.BICUBIC)


def test_generator_metadata_gives_fake_metadata_verdict(runner, cli, tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a portrait, Steps: 20, Sampler: Euler a, Seed: 42")
    _photo().save(tmp_path / "sd.png", pnginfo=info)
    _photo(1).save(tmp_path / "xmp.jpg", quality=90, xmp=XMP_AI)
    _photo(2).save(tmp_path / "plain.png")
    rows = _rows(runner, cli, tmp_path)
    assert rows["sd.png"]["generator_text"]["parameters"].startswith("a portrait")
    assert rows["sd.png"]["evidence_verdict"] == "fake (metadata)"
    x = rows["xmp.jpg"]
    assert (x["xmp"], x["digital_source_type"], x["xmp_creator_tool"]) == (
        "valid", "trainedAlgorithmicMedia", "Some Diffusion App")
    assert x["evidence_verdict"] == "fake (metadata)"
    assert any("trainedAlgorithmicMedia" in s for s in x["evidence_generation"])
    # no metadata and an untrained placeholder model: nothing to conclude
    assert rows["plain.png"]["evidence_verdict"] == "inconclusive"
    assert rows["plain.png"]["generator_text"] is None


def test_malformed_xmp_and_broken_c2pa_are_invalid_not_fatal(runner, cli, tmp_path):
    _photo().save(tmp_path / "badxmp.jpg", quality=90, xmp=XMP_AI.replace(b"</rdf:RDF>", b"</rdf:BROKEN>"))
    buf = io.BytesIO()
    _photo(3).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    payload = b"JP\x00\x01\x00\x00\x00\x01" + b"\x00\x00\x00\x40jumb\x00\x00\x00\x20jumdc2pa" + b"\x00" * 40
    seg = b"\xff\xeb" + struct.pack(">H", len(payload) + 2) + payload
    (tmp_path / "badc2pa.jpg").write_bytes(data[:2] + seg + data[2:])
    rows = _rows(runner, cli, tmp_path)
    assert rows["badxmp.jpg"]["xmp"] == "invalid" and rows["badxmp.jpg"]["score"] is not None
    assert "XMP malformed" in rows["badxmp.jpg"]["flags"]
    assert rows["badc2pa.jpg"]["c2pa"] == "invalid" and rows["badc2pa.jpg"]["score"] is not None
    assert "C2PA manifest invalid" in rows["badc2pa.jpg"]["flags"]


@pytest.mark.parametrize("q", [30, 50, 75, 90, 95])
def test_jpeg_quality_estimate(q):
    buf = io.BytesIO()
    _photo().save(buf, "JPEG", quality=q)
    assert abs(pv.jpeg_quality(Image.open(buf).quantization) - q) <= 1


def test_perceptual_hashes_survive_recompression_and_tell_images_apart():
    a = _photo(0, (320, 240))
    buf = io.BytesIO()
    a.save(buf, "JPEG", quality=60)
    a2 = Image.open(buf).convert("RGB").resize((200, 150))
    b = _photo(5, (320, 240))
    for h in (pv.phash, pv.dhash):
        assert len(h(a)) == 16
        assert pv.hamming(h(a), h(a2)) <= 8
        assert pv.hamming(h(a), h(b)) > 12
        assert h(a.convert("L")) == h(a)   # the scan hands both hashes one greyscale copy: the same hash


def test_camera_evidence_and_reliability_flags(runner, cli):
    rows = _rows(runner, cli, PHOTOS)
    iphone = rows["apple-iphone-4.jpg"]
    assert any(s.startswith("camera EXIF Apple") for s in iphone["evidence_camera"])
    assert "GPS position" in iphone["evidence_camera"] and iphone["jpeg_quality"] >= 85
    row = {"verdict": "real", "score": 0.9, "width": 100, "height": 80, "jpeg_quality": 40, "exif": {}}
    ev = pv.assess(row, threshold=0.5, input_size=224, placeholder=False)
    assert ev["evidence_verdict"] == "inconclusive"
    assert "low JPEG quality (40)" in ev["flags"] and any(f.startswith("smaller") for f in ev["flags"])
    row.update(width=900, height=700, jpeg_quality=95)
    assert pv.assess(row, 0.5, 224, False)["evidence_verdict"] == "fake (detector)"
    row.update(score=0.55)
    assert pv.assess(row, 0.5, 224, False)["evidence_verdict"] == "inconclusive"  # near the threshold
    row.update(score=0.1)
    assert pv.assess(row, 0.5, 224, False)["evidence_verdict"] == "real"
    row.update(exif={"EXIF ExifImageWidth": "4000", "EXIF ExifImageLength": "3000"})
    assert any(f.startswith("resized since capture") for f in pv.assess(row, 0.5, 224, False)["flags"])


def test_report_sidecar_shows_tampering(runner, cli, tmp_path):
    out = tmp_path / "r.parquet"
    run_ok(runner, cli, ["scan", str(EDGE / "hopper.webp"), "-o", str(out), "--workers", "0"])
    side = tmp_path / "r.parquet.sha256"
    assert side.exists() and verify_sidecar(out) is True
    assert subprocess.run(["sha256sum", "-c", side.name], cwd=tmp_path, capture_output=True).returncode == 0
    with open(out, "ab") as fh:
        fh.write(b"x")
    assert verify_sidecar(out) is False


def test_camera_file_resaved_by_software_is_flagged(runner, cli, tmp_path):
    src = PHOTOS / "apple-iphone-4.jpg"
    im = Image.open(src)
    im.save(tmp_path / "resaved.jpg", quality=90, exif=im.info["exif"])
    rows = _rows(runner, cli, src, tmp_path / "resaved.jpg")
    assert rows["apple-iphone-4.jpg"]["jpeg_tables"] == "custom"
    assert not any(f.startswith("re-compressed") for f in rows["apple-iphone-4.jpg"]["flags"])
    assert rows["resaved.jpg"]["jpeg_tables"] == "standard" and rows["resaved.jpg"]["jpeg_quality"] == 90
    assert any(f.startswith("re-compressed") for f in rows["resaved.jpg"]["flags"])


def test_nearest_neighbour_upscaling_is_measured_and_flagged(runner, cli, tmp_path):
    photo = Image.open(PHOTOS / "samsung-galaxy-s.jpg").convert("RGB")
    w, h = photo.size
    photo.save(tmp_path / "photo.png")
    for name, factor, f in (("nearest15", 1.5, Image.NEAREST), ("nearest2", 2, Image.NEAREST),
                            ("bicubic15", 1.5, Image.BICUBIC)):
        photo.resize((round(w * factor), round(h * factor)), f).save(tmp_path / f"{name}.png")
    res = run_ok(runner, cli, ["scan", str(tmp_path), "--workers", "0", "--format", "jsonl", "-q"])
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, res.stdout.splitlines())}
    rep = {k: rows[f"{k}.png"]["repeated_lines"] for k in ("photo", "nearest15", "nearest2", "bicubic15")}
    # nearest 1.5x repeats one line in three, 2x one in two; the photo and its bicubic enlargement about none
    assert abs(rep["nearest15"] - 1 / 3) < 0.02 and abs(rep["nearest2"] - 0.5) < 0.02
    assert rep["photo"] < 0.05 and rep["bicubic15"] < 0.05
    for k in ("nearest15", "nearest2"):
        assert any(f.startswith("up-scaled by pixel repetition") for f in rows[f"{k}.png"]["flags"])
        assert rows[f"{k}.png"]["evidence_verdict"] == "inconclusive"
    for k in ("photo", "bicubic15"):
        assert not any(f.startswith("up-scaled") for f in rows[f"{k}.png"]["flags"])
    flat = Image.new("RGB", (64, 64), (90, 90, 90))
    assert pv.repeated_lines(flat) is None and pv.repeated_lines(flat.resize((4, 4))) is None
