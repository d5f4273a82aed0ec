#!/usr/bin/env python3
"""A tiles detector with another tile cap or tile grid, its threshold recalibrated: the v8 candidates.

    python examples/retile.py ganscan-fusion-v4 --tiles 64 --calibrate runs/twins/heldout/calib --fpr 0.05 \\
        --name ganscan-fusion-v8 -o runs/twins/run-v8/fused64.safetensors

Every tiles detector scores at most ``max_tiles`` tiles of its input size, evenly spread over the image
(``ganscan.detectors.preprocess.tile_array``), and averages their logits. The cap is part of the
checkpoint's preprocessing. This writes the same tensors with another cap and the threshold chosen again by
the fusion's rule: the lowest at which no calibration kind of real photo (each folder under ``--calibrate``)
is flagged more than ``--fpr`` of the time. Images with no more tiles than the old cap score exactly as
before; only larger images read more of their area. ``--align N`` puts the tile grid's origin on a multiple of N
(the v16 control: ``python examples/retile.py ganscan-fusion-v10 --align 8 ...``); images whose centred grid
already starts there (128, 256, 512 px) score exactly as before. ``--half-tiles K`` adds a second read (C43, rule
``docs/selection-rule-v37.txt``): up to K tiles of the image reduced 2x by box averaging, the larger of the two reads'
mean logits kept; images with a side under twice the tile score exactly as before. ``--half-margin M`` (C44, rule
``docs/selection-rule-v38.txt``; ``examples/two_scale.py`` chooses it) makes the half-size read count only when its
mean logit exceeds the native one by M; ``--half-filter lanczos`` halves with PIL's Lanczos resize instead of 2x2 boxes,
and ``--half-lossless`` keeps the half-size read for lossless files (C45, rule ``docs/selection-rule-v39.txt``).
``--tile-stride S`` (C48, rule ``docs/selection-rule-v42.txt``; ``examples/overlap_tiles.py`` chooses it): a read whose
non-overlapping grid holds fewer tiles than its cap takes them at stride S instead (overlapping); images that fill
the cap score exactly as before; ``--stride-jpeg-only`` (C49, rule ``docs/selection-rule-v43.txt``) makes that read for
JPEG files only. ``--half-jpeg-side N --half-jpeg-margin M`` (C51, rule ``docs/selection-rule-v45.txt``;
``examples/two_scale.py --rule v45`` chooses M) gives a JPEG file with both sides at least N px the half-size read
too, at margin M, when the read is otherwise for lossless files. ``--tile-pool P`` (C53, rule
``docs/selection-rule-v47.txt``; ``examples/tile_pool.py`` chooses it) pools each read's tile logits by P instead of
their mean (``ganscan.detectors.preprocess.pool_logits``); ``--pool-jpeg-only`` (C54, rule ``docs/selection-rule-v48.txt``)
for JPEG files only.

    python examples/retile.py ganscan-fusion-v10 --half-tiles 4 --calibrate runs/twins/heldout/calib \
        runs/twins/heldout/calib-frac --fpr 0.05 --name ganscan-fusion-v37 -o runs/twins/c43/fused.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def retile(model: str, tiles: int | None, calibrate: list[str], fpr: float, name: str, output: Path,
           align: int | None = None, half_tiles: int | None = None, half_margin: float | None = None,
           half_filter: str | None = None, half_lossless: bool | None = None, tile_stride: int | None = None,
           stride_jpeg_only: bool | None = None, half_jpeg_side: int | None = None,
           half_jpeg_margin: float | None = None, tile_pool: str | None = None,
           pool_jpeg_only: bool | None = None, precision: str = "auto") -> dict:
    """Write ``output`` (``model``'s tensors, tile cap ``tiles``, grid alignment ``align`` and half-size read
    ``half_tiles`` with its margin, filter and files, tile pooling ``tile_pool``, each kept when None; recalibrated
    threshold, scored in ``precision``: ``auto`` is bf16 where the CPU has it natively, else fp32, and the two can set
    different thresholds; the one used is recorded as ``threshold_precision``); its metadata."""
    from dataclasses import replace

    from ganscan.core.checkpoint import load_checkpoint, save_checkpoint
    from ganscan.core.device import choose_precision, configure_threads, default_workers, resolve_device
    from ganscan.data.datasets import test_sets
    from ganscan.detectors.evaluate import EvalSettings
    from ganscan.detectors.load import load_detector, resolve_detector
    from ganscan.detectors.zoo.fusion import calibrate as calibrate_threshold
    from ganscan.errors import DataError

    src = resolve_detector(model)
    state, meta = load_checkpoint(src)
    old = dict(meta.get("preprocessing") or {})
    if old.get("policy") != "tiles":
        raise DataError(f"{model}: preprocessing {old.get('policy', 'unknown')!r}, not tiles: no tile cap to change")
    det = load_detector(str(src))   # scored as the new checkpoint will score: the same network, the new reads
    given = {"max_tiles": tiles, "tile_align": align, "half_tiles": half_tiles, "half_margin": half_margin,
             "half_filter": half_filter, "half_lossless": half_lossless, "tile_stride": tile_stride,
             "stride_jpeg_only": stride_jpeg_only, "half_jpeg_side": half_jpeg_side, "half_jpeg_margin": half_jpeg_margin,
             "tile_pool": tile_pool, "pool_jpeg_only": pool_jpeg_only}
    cfg = replace(det.config, **{k: v for k, v in given.items() if v is not None})
    pre = cfg.preprocessing()   # settings at their defaults are left out, as every checkpoint writes them
    meta = {**meta, "preprocessing": pre, "name": name,
            "retiled_from": {"name": meta.get("name") or src.stem, **{k: getattr(det.config, k) for k in given}}}
    configure_threads()
    prec = choose_precision(resolve_device("auto"), precision)
    settings = EvalSettings(workers=default_workers())
    sets = [s for d in calibrate for s in test_sets(d)]
    det = replace(det, config=cfg)
    meta.update(calibrate_threshold(det, sets, fpr, prec, settings))   # with threshold_precision
    output.parent.mkdir(parents=True, exist_ok=True)
    sha = save_checkpoint(output, state, meta)
    print(f"wrote {output} (max_tiles {pre['max_tiles']}, tile_align {pre.get('tile_align', 1)}, "
          f"half_tiles {pre.get('half_tiles', 0)}, half_margin {pre.get('half_margin', 0):g}, "
          f"half_filter {pre.get('half_filter', 'box')}, half_lossless {bool(pre.get('half_lossless'))}, "
          f"tile_stride {pre.get('tile_stride', 0)}{' (JPEG files)' if pre.get('stride_jpeg_only') else ''}, "
          f"JPEG half-size read from {pre.get('half_jpeg_side', 0)} px at margin {pre.get('half_jpeg_margin', 0):g}, "
          f"tile pooling {pre.get('tile_pool', 'mean')}{' (JPEG files)' if pre.get('pool_jpeg_only') else ''}, "
          f"threshold {meta['threshold']:.4f} ({prec.name}), sha256 {sha})")
    return meta


def main() -> None:
    from ganscan.detectors.registry import TILE_POOLS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a shipped name or a checkpoint file with the tiles policy")
    ap.add_argument("--tiles", type=int, default=None, help="the new cap on tiles per image")
    ap.add_argument("--align", type=int, default=None, help="the tile grid's origin on a multiple of N pixels")
    ap.add_argument("--half-tiles", type=int, default=None,
                    help="also read up to K tiles of the image reduced 2x, keeping the larger mean logit (0: no such read)")
    ap.add_argument("--half-margin", type=float, default=None,
                    help="the half-size read counts only when its mean logit exceeds the native one by this")
    ap.add_argument("--half-filter", choices=["box", "lanczos"], default=None, help="the half-size read's reduction")
    ap.add_argument("--half-lossless", action="store_true", default=None,
                    help="the half-size read for lossless files only (a JPEG keeps its native score)")
    ap.add_argument("--tile-stride", type=int, default=None,
                    help="overlapping tiles at this stride when an image's grid is under the cap (0: never)")
    ap.add_argument("--stride-jpeg-only", action="store_true", default=None,
                    help="the overlapping tiles of --tile-stride for JPEG files only")
    ap.add_argument("--half-jpeg-side", type=int, default=None,
                    help="with --half-lossless: JPEG files with both sides at least N px get the half-size read too")
    ap.add_argument("--half-jpeg-margin", type=float, default=None, help="the margin of that JPEG half-size read")
    ap.add_argument("--tile-pool", choices=TILE_POOLS, default=None,
                    help="how a read's tile logits become one (C53, rule v47; default: kept)")
    ap.add_argument("--pool-jpeg-only", action="store_true", default=None,
                    help="the --tile-pool pooling for JPEG files only, the mean for the others (C54, rule v48)")
    ap.add_argument("--calibrate", nargs="+", required=True, help="folders of calibration kinds (0_real in each)")
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="the calibration scores' precision (auto: bf16 where the CPU has it natively, else fp32; the "
                         "shipped thresholds were set in bf16)")
    ap.add_argument("--name", required=True)
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    if args.half_margin is not None and args.half_margin < 0:
        sys.exit("error: --half-margin must be >= 0")
    if all(v is None for v in (args.tiles, args.align, args.half_tiles, args.half_margin, args.half_filter,
                               args.half_lossless, args.tile_stride, args.stride_jpeg_only, args.half_jpeg_side,
                               args.half_jpeg_margin, args.tile_pool, args.pool_jpeg_only)):
        sys.exit("error: give --tiles, --align, --tile-stride, --tile-pool or a --half-* setting (or several)")
    if args.tile_stride is not None and not 0 <= args.tile_stride <= 256:
        sys.exit("error: --tile-stride must be 0-256 (0: no overlapping tiles)")
    if args.half_jpeg_side is not None and args.half_jpeg_side < 0:
        sys.exit("error: --half-jpeg-side must be >= 0 (0: no half-size read for JPEG files)")
    if args.half_jpeg_margin is not None and args.half_jpeg_margin < 0:
        sys.exit("error: --half-jpeg-margin must be >= 0")
    if args.half_tiles is not None and not 0 <= args.half_tiles <= 64:
        sys.exit("error: --half-tiles must be 0-64")
    if args.tiles is not None and args.tiles < 1:
        sys.exit("error: --tiles must be at least 1")
    if args.align is not None and not 1 <= args.align <= 64:
        sys.exit("error: --align must be 1-64")
    from ganscan.errors import GanscanError

    try:
        retile(args.model, args.tiles, args.calibrate, args.fpr, args.name, args.output, args.align, args.half_tiles,
               args.half_margin, args.half_filter, args.half_lossless, args.tile_stride,
               args.stride_jpeg_only, args.half_jpeg_side, args.half_jpeg_margin, args.tile_pool,
               args.pool_jpeg_only, args.precision)
    except GanscanError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
