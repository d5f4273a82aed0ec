"""Safe decoding: every failure becomes a one-line reason, never an exception that stops a scan."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ganscan.data.formats import sniff

DEFAULT_MAX_PIXELS = 150_000_000  # a 150 MP frame; 12 MP phone photos and 100 MP backs pass
DEFAULT_MAX_DECODE_BYTES = 3072 * 2 ** 20  # memory one file may need to decode: a 150 MP RGB image passes
DEFAULT_FILE_TIMEOUT = 60.0  # seconds a supervised decoding worker may spend on one file

_registered = False


def register_plugins() -> None:
    """HEIC/HEIF (and AVIF where Pillow lacks it) through pillow-heif; idempotent."""
    global _registered
    if _registered:
        return
    _registered = True
    Image.MAX_IMAGE_PIXELS = None  # our own guard below runs before any pixel is decoded
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        if hasattr(pillow_heif, "register_avif_opener") and "AVIF" not in Image.registered_extensions().values():
            pillow_heif.register_avif_opener()
    except ImportError:
        pass


class DecodeError(Exception):
    """One-line reason a file could not become an image."""


@dataclass
class FileInfo:
    path: str
    bytes: int | None = None
    mtime_us: int | None = None  # modification time, integer microseconds since the epoch
    ctime_us: int | None = None  # inode change time
    sha256: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    notes: list[str] = field(default_factory=list)
    text: dict = field(default_factory=dict)  # text chunks of the file (PNG tEXt/iTXt, ...)
    quantization: dict | None = None  # JPEG quantisation tables
    subsampling: int | None = None  # JPEG chroma subsampling as Pillow numbers it (0 4:4:4, 1 4:2:2, 2 4:2:0)


def read_file(path: str) -> tuple[bytes, FileInfo]:
    """Bytes and stat of a file; OSErrors become DecodeError with a readable reason."""
    info = FileInfo(path=path)
    try:
        st = os.stat(path)
        info.bytes, info.mtime_us, info.ctime_us = st.st_size, st.st_mtime_ns // 1000, st.st_ctime_ns // 1000
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DecodeError("file vanished before it could be read") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except IsADirectoryError:
        raise DecodeError("is a directory") from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise DecodeError(f"cannot read file: {reason}") from None
    info.sha256 = hashlib.sha256(data).hexdigest()
    info.bytes = len(data)
    return data, info


def decode_cost(width: int, height: int, mode: str) -> int:
    """Bytes one image of this size and Pillow mode may need at once while it is decoded, turned into RGB
    (``to_rgb``) and handed on as an array: Pillow's own frame (4 bytes a pixel for RGB, RGBA, CMYK, I, F;
    2 for 16-bit; 1 for L and P), the conversion's intermediates, then the RGB array handed on (3)."""
    stored = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    if mode == "RGB":
        convert = 0
    elif mode.startswith("I;16") or mode in ("I", "F"):
        convert = 21   # int64 or float64 arrays, the uint8 result and its RGB image
    elif mode in ("P", "PA", "RGBA", "LA", "RGBa", "La", "L", "1"):
        convert = 16   # an RGBA copy, the white background, the composite, the RGB result
                       # (L and 1 need less unless they carry transparency)
    else:
        convert = 4
    return width * height * (stored + convert + 3)


def decode_image(data: bytes, info: FileInfo, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> Image.Image:
    """An 8-bit RGB image with EXIF orientation applied. Fills ``info.format/width/height``.

    Two guards run on the header, before any pixel is decoded: ``max_pixels`` (width x height) and
    ``max_bytes`` (the memory decoding would need, ``decode_cost``)."""
    register_plugins()
    if not data:
        raise DecodeError("empty file (0 bytes)")
    fmt = sniff(data[:64])
    info.format = fmt
    if fmt is None and not info.path.lower().endswith((".tga", ".icb", ".vda", ".vst")):
        raise DecodeError("not a recognised image format")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            info.format = _format_name(im.format or fmt)
            w, h = im.size
            if w <= 0 or h <= 0:
                raise DecodeError(f"invalid image size {w}x{h}")
            if w * h > max_pixels:
                raise DecodeError(
                    f"{w}x{h} = {w * h / 1e6:.0f} MP exceeds the pixel limit of {max_pixels / 1e6:.0f} MP "
                    "(decompression-bomb guard; raise it with --max-pixels)")
            need = decode_cost(w, h, im.mode)
            if need > max_bytes:
                raise DecodeError(
                    f"{w}x{h} {im.mode} would need about {need / 2 ** 20:,.0f} MB to decode, over the per-file "
                    f"memory limit of {max_bytes / 2 ** 20:,.0f} MB (raise it with --max-decode-mb)")
            if getattr(im, "n_frames", 1) > 1:
                info.notes.append("animated: first frame")
            im.seek(0)
            im.load()
            info.quantization = getattr(im, "quantization", None)
            if im.format == "JPEG":
                from PIL import JpegImagePlugin

                info.subsampling = JpegImagePlugin.get_sampling(im)
            from ganscan.data.provenance import image_text

            info.text = image_text(im)
            im = _orient(im, info)
            rgb = to_rgb(im)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb: {exc}") from None
    except MemoryError:
        raise DecodeError("out of memory while decoding") from None
    except Exception as exc:
        raise DecodeError(describe_decode_error(exc, fmt)) from None
    info.width, info.height = rgb.size
    return rgb


def describe_decode_error(exc: BaseException, fmt: str | None) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = text.lower()
    kind = fmt or "image"
    if "truncated" in low or "premature end" in low or isinstance(exc, EOFError):
        return f"truncated {kind} file: {text}"[:200]
    if isinstance(exc, Image.UnidentifiedImageError) or "cannot identify" in low:
        return f"corrupt or unsupported {kind} data: cannot identify image"
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == errno.ENOENT:
        return "file vanished while decoding"
    return f"corrupt {kind} data: {text}"[:200]


def _format_name(fmt: str | None) -> str | None:
    return "JPEG" if fmt == "MPO" else fmt


# EXIF orientations that move pixels (1 is upright; other values are invalid and ignored, as PIL ignores them)
_TRANSPOSING = frozenset(range(2, 9))


def _orient(im: Image.Image, info: FileInfo) -> Image.Image:
    try:
        if im.getexif().get(0x0112, 1) not in _TRANSPOSING:
            return im   # upright: PIL's exif_transpose would return a copy (~0.1 s for a 12 MP image)
        out = ImageOps.exif_transpose(im)
        return out if out is not None else im
    except Exception:
        info.notes.append("EXIF orientation unreadable: not applied")
        return im


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit scaled (not clipped), alpha composited on white,
    palette transparency honoured, CMYK/YCbCr/LAB converted."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    elif mode in ("L", "1") and "transparency" in im.info:
        im = im.convert("LA")
        mode = "LA"
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        arr = np.asarray(im)
        if mode == "F":
            arr = arr.astype(np.float64)
            hi = 1.0 if np.nanmax(arr) <= 1.0 else 255.0
            arr8 = np.clip(np.nan_to_num(arr) / hi * 255.0, 0, 255).round().astype(np.uint8)
        else:
            arr = arr.astype(np.int64)
            big = mode.startswith("I;16") or arr.max(initial=0) > 255
            arr8 = np.clip(arr / 257.0 if big else arr, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def load_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> tuple[Image.Image, FileInfo]:
    """Read and decode one file (no EXIF): the entry point for training data."""
    data, info = read_file(path)
    return decode_image(data, info, max_pixels, max_bytes), info
