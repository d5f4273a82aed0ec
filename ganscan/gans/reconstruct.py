"""Reconstructing real images through an AutoGAN autoencoder: the simulated fakes of the AutoGAN recipe.

Every input file gives one output file with the same relative path (so real and reconstruction pair up by
name) and one row in ``OUT/reconstructions.csv``: written, or an error with its one-line reason. Sizes that
are not a multiple of the autoencoder's stride are padded (reflect) and the output cropped back to the input's
size; images smaller than the autoencoder's receptive field are refused. Large images are processed in
overlapping tiles, so memory stays bounded whatever the image size.

Format (``fmt="same"``, the default): a JPEG input is written as JPEG with the input's own quantisation tables
and chroma subsampling, anything else as PNG, so real and reconstruction never differ by format.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganscan.core.checkpoint import atomic_write_bytes
from ganscan.core.runs import CsvLog
from ganscan.data.decode import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_DECODE_BYTES
from ganscan.errors import GanscanError
from ganscan.gans.registry import LoadedGenerator

FIELDS = ("input", "output", "width", "height", "status", "note", "error")
MANIFEST = "reconstructions.csv"
FORMATS = ("same", "png", "jpg")


@dataclass
class ReconstructResult:
    written: int = 0
    errors: int = 0
    padded: int = 0
    out_dir: Path | None = None
    manifest: Path | None = None
    seconds: float = 0.0


def min_side(gen: LoadedGenerator) -> int:
    """Smallest input side accepted: twice the total stride (below it the bottleneck has one pixel)."""
    return 2 * 2 ** int(gen.meta.get("options", {}).get("layers", getattr(gen.model, "layers", 1)))


def reconstruct_array(model: torch.nn.Module, rgb: np.ndarray, tile: int = 512, margin: int = 32) -> tuple[np.ndarray, str]:
    """uint8 (H, W, 3) -> (its reconstruction, a note on padding). Tiles of ``tile`` px with ``margin`` px of
    context on each side, stitched without seams beyond the margin."""
    m = model.multiple
    h, w = rgb.shape[:2]
    ph, pw = (-h) % m, (-w) % m
    note = f"padded {ph}x{pw} px (reflect) to a multiple of {m}, output cropped back to {w}x{h}" if ph or pw else ""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div(127.5).sub(1.0)[None]
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
    H, W = x.shape[-2:]
    out = torch.empty_like(x)
    tile = max(m, tile - tile % m)
    margin = margin + (-margin) % m
    with torch.inference_mode():
        if H <= tile + 2 * margin and W <= tile + 2 * margin:
            out = model(x)
        else:
            for y0 in range(0, H, tile):
                for x0 in range(0, W, tile):
                    y1, x1 = min(y0 + tile, H), min(x0 + tile, W)
                    ya, xa = max(0, y0 - margin), max(0, x0 - margin)
                    yb, xb = min(H, y1 + margin), min(W, x1 + margin)
                    rec = model(x[..., ya:yb, xa:xb])
                    out[..., y0:y1, x0:x1] = rec[..., y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    out = out[0, :, :h, :w].add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return out.permute(1, 2, 0).numpy(), note


def _out_path(out: Path, rel: str, fmt: str, src_format: str | None) -> tuple[Path, str]:
    kind = fmt if fmt != "same" else ("jpg" if src_format == "JPEG" else "png")
    p = out / rel
    ext = {"jpg": (".jpg", ".jpeg"), "png": (".png",)}[kind]
    if p.suffix.lower() not in ext:
        p = p.with_name(p.name + ext[0])  # photo.bmp -> photo.bmp.png: never two inputs onto one output
    return p, kind


def reconstruct_folder(gen: LoadedGenerator, input_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       fmt: str = "same", quality: int = 95, force: bool = False, max_pixels: int | None = None,
                       progress=None, on_error=None, file_timeout: float | None = DEFAULT_FILE_TIMEOUT,
                       max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> ReconstructResult:
    """Write the reconstruction of every image under ``input_dir`` to ``out_dir`` (see the module docstring).
    Inputs are decoded in a supervised worker: one that crashes or hangs the decoder is an error row."""
    from ganscan.data.decode import DEFAULT_MAX_PIXELS, DecodeError
    from ganscan.data.discover import discover
    from ganscan.data.supervise import decoded_images

    if fmt not in FORMATS:
        raise GanscanError(f"unsupported format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    src = Path(input_dir)
    if not src.is_dir():
        raise GanscanError(f"not a folder: {src}", hint="--input takes a folder of real images")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GanscanError(f"{out} exists and is not a folder")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise GanscanError("the output folder must not be inside --input", hint="choose another -o")
    manifest = out / MANIFEST
    if manifest.exists() and not force:
        raise GanscanError(f"{out} already holds reconstructions ({MANIFEST})", hint="pass --force or another -o")
    files = [f.path for f in discover([str(src)], recursive=True)]
    if progress is not None:
        progress.update(total=len(files))
    out.mkdir(parents=True, exist_ok=True)
    model = gen.model.eval()
    smallest = min_side(gen)
    res = ReconstructResult(out_dir=out, manifest=manifest)
    t0 = time.monotonic()
    rows = []
    for path, im, info, error in decoded_images(files, max_pixels or DEFAULT_MAX_PIXELS, file_timeout, max_bytes):
        rel = os.path.relpath(path, src)
        row = {"input": rel, "output": "", "width": "", "height": "", "status": "error", "note": "", "error": ""}
        try:
            if error is not None:
                raise DecodeError(error)
            row["width"], row["height"] = im.size
            if min(im.size) < smallest:
                raise DecodeError(f"{im.size[0]}x{im.size[1]} is smaller than the autoencoder's minimum "
                                  f"{smallest}x{smallest} px")
            rec, note = reconstruct_array(model, np.asarray(im))
            dest, kind = _out_path(out, rel, fmt, info.format)
            dest.parent.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(rec)
            buf = io.BytesIO()
            if kind == "jpg" and fmt == "same" and info.quantization:
                img.save(buf, "JPEG", qtables=[info.quantization[k] for k in sorted(info.quantization)],
                         subsampling=info.subsampling if info.subsampling in (0, 1, 2) else 2)
                note = "; ".join(x for x in (note, "JPEG with the input's quantisation tables") if x)
            elif kind == "jpg":
                img.save(buf, "JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
            else:
                img.save(buf, "PNG")
            atomic_write_bytes(dest, buf.getvalue())
            row.update(output=os.path.relpath(dest, out), status="ok", note=note)
            res.written += 1
            res.padded += bool(note.startswith("padded"))
        except DecodeError as exc:
            row["error"] = str(exc)
        except (OSError, ValueError, RuntimeError) as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        if row["status"] == "error":
            res.errors += 1
            if on_error is not None:
                on_error(f"{path}: {row['error']}")
        rows.append(row)
        if progress is not None:
            progress.update(advance=1)
    CsvLog(manifest, FIELDS).write(rows)
    res.seconds = time.monotonic() - t0
    return res
