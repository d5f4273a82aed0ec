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
already starts there (128, 256, 512 px) score exactly as before.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def retile(model: str, tiles: int | None, calibrate: list[str], fpr: float, name: str, output: Path,
           align: int | None = None) -> dict:
    """Write ``output`` (``model``'s tensors, tile cap ``tiles`` and grid alignment ``align``, each kept when None;
    recalibrated threshold); its metadata."""
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
    pre = {**old, **({"max_tiles": int(tiles)} if tiles is not None else {}),
           **({"tile_align": int(align)} if align is not None else {})}
    meta = {**meta, "preprocessing": pre, "name": name,
            "retiled_from": {"name": meta.get("name") or src.stem, "max_tiles": int(old.get("max_tiles", 16)),
                             "tile_align": int(old.get("tile_align", 1))}}
    configure_threads()
    prec = choose_precision(resolve_device("auto"), "auto")
    settings = EvalSettings(workers=default_workers())
    sets = [s for d in calibrate for s in test_sets(d)]
    det = load_detector(str(src))   # scored as the new checkpoint will score: the same network, the new cap
    det = replace(det, config=det.config.with_preprocessing(pre))
    meta.update(calibrate_threshold(det, sets, fpr, prec, settings))
    output.parent.mkdir(parents=True, exist_ok=True)
    sha = save_checkpoint(output, state, meta)
    print(f"wrote {output} (max_tiles {pre['max_tiles']}, tile_align {pre.get('tile_align', 1)}, threshold {meta['threshold']:.4f}, sha256 {sha})")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a shipped name or a checkpoint file with the tiles policy")
    ap.add_argument("--tiles", type=int, default=None, help="the new cap on tiles per image")
    ap.add_argument("--align", type=int, default=None, help="the tile grid's origin on a multiple of N pixels")
    ap.add_argument("--calibrate", nargs="+", required=True, help="folders of calibration kinds (0_real in each)")
    ap.add_argument("--fpr", type=float, default=0.05)
    ap.add_argument("--name", required=True)
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    if args.tiles is None and args.align is None:
        sys.exit("error: give --tiles, --align or both")
    if args.tiles is not None and args.tiles < 1:
        sys.exit("error: --tiles must be at least 1")
    if args.align is not None and not 1 <= args.align <= 64:
        sys.exit("error: --align must be 1-64")
    from ganscan.errors import GanscanError

    try:
        retile(args.model, args.tiles, args.calibrate, args.fpr, args.name, args.output, args.align)
    except GanscanError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
