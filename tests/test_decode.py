"""Safe decoding of hostile and unusual files."""

import numpy as np
import pytest
from PIL import Image

from conftest import EDGE
from ganscan.data import decode
from ganscan.data.decode import DecodeError, decode_image, load_image, read_file
from ganscan.data.formats import sniff


def _load(name, **kw):
    img, info = load_image(str(EDGE / name), **kw)
    return np.asarray(img).astype(np.int16), info


def test_exif_orientation_is_applied():
    # the orientation_N files store the same picture transformed N ways; decoded, they must agree
    a, _ = _load("hopper_orientation_3.jpg")
    b, _ = _load("hopper_orientation_6.jpg")
    assert np.abs(a - b).mean() < 6
    raw = np.asarray(Image.open(EDGE / "hopper_orientation_6.jpg").convert("RGB")).astype(np.int16)
    assert np.abs(raw - b).mean() > 20  # without the transpose they would differ


def test_an_upright_image_is_not_copied_to_be_oriented(monkeypatch, tmp_path):
    # PIL's exif_transpose copies an upright image; the decoder hands it on as it is, a turned one still turns
    from PIL import ImageOps

    calls = []
    real = ImageOps.exif_transpose
    monkeypatch.setattr(ImageOps, "exif_transpose", lambda im, **kw: calls.append(im.size) or real(im, **kw))
    pic = Image.open(EDGE / "hopper_orientation_3.jpg").convert("RGB")
    for orientation in (None, 1, 9):   # no tag, upright, invalid: no transpose
        exif = Image.Exif()
        if orientation is not None:
            exif[0x0112] = orientation
        pic.save(tmp_path / f"o{orientation}.jpg", exif=exif.tobytes(), quality=95)
        got, _ = load_image(str(tmp_path / f"o{orientation}.jpg"))
        assert got.size == pic.size and calls == []
    _load("hopper_orientation_6.jpg")
    assert len(calls) == 1


def test_sixteen_bit_is_scaled_not_clipped():
    arr, info = _load("basn0g16.png")  # 16-bit grey gradient
    assert info.format == "PNG"
    assert arr.max() >= 250 and arr.min() <= 5
    assert len(np.unique(arr)) > 100  # clipping at 255 would leave a handful of values
    raw = np.asarray(Image.open(EDGE / "basn0g16.png")).astype(np.float64)
    assert np.abs(arr[..., 0] - np.round(raw / 257)).max() <= 1  # full 16-bit range onto 8 bits


def test_alpha_is_composited_on_white():
    img = Image.open(EDGE / "pil123rgba.png").convert("RGBA")
    alpha = np.asarray(img)[..., 3]
    arr, _ = _load("pil123rgba.png")
    transparent = alpha == 0
    assert transparent.any()
    assert (arr[transparent] == 255).all()


def test_palette_with_transparency_and_cmyk_become_rgb():
    for name in ("p_trns_single.png", "tRNS_null_1x1.png", "pil_sample_cmyk.jpg", "tiff_strip_cmyk_jpeg.tif",
                 "basn3p02.png", "pal8rle.bmp", "i_trns.png"):
        img, info = load_image(str(EDGE / name))
        assert img.mode == "RGB", name
        assert (info.width, info.height) == img.size
    # CMYK JPEGs from Adobe store inverted values: the result must not be a photographic negative
    cmyk, _ = _load("pil_sample_cmyk.jpg")
    ref = np.asarray(Image.open(EDGE / "pil_sample_cmyk.jpg").convert("RGB")).astype(np.int16)
    assert np.abs(cmyk - ref).max() == 0


@pytest.mark.parametrize("name,fmt", [("hopper.webp", "WEBP"), ("hopper.gif", "GIF"), ("rgb24.bmp", "BMP"),
                                      ("hopper.ico", "ICO"), ("avif__exif.avif", "AVIF"),
                                      ("cheers_1440x960.heic", "HEIF"), ("targa.tga", "TGA"),
                                      ("12in16bit.tif", "TIFF"), ("apng__mode_palette_alpha.png", "PNG")])
def test_formats_decode(name, fmt):
    img, info = load_image(str(EDGE / name))
    assert img.mode == "RGB" and img.size[0] > 0
    assert info.format == fmt


def test_animated_takes_first_frame():
    img, info = load_image(str(EDGE / "apng__mode_palette_alpha.png"))
    assert "animated: first frame" in info.notes


def test_type_by_content_not_extension(tmp_path):
    src = (EDGE / "hopper.webp").read_bytes()
    fake_ext = tmp_path / "looks_like.jpg"
    fake_ext.write_bytes(src)
    img, info = load_image(str(fake_ext))
    assert info.format == "WEBP"
    assert sniff(b"\x89PNG\r\n\x1a\n" + b"\0" * 20) == "PNG"
    assert sniff(b"hello world") is None


@pytest.mark.parametrize("name,needle", [
    ("broken.png", "corrupt"),
    ("truncated_jpeg.jpg", "truncated"),
    ("decompression_bomb.gif", "pixel limit"),
    ("cross_scan_line_truncated.tga", "truncated"),
    ("xs1n0g01.png", "not a recognised image format"),
])
def test_bad_files_give_one_line_reasons(name, needle):
    with pytest.raises(DecodeError) as err:
        load_image(str(EDGE / name))
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_pixel_limit_is_configurable():
    load_image(str(EDGE / "hopper.webp"), max_pixels=128 * 128)
    with pytest.raises(DecodeError, match="pixel limit"):
        load_image(str(EDGE / "hopper.webp"), max_pixels=128 * 127)


def test_empty_vanished_and_unreadable(tmp_path, monkeypatch):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty file"):
        load_image(str(empty))
    with pytest.raises(DecodeError, match="vanished"):
        read_file(str(tmp_path / "gone.jpg"))

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    ok = tmp_path / "ok.png"
    Image.new("RGB", (4, 4)).save(ok)
    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(DecodeError, match="permission denied"):
        read_file(str(ok))


def test_decode_fills_info(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGB", (30, 20), (10, 20, 30)).save(p)
    data, info = read_file(str(p))
    img = decode_image(data, info)
    assert img.mode == "RGB" and img.size == (30, 20)
    assert (info.width, info.height, info.format) == (30, 20, "PNG")
    assert len(info.sha256) == 64 and info.bytes == p.stat().st_size
    assert decode.to_rgb(Image.new("I;16", (2, 2), 65535)).getpixel((0, 0)) == (255, 255, 255)
