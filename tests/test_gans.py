"""GAN training, generation and SWD: fast paths with the tiny registered models (test-gan, test-progan)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ganscan.cli import cli


def run(*args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def make_folder(path: Path, n: int = 20, size: int = 16, seed: int = 0, kind: str = "noise") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        if kind == "noise":
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        else:  # smooth colour ramps
            t = np.linspace(0, 1, size)
            c = rng.random(3)
            arr = (255 * (t[None, :, None] * c + t[:, None, None] * (1 - c)) / 1.0).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(path / f"{i:03d}.png")
    return path


def train_args(data, out, steps=6, *extra):
    return ["gan", "train", "--model", "test-gan", data, "-o", out, "--steps", steps, "--batch-size", 4,
            "--threads", 1, "--sample-every", 3, "--checkpoint-every", 3, *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("gan")
    data = make_folder(base / "data")
    run(*train_args(data, base / "run", 6))
    return base


def weights_tensors(run_dir: Path) -> dict:
    from ganscan.core.checkpoint import load_checkpoint

    ptr = json.loads((run_dir / "checkpoint.json").read_text())
    return load_checkpoint(run_dir / ptr["weights"], verify=False)[0]


# --- training -----------------------------------------------------------------------------------

def test_train_writes_losses_plot_samples_and_generator(trained):
    run_dir = trained / "run"
    rows = (run_dir / "losses.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,images,resolution")
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == ["step-0000003.png", "step-0000006.png"]
    from ganscan.core.checkpoint import read_metadata

    meta = read_metadata(run_dir / "generator.safetensors")
    assert meta["kind"] == "gan" and meta["model"] == "test-gan" and meta["resolution"] == 16
    assert meta["step"] == 6


def test_resume_is_exact_dcgan(tmp_path):
    data = make_folder(tmp_path / "data")
    run(*train_args(data, tmp_path / "straight", 6))
    run(*train_args(data, tmp_path / "split", 3))
    run(*train_args(data, tmp_path / "split", 6, "--resume"))
    a, b = weights_tensors(tmp_path / "straight"), weights_tensors(tmp_path / "split")
    assert a.keys() == b.keys() and any(k.startswith("D.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    straight = [r.split(",")[:7] for r in (tmp_path / "straight" / "losses.csv").read_text().splitlines()]
    split = [r.split(",")[:7] for r in (tmp_path / "split" / "losses.csv").read_text().splitlines()]
    assert straight == split  # same losses step by step (wall time aside)


def test_a_run_folder_of_the_old_format_still_resumes_exactly(tmp_path):
    """Before the one resume format a checkpoint was weights-only ckpt-STEP.safetensors plus ckpt-STEP.state.pt
    (torch.save of step, images, elapsed, the torch RNG state and both optimisers)."""
    from ganscan.core.checkpoint import load_checkpoint, save_checkpoint
    from ganscan.core.runs import unpack

    data = make_folder(tmp_path / "data")
    run(*train_args(data, tmp_path / "straight", 6))
    old = tmp_path / "old"
    run(*train_args(data, old, 3))
    ptr = json.loads((old / "checkpoint.json").read_text())
    tensors, meta = load_checkpoint(old / ptr["weights"], verify=False)
    state = unpack(meta.pop("skeleton"), tensors)
    stem = ptr["weights"].removesuffix(".safetensors")
    torch.save({"step": state["step"], "images": state["images"], "elapsed": state["elapsed"],
                "rng": state["rng"]["torch"], "opt_g": state["opt_g"], "opt_d": state["opt_d"]}, old / f"{stem}.state.pt")
    save_checkpoint(old / ptr["weights"], {k: v for k, v in tensors.items() if not k.startswith("state.")}, meta)
    (old / "checkpoint.json").write_text(json.dumps({**ptr, "state": f"{stem}.state.pt"}))
    run(*train_args(data, old, 6, "--resume"))
    a, b = weights_tensors(tmp_path / "straight"), weights_tensors(old)
    assert a.keys() == b.keys() and any(k.startswith("state.opt_d.") for k in a)  # the new format from then on
    for k in a:
        assert torch.equal(a[k], b[k]), k
    straight, resumed = ([r.split(",")[:7] for r in (d / "losses.csv").read_text().splitlines()] for d in (tmp_path / "straight", old))
    assert straight == resumed


def test_resume_is_exact_progan_across_a_fade(tmp_path):
    data = make_folder(tmp_path / "data")
    common = ["--model", "test-progan", "--phase-kimg", "0.012", "--batch-size", 4, "--threads", 1,
              "--checkpoint-every", 100, "--sample-every", 100]
    run("gan", "train", data, "-o", tmp_path / "a", "--steps", 10, *common)
    run("gan", "train", data, "-o", tmp_path / "b", "--steps", 4, *common)
    run("gan", "train", data, "-o", tmp_path / "b", "--steps", 10, "--resume", *common)
    a, b = weights_tensors(tmp_path / "a"), weights_tensors(tmp_path / "b")
    assert any(k.startswith("G_ema.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    res = [r.split(",")[2:4] for r in (tmp_path / "a" / "losses.csv").read_text().splitlines()[1:]]
    assert ["8", "0.3333"] in res  # the run did cross a fade-in to 8x8
    # export: the moving average by default, the trained generator with --raw
    from ganscan.core.checkpoint import load_checkpoint

    run("gan", "export", tmp_path / "a", tmp_path / "w" / "avg.safetensors")
    run("gan", "export", tmp_path / "a", tmp_path / "w" / "raw.safetensors", "--raw")
    avg, meta = load_checkpoint(tmp_path / "w" / "avg.safetensors")
    raw, raw_meta = load_checkpoint(tmp_path / "w" / "raw.safetensors")
    assert meta["averaged"] is True and raw_meta["averaged"] is False
    assert all(torch.equal(avg[k], a["G_ema." + k]) and torch.equal(raw[k], a["G." + k]) for k in avg)
    assert not all(torch.equal(avg[k], raw[k]) for k in avg)


def test_resume_refuses_changed_settings_and_missing_runs(tmp_path, trained):
    r = run(*train_args(trained / "data", tmp_path / "none", 6, "--resume"), ok=False)
    assert r.exit_code == 1 and "nothing to resume" in r.output
    r = run(*train_args(trained / "data", trained / "run", 6), ok=False)
    assert r.exit_code == 1 and "already holds a training run" in r.output and "--resume" in r.output
    r = run(*train_args(trained / "data", trained / "run", 8, "--resume", "--seed", "5"), ok=False)
    assert r.exit_code == 1 and "different settings" in r.output and "seed" in r.output


# --- bad input ----------------------------------------------------------------------------------

def test_too_few_images(tmp_path):
    data = make_folder(tmp_path / "data", n=3)
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    r = run(*train_args(data, tmp_path / "run"), ok=False)
    assert r.exit_code == 1
    assert "3 readable training images (1 unreadable skipped); at least 16 are needed" in r.output
    assert "Traceback" not in r.output


def test_mixed_sizes_and_modes_are_converted_with_a_note(tmp_path):
    data = make_folder(tmp_path / "data", n=18)
    Image.new("L", (40, 24), 128).save(data / "gray.png")
    Image.new("RGBA", (16, 16), (255, 0, 0, 128)).save(data / "alpha.png")
    (data / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    r = run(*train_args(data, tmp_path / "run", 2))
    assert re.search(r"1 of 20 images resized to 16x16 \(sizes found: 16x16, 40x24; 1 non-square centre-cropped\)", r.output)
    assert "2 image(s) not RGB (" in r.output and "L x1" in r.output and "RGBA x1" in r.output
    assert "1 unreadable file(s) skipped, e.g. junk.jpg" in r.output


def test_unsupported_resolution(tmp_path):
    data = make_folder(tmp_path / "data")
    r = run("gan", "train", "--model", "dcgan", data, "-o", tmp_path / "r", "--resolution", 48, ok=False)
    assert r.exit_code == 1 and "dcgan does not support 48x48 images (supported: 32, 64)" in r.output


def test_unknown_model_suggests(tmp_path):
    r = run("generate", "--model", "prgan", "-n", 1, "-o", tmp_path, ok=False)
    assert r.exit_code == 1 and "unknown GAN 'prgan' (did you mean 'progan'?)" in r.output


def test_wrong_model_weights_are_refused(trained, tmp_path):
    w = trained / "run" / "generator.safetensors"
    r = run("generate", "--model", "progan", "--weights", w, "-n", 1, "-o", tmp_path / "o", ok=False)
    assert r.exit_code == 1 and "weights of model 'test-gan', not 'progan' (use --model test-gan)" in r.output
    from ganscan.core.checkpoint import save_checkpoint

    det = tmp_path / "det.safetensors"
    save_checkpoint(det, {"fc.weight": torch.zeros(1, 2)}, {"kind": "detector", "arch": "test-cnn"})
    r = run("generate", "--model", "test-gan", "--weights", det, "-n", 1, "-o", tmp_path / "o", ok=False)
    assert r.exit_code == 1 and "a detector checkpoint, not GAN generator weights" in r.output
    assert not (tmp_path / "o").exists()


# --- generation ---------------------------------------------------------------------------------

def _pixels(folder: Path) -> dict:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.iterdir())}


def test_generate_is_deterministic_per_seed(trained, tmp_path):
    w = trained / "run" / "generator.safetensors"
    base = ["generate", "--model", "test-gan", "--weights", w, "--threads", 1, "-n", 5, "--seed", 3]
    run(*base, "-o", tmp_path / "a", "--batch-size", 2, "--grid", tmp_path / "grid.png")
    run(*base, "-o", tmp_path / "b", "--batch-size", 5)
    a, b = _pixels(tmp_path / "a"), _pixels(tmp_path / "b")
    assert list(a) == [f"test-gan-run-seed3-{i:06d}.png" for i in range(5)]
    assert list(a) == list(b)
    for name in a:
        assert a[name].shape == (16, 16, 3)
        assert np.abs(a[name].astype(int) - b[name].astype(int)).max() <= 1  # batch size does not matter
    assert Image.open(tmp_path / "grid.png").size == (5 * 18 + 2, 18 + 2)
    # a generator whose output visibly depends on z (untrained ProGAN: equalised-lr weights are N(0, 1))
    pro = ["generate", "--model", "test-progan", "--untrained", "--threads", 1, "-n", 4]
    run(*pro, "-o", tmp_path / "p3", "--seed", 3)
    run(*pro, "-o", tmp_path / "p3b", "--seed", 3)
    run(*pro, "-o", tmp_path / "p4", "--seed", 4)
    p3, p3b, p4 = _pixels(tmp_path / "p3"), _pixels(tmp_path / "p3b"), _pixels(tmp_path / "p4")
    assert all(np.array_equal(p3[k], p3b[k]) for k in p3)
    assert len({x.tobytes() for x in p3.values()}) == 4  # four different images
    assert not any(np.array_equal(x, y) for x, y in zip(p3.values(), p4.values()))


def test_latents_depend_only_on_seed_and_index():
    from ganscan.gans.generate import latents

    whole = latents(8, seed=5, start=0, count=6)
    assert torch.equal(whole[3:], latents(8, seed=5, start=3, count=3))
    assert not torch.equal(whole, latents(8, seed=6, start=0, count=6))


def test_generate_jpg_refuses_overwrite_and_untrained(tmp_path):
    args = ["generate", "--model", "test-gan", "--untrained", "-n", 3, "-o", tmp_path, "--format", "jpg",
            "--quality", 80, "--threads", 1]
    run(*args)
    files = sorted(tmp_path.glob("*.jpg"))
    assert [f.name for f in files] == [f"test-gan-untrained-seed0-{i:06d}.jpg" for i in range(3)]
    assert Image.open(files[0]).format == "JPEG"
    r = run(*args, ok=False)
    assert r.exit_code == 1 and "already exists" in r.output and "--force" in r.output
    run(*args, "--force")


# --- SWD ----------------------------------------------------------------------------------------

def test_swd_identical_zero_and_orders_distributions():
    from ganscan.gans.swd import laplacian_pyramid, swd

    g = torch.Generator().manual_seed(0)
    noise_a = torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8)
    noise_b = torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8)
    t = torch.linspace(0, 1, 32)
    ramps = (torch.rand(64, 3, 1, 1, generator=g) * t[None, None, None, :] * 255).to(torch.uint8).expand(-1, -1, 32, -1)
    same = swd(noise_a, noise_a)
    assert set(same["levels"]) == {"32", "16"} and same["avg"] == pytest.approx(0.0, abs=1e-9)
    close = swd(noise_a, noise_b)["avg"]
    far = swd(noise_a, ramps.contiguous())["avg"]
    assert 0 < close < far / 5
    # the pyramid is a complete representation: upsampling and summing rebuilds the image
    from ganscan.gans.swd import pyr_up

    x = torch.rand(2, 3, 64, 64)
    levels = laplacian_pyramid(x)
    rebuilt = levels[-1]
    for band in reversed(levels[:-1]):
        rebuilt = pyr_up(rebuilt) + band
    assert torch.allclose(rebuilt, x, atol=1e-5)


def test_evaluate_baselines_cli(trained, tmp_path):
    real = make_folder(tmp_path / "real", n=24, kind="ramps")
    r = run("gan", "evaluate", "--model", "test-gan", "--weights", trained / "run" / "generator.safetensors",
            "--real", real, "--baselines", "--json", "--threads", 1)
    out = json.loads(r.stdout)
    names = [row["name"] for row in out["rows"]]
    assert names == ["trained (test-gan-run)", "untrained generator", "real half A vs half B (floor)"]
    assert out["images"] == 12 and out["resolution"] == 16
    floor = out["rows"][2]["avg"]
    assert floor < out["rows"][0]["avg"] and floor < out["rows"][1]["avg"]
    r = run("gan", "evaluate", "--fake", real, "--real", real, "--resolution", 16, "--json")
    assert json.loads(r.stdout)["rows"][0]["avg"] == pytest.approx(0.0, abs=1e-9)


def test_holdout_split_is_disjoint_and_stable():
    from ganscan.gans.images import is_held_out

    names = [f"{i:04d}.jpg" for i in range(2000)]
    held = [n for n in names if is_held_out(n, 0.2)]
    assert 300 < len(held) < 500
    assert held == [n for n in reversed(names) if is_held_out(n, 0.2)][::-1]
    assert not any(is_held_out(n, 0.0) for n in names)


# --- help ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["gan"], ["gan", "train"], ["gan", "evaluate"], ["generate"]])
def test_help_has_examples(args):
    r = run(*args, "--help")
    assert "Examples:" in r.output and "ganscan " in r.output.split("Examples:")[1]


def test_registry_lists_models():
    from ganscan.gans.registry import get_gan_config, list_gans

    assert {"dcgan", "progan", "test-gan", "test-progan"} <= {c.name for c in list_gans()}
    assert get_gan_config("dcgan").latent_size == 100 and get_gan_config("dcgan").resolution == 32
    assert get_gan_config("progan").resolutions == (8, 16, 32, 64, 128)


def test_export_card_lists_in_models_and_is_the_default_weights(trained, tmp_path, monkeypatch):
    wdir = tmp_path / "weights"
    real = make_folder(tmp_path / "real", n=20, kind="ramps")
    r = run("gan", "evaluate", "--model", "test-gan", "--weights", trained / "run" / "generator.safetensors",
            "--real", real, "--baselines", "--json", "--threads", 1)
    (tmp_path / "swd.json").write_text(r.stdout)
    run("gan", "export", trained / "run", wdir / "test-gan-tiny.safetensors", "--card-json", tmp_path / "swd.json")
    card = json.loads((wdir / "test-gan-tiny.json").read_text())
    from ganscan.core.checkpoint import sha256_file

    assert card["kind"] == "gan" and card["model"] == "test-gan" and card["resolution"] == 16
    assert card["sha256"] == sha256_file(wdir / "test-gan-tiny.safetensors")
    assert card["file_bytes"] == (wdir / "test-gan-tiny.safetensors").stat().st_size
    assert card["recipe"]["steps_done"] == 6 and "loss_d" in card["final_losses"]
    assert set(card["metrics"]) >= {"swd_x1e3", "swd_untrained_x1e3", "swd_floor_x1e3", "swd"}
    from ganscan.core import weights

    monkeypatch.setattr(weights, "weights_dir", lambda: wdir)
    listed = json.loads(run("models", "--json").stdout)["weights"]
    assert [(w["name"], w["kind"]) for w in listed] == [("test-gan-tiny", "gan")]
    run("generate", "--model", "test-gan", "-n", 2, "-o", tmp_path / "out", "--threads", 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "test-gan-tiny-seed0-000000.png", "test-gan-tiny-seed0-000001.png"]
    # a damaged shipped file is refused through its card's sha256
    blob = bytearray((wdir / "test-gan-tiny.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (wdir / "test-gan-tiny.safetensors").write_bytes(bytes(blob))
    r = run("generate", "--model", "test-gan", "-n", 1, "-o", tmp_path / "out2", ok=False)
    assert r.exit_code == 1 and "does not match its model card" in r.output


def test_progan_resume_may_change_only_phases_not_begun(tmp_path):
    data = make_folder(tmp_path / "data")
    common = ["gan", "train", data, "-o", tmp_path / "r", "--model", "test-progan", "--batch-size", 4,
              "--threads", 1, "--checkpoint-every", 100, "--sample-every", 100]
    run(*common, "--steps", 4, "--phase-kimg", "0.012")  # 16 images: 4x4 done, fading 8x8 in
    r = run(*common, "--steps", 6, "--phase-kimg", "0.012,0.02", "--resume", ok=False)
    assert r.exit_code == 1 and "changes phases already trained" in r.output
    run(*common, "--steps", 12, "--phase-kimg", "0.012,0.012,0.04", "--resume")
    rows = (tmp_path / "r" / "losses.csv").read_text().splitlines()[1:]
    assert rows[-1].split(",")[2:4] == ["16", "0.2"]  # 48 images: 12 into the 40-image fade to 16x16
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert [h["resumed_at_step"] for h in record["history"]] == [4]
