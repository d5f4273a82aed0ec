"""ganscan explain: heatmaps and spectra that show why an image scored as it did."""

from __future__ import annotations

from pathlib import Path

import click

from ganscan.cli import device_options, guard_options, quiet_option
from ganscan.errors import GanscanError

EXAMPLES = """
\b
Examples:
  ganscan explain suspicious.jpg -o evidence/
  ganscan explain a.png b.jpg -o out/ --model my-detector.safetensors --max-patches 400
"""


@click.command("explain", epilog=EXAMPLES)
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for the PNGs and JSON (created if missing).")
@click.option("-m", "--model", default=None, metavar="NAME|FILE", help="Detector (default: the shipped default).")
@click.option("--max-patches", type=click.IntRange(1, 10000), default=256, show_default=True,
              help="Patches scored per image; the stride grows on large images to stay under it.")
@guard_options
@device_options
@quiet_option
def command(images, output, model, max_patches, file_timeout, max_decode_mb, device, precision):
    """For each image: a heatmap of patch scores over the image (where the detector fires), the log
    power spectrum, and its azimuthal profile against the average real photo; PNGs plus a JSON
    summary per image and summary.json for the run."""
    from ganscan.console import Progress, info, warn
    from ganscan.detectors.explain import explain_images
    from ganscan.detectors.load import open_detector

    out = Path(output)
    if not out.parent.exists():
        raise GanscanError(f"folder does not exist: {out.parent}")
    out.mkdir(exist_ok=True)
    _, prec, det = open_detector(model, device, precision, what="heatmaps")
    with Progress("explaining", total=len(images)) as bar:
        results = explain_images(det, images, out, prec, max_patches, file_timeout, max_decode_mb * 2 ** 20,
                                 on_error=lambda path, error: warn(f"{path}: {error}"), progress=bar)
    ok = sum("error" not in r for r in results)
    info(f"explained {ok} of {len(results)} images into {out}/")
