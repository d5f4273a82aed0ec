"""ganscan explain: heatmaps and spectra that show why an image scored as it did."""

from __future__ import annotations

import json
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
    from ganscan.detectors.load import open_detector
    from ganscan.data.decode import DEFAULT_MAX_PIXELS
    from ganscan.detectors.explain import explain_image
    from ganscan.data.supervise import decoded_images

    out = Path(output)
    if not out.parent.exists():
        raise GanscanError(f"folder does not exist: {out.parent}")
    out.mkdir(exist_ok=True)
    _, prec, det = open_detector(model, device, precision, what="heatmaps")
    results = []
    with Progress("explaining", total=len(images)) as bar:
        # decoding runs in a supervised worker: a file that crashes or hangs the decoder gets its error
        for path, img, _info, error in decoded_images(images, DEFAULT_MAX_PIXELS, file_timeout,
                                                      max_decode_mb * 2 ** 20):
            if error is not None:
                summary = {"path": path, "error": error}
                warn(f"{path}: {error}")
            else:
                summary = explain_image(det, path, out, prec, max_patches, img=img)
                (out / f"{Path(path).stem}.json").write_text(json.dumps(summary, indent=2))
            results.append(summary)
            bar.update(1)
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    ok = sum("error" not in r for r in results)
    info(f"explained {ok} of {len(results)} images into {out}/")
