"""ganscan generate: sample a trained GAN into image files."""

from __future__ import annotations

import click

from ganscan.cli import quiet_option

EXAMPLES = """
\b
Examples:
  ganscan generate --model progan -n 64 -o fakes/ --grid faces.png   # shipped progan-celeba64
  ganscan generate --model dcgan -n 50000 -o dogs/ --seed 7 --format jpg --quality 90
  ganscan generate --model progan --weights runs/faces/generator.safetensors -n 16 -o out/
  ganscan generate --model dcgan -n 8 -o out/ && ganscan scan out/     # can the detector tell?
"""


@click.command("generate", epilog=EXAMPLES)
@click.option("-m", "--model", required=True, metavar="NAME", help="Generator: progan, dcgan (see `ganscan models`).")
@click.option("-n", "--count", "n", type=click.IntRange(1), required=True, help="Number of images.")
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR", help="Folder for the images (created).")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=0, show_default=True,
              help="Image i of a seed is always the same image, whatever -n and --batch-size.")
@click.option("--weights", default=None, metavar="FILE|NAME",
              help="Generator checkpoint (RUN/generator.safetensors) or shipped weights name. Default: the shipped weights.")
@click.option("--untrained", is_flag=True, help="Use a freshly initialised generator (a baseline).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg"]), default="png", show_default=True)
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality.")
@click.option("--grid", "grid_path", default=None, metavar="FILE.png", help="Also write a grid of the first 64 images.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: all cores).")
@quiet_option
def command(model, n, out_dir, seed, weights, untrained, fmt, quality, grid_path, batch_size, force, threads):
    """Generate N images with a trained GAN; file names carry the weights' name, the seed and the index."""
    from ganscan.console import Progress, info
    from ganscan.engine.device import configure_threads
    from ganscan.gans.generate import generate_images
    from ganscan.gans.registry import load_generator

    if untrained and weights:
        raise click.UsageError("--untrained and --weights exclude each other")
    configure_threads(threads)
    gen = load_generator(model, weights, untrained=untrained, seed=seed)
    with Progress(f"generating with {gen.label}", total=n) as bar:
        result = generate_images(gen, n, out_dir, seed=seed, fmt=fmt, quality=quality, batch_size=batch_size,
                                 grid_path=grid_path, force=force, progress=bar)
    rate = n / result.seconds if result.seconds > 0 else float("inf")
    info(f"{n} images {gen.resolution}x{gen.resolution} from {gen.label} in {result.out_dir}/ "
         f"({result.seconds:.1f} s, {rate:.0f} images/s)" + (f"; grid: {result.grid}" if result.grid else ""))
