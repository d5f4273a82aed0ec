"""ganscan twins: band-aligned (real, fake) training pairs from real photos, for artifact detectors."""

from __future__ import annotations

import click

from ganscan.cli import quiet_option

EXAMPLES = """
\b
Examples:
  ganscan twins photos/ -o pairs/                       # pairs/0_real, pairs/1_fake, pairs/pairs.csv
  ganscan train --real pairs/0_real --fake pairs/1_fake --arch npr -o runs/npr-twins
  ganscan twins held/ -o val-shuffle/ --kinds shuffle --seed 1000   # a tail family left out of training
"""


def _kinds(ctx, param, value):
    from ganscan.detectors.train.twins import TAIL_KINDS

    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in TAIL_KINDS]
    if bad or not kinds:
        raise click.BadParameter(f"unknown tail kind {', '.join(bad) or '(none)'}; choose from {','.join(TAIL_KINDS)}")
    return kinds


@click.command("twins", epilog=EXAMPLES)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR", help="Folder for the pairs (created).")
@click.option("--kinds", default="tconv,nearest,bilinear,shuffle,zeroins", show_default=True, callback=_kinds,
              help="Generator-tail kinds of the bank (comma-separated).")
@click.option("--tails-per-kind", type=click.IntRange(1, 1000), default=12, show_default=True,
              help="Tails per kind (half with random, half with briefly trained weights).")
@click.option("--size", type=click.IntRange(16, 4096), default=128, show_default=True,
              help="Side of each pair's crops (even); images smaller than this are skipped.")
@click.option("--max-crops", type=click.IntRange(1, 1000), default=12, show_default=True,
              help="Most crops per image (one per ~16 crop areas of the photo).")
@click.option("--chain-prob", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of fakes made at 4x: down-scaled 4x, then two tails in a row (--size a multiple of 4).")
@click.option("--seed", type=click.IntRange(0, 2 ** 31 - 1), default=0, show_default=True)
@click.option("--force", is_flag=True, help="Write into a folder that already holds pairs.")
@quiet_option
def command(inputs, out_dir, kinds, tails_per_kind, size, max_crops, chain_prob, seed, force):
    """Write band-aligned twins of every real image under INPUTS: the fake is the image down-scaled 2x and
    brought back up through a random generator tail; the real twin is the same down-scaled image
    up-scaled by a standard filter (about half of them) or the image itself; both are post-processed
    alike and written in the same format. See ganscan.detectors.train.twins."""
    from pathlib import Path

    import torch

    from ganscan.console import Progress, info, warn
    from ganscan.data.datasets import list_images
    from ganscan.data.decode import load_image
    from ganscan.detectors.train import twins as T
    from ganscan.errors import GanscanError

    if size % 2:
        raise click.BadParameter("must be even", param_hint="--size")
    if chain_prob and size % 4:
        raise click.BadParameter("must be a multiple of 4 with --chain-prob", param_hint="--size")
    if (Path(out_dir) / "pairs.csv").exists() and not force:
        raise GanscanError(f"{out_dir} already holds pairs (pairs.csv)", hint="pass --force or choose another -o")
    torch.set_num_threads(1)
    sources = [p for d in inputs for p in list_images(d)]
    if not sources:
        raise GanscanError(f"no images found under {', '.join(inputs)}")
    fit_crops = T.fit_crop_pool(sources, load=lambda p: load_image(p)[0])
    with Progress("building the tail bank", total=len(kinds) * tails_per_kind) as bar:
        bank = T.build_bank(seed, kinds, tails_per_kind, fit_crops, progress=lambda _n: bar.update(advance=1))
    with Progress("writing pairs", total=len(sources)) as bar:
        counts = T.write_twins(sources, out_dir, bank, T.PairConfig(size=size, chain_prob=chain_prob), seed=seed,
                               max_crops=max_crops, progress=lambda i, n: bar.update(advance=1), on_error=warn)
    info(f"{counts['pairs']} pairs from {counts['sources']} images in {out_dir}/ "
         f"({counts['skipped_small']} smaller than {size} px, {counts['errors']} unreadable); manifest: "
         f"{Path(out_dir) / 'pairs.csv'}")
