"""Measuring generators: SWD between generated and real images, with the two reference points that make
the number readable (an untrained generator: the ceiling; two disjoint halves of the reals: the floor)."""

from __future__ import annotations

import torch

from ganscan.errors import GanscanError
from ganscan.gans.generate import sample
from ganscan.gans.images import load_image_folder
from ganscan.gans.registry import LoadedGenerator, load_generator
from ganscan.gans.swd import swd


def generated_set(gen: LoadedGenerator, n: int, seed: int, batch_size: int = 64, progress=None) -> torch.Tensor:
    """uint8 (n, 3, R, R) samples of ``gen`` (image i from (seed, i), as `ganscan generate`)."""
    parts = []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        parts.append(torch.from_numpy(sample(gen, seed, start, count)).permute(0, 3, 1, 2))
        if progress is not None:
            progress.update(advance=count)
    return torch.cat(parts)


def evaluate_swd(real: str, model: str | None = None, weights: str | None = None, fake_dir: str | None = None,
                 resolution: int | None = None, n: int | None = None, holdout: float = 0.0, split: str | None = None,
                 baselines: bool = False, seed: int = 0, batch_size: int = 64, progress=None) -> dict:
    """SWD (x 1e3, per Laplacian level) between generated (or ``fake_dir``) images and the reals in ``real``.

    ``holdout``/``split``: compare with the files `gan train --holdout` kept out of training (split
    "heldout", the default when ``holdout`` > 0), or "train" / "all". ``baselines``: the reals are split in
    two disjoint halves A and B; B is the reference for three equal-sized sets: the generator's images,
    an untrained generator's (same architecture, seed ``seed``) and A (the floor).
    """
    if model is None and fake_dir is None:
        raise GanscanError("nothing to evaluate", hint="pass --model (and --weights) or --fake DIR")
    gen = None
    if model is not None:
        gen = load_generator(model, weights)
        if resolution is not None and resolution != gen.resolution:
            raise GanscanError(f"{gen.label} makes {gen.resolution}x{gen.resolution} images, not {resolution}x{resolution}")
        resolution = gen.resolution
    resolution = resolution or 64
    if resolution < 16:
        raise GanscanError(f"SWD needs images of at least 16x16, not {resolution}x{resolution}")
    split = split or ("heldout" if holdout > 0 else "all")
    reals = load_image_folder(real, resolution, holdout=holdout, split=split, min_images=4 if baselines else 2)
    images = reals.images
    if n is not None:
        images = images[:n * 2 if baselines else n]
    result = {"resolution": resolution, "real": real, "split": split, "holdout": holdout, "seed": seed,
              "notes": reals.notes, "rows": []}
    if model is not None and _is_autoencoder(model):
        return _evaluate_autoencoder(gen, model, images, result, batch_size, baselines, seed)
    if baselines:
        if gen is None:
            raise GanscanError("--baselines needs --model (the untrained baseline is built from it)")
        perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
        m = images.shape[0] // 2
        half_a, half_b = images[perm[:m]], images[perm[m:2 * m]]
        fake = generated_set(gen, m, seed, batch_size, progress)
        untrained = load_generator(model, untrained=True, seed=seed)
        base = generated_set(untrained, m, seed, batch_size, progress)
        result["images"] = m
        for name, other in ((f"trained ({gen.label})", fake), ("untrained generator", base),
                            ("real half A vs half B (floor)", half_a)):
            result["rows"].append({"name": name, **swd(half_b, other, seed=seed)})
        return result
    count = images.shape[0]
    if fake_dir is not None:
        fake_set = load_image_folder(fake_dir, resolution, min_images=2)
        fakes = fake_set.images
        result["notes"] = result["notes"] + [f"{fake_dir}: {note}" for note in fake_set.notes]
        label = fake_dir
    else:
        fakes = generated_set(gen, count, seed, batch_size, progress)
        label = gen.label
    m = min(count, fakes.shape[0])
    result["images"] = m
    result["rows"].append({"name": label, **swd(images[:m], fakes[:m], seed=seed)})
    return result


def _is_autoencoder(model: str) -> bool:
    from ganscan.gans.registry import get_gan_config

    return get_gan_config(model).family == "autogan"


def _reconstruct(gen, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    from ganscan.gans.images import to_float

    out = []
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch_size):
            rec = gen.model(to_float(images[i:i + batch_size]))
            out.append(rec.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def _evaluate_autoencoder(gen, model, images, result, batch_size, baselines, seed) -> dict:
    """An autoencoder: how close its reconstructions of the reals are (L1 on [0, 255], PSNR in dB) and their
    SWD to the reals; with ``baselines`` the same for an untrained autoencoder."""
    result["images"] = images.shape[0]
    candidates = [(f"reconstructions ({gen.label})", gen)]
    if baselines:
        from types import SimpleNamespace

        from ganscan.gans.registry import build_generator

        with torch.random.fork_rng(devices=[]):  # same architecture as the trained one, fresh weights
            torch.manual_seed(seed)
            fresh = build_generator(model, gen.resolution, **(gen.meta.get("options") or {})).eval()
        candidates.append(("untrained autoencoder", SimpleNamespace(model=fresh)))
    for name, g in candidates:
        rec = _reconstruct(g, images, batch_size)
        diff = rec.float() - images.float()
        mse = diff.square().mean(dim=(1, 2, 3)).clamp(min=1e-6)
        psnr = (10 * torch.log10(255.0 ** 2 / mse)).mean().item()
        result["rows"].append({"name": name, **swd(images, rec, seed=seed), "l1": diff.abs().mean().item(),
                               "psnr_db": psnr})
    return result


def swd_table(result: dict):
    """`gan evaluate`'s result as a rich table: SWD per level and their mean (and, for an autoencoder, how
    close its reconstructions are)."""
    from rich.table import Table

    levels = list(result["rows"][0]["levels"])
    t = Table(title=f"SWD x1e3 vs {result['real']} ({result['split']} reals, {result['images']} images per set, "
                    f"{result['resolution']}x{result['resolution']})", header_style="bold")
    t.add_column("images")
    for lv in levels:
        t.add_column(f"{lv}px", justify="right")
    t.add_column("avg", justify="right")
    recon = "psnr_db" in result["rows"][0]
    if recon:
        t.add_column("L1 (0-255)", justify="right")
        t.add_column("PSNR dB", justify="right")
    for row in result["rows"]:
        t.add_row(row["name"], *(f"{row['levels'][lv]:.2f}" for lv in levels), f"{row['avg']:.2f}",
                  *((f"{row['l1']:.2f}", f"{row['psnr_db']:.2f}") if recon else ()))
    return t
