"""ganscan generate: sample a trained GAN into image files."""

from __future__ import annotations

import click

from ganscan.cli import guard_options, quiet_option

EXAMPLES = """
\b
Examples:
  ganscan generate --model progan -n 64 -o fakes/ --grid faces.png   # shipped progan-celeba64
  ganscan generate --model dcgan -n 50000 -o dogs/ --seed 7 --format jpg --quality 90
  ganscan generate --model progan --weights runs/faces/generator.safetensors -n 16 -o out/
  ganscan generate --model dcgan -n 8 -o out/ && ganscan scan out/     # can the detector tell?
  ganscan generate --model autogan --input photos/ -o recon/        # AutoGAN reconstructions, same names
  ganscan generate --model autogan --weights autogan-4layer --input photos/ -o recon4/ --format png
"""


@click.command("generate", epilog=EXAMPLES)
@click.option("-m", "--model", required=True, metavar="NAME", help="Generator: progan, dcgan (see `ganscan models`).")
@click.option("-n", "--count", "n", type=click.IntRange(1), default=None, help="Number of images (GANs).")
@click.option("--input", "input_dir", default=None, metavar="DIR",
              help="autogan: reconstruct every image under DIR (the simulated fakes), keeping relative names; "
                   "OUT/reconstructions.csv lists each file (written, padded, or its error).")
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR", help="Folder for the images (created).")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=0, show_default=True,
              help="Image i of a seed is always the same image, whatever -n and --batch-size.")
@click.option("--weights", default=None, metavar="FILE|NAME",
              help="Generator checkpoint (RUN/generator.safetensors) or shipped weights name. Default: the shipped weights.")
@click.option("--untrained", is_flag=True, help="Use a freshly initialised generator (a baseline).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg", "same"]), default=None,
              help="png (default) or jpg; with --input the default 'same' writes JPEG inputs as JPEG with the "
                   "input's own quantisation tables and everything else as PNG.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality.")
@click.option("--grid", "grid_path", default=None, metavar="FILE.png", help="Also write a grid of the first 64 images.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: all cores).")
@guard_options
@quiet_option
def command(model, n, input_dir, out_dir, seed, weights, untrained, fmt, quality, grid_path, batch_size, force, threads,
            file_timeout, max_decode_mb):
    """Generate N images with a trained GAN (file names carry the weights' name, the seed and the index), or
    with an AutoGAN autoencoder reconstruct every image of --input DIR."""
    from ganscan.console import Progress, info, warn
    from ganscan.core.device import configure_threads
    from ganscan.gans.generate import generate_images
    from ganscan.gans.registry import get_gan_config, load_generator

    if untrained and weights:
        raise click.UsageError("--untrained and --weights exclude each other")
    autoencoder = get_gan_config(model).family == "autogan"
    if autoencoder:
        if input_dir is None:
            raise click.UsageError(f"{model} reconstructs images: pass --input DIR (a folder of real images)")
        if n is not None or grid_path is not None:
            raise click.UsageError("-n and --grid are for GANs; an autoencoder writes one image per input")
    elif input_dir is not None:
        raise click.UsageError(f"--input is for autoencoders (autogan); {model} samples from noise")
    elif n is None:
        raise click.UsageError("pass -n/--count: how many images to generate")
    elif fmt == "same":
        raise click.UsageError("--format same is for --input reconstructions; use png or jpg")
    configure_threads(threads)
    gen = load_generator(model, weights, untrained=untrained, seed=seed)
    if autoencoder:
        from ganscan.gans.reconstruct import reconstruct_folder

        with Progress(f"reconstructing with {gen.label}", total=None) as bar:
            res = reconstruct_folder(gen, input_dir, out_dir, fmt=fmt or "same", quality=quality, force=force,
                                     progress=bar, on_error=warn, file_timeout=file_timeout,
                                     max_bytes=max_decode_mb * 2 ** 20)
        extra = f", {res.padded} padded to the autoencoder's stride and cropped back" if res.padded else ""
        info(f"{res.written} reconstructions in {res.out_dir}/ ({res.seconds:.1f} s){extra}; "
             f"{res.errors} errors; manifest: {res.manifest}")
        return
    with Progress(f"generating with {gen.label}", total=n) as bar:
        result = generate_images(gen, n, out_dir, seed=seed, fmt=fmt or "png", quality=quality,
                                 batch_size=batch_size, grid_path=grid_path, force=force, progress=bar)
    rate = n / result.seconds if result.seconds > 0 else float("inf")
    info(f"{n} images {gen.resolution}x{gen.resolution} from {gen.label} in {result.out_dir}/ "
         f"({result.seconds:.1f} s, {rate:.0f} images/s)" + (f"; grid: {result.grid}" if result.grid else ""))
