"""The scripts in examples/ that rebuild the shipped detector: the balanced fake mixture and the tables."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ganscan.data.datasets import training_set
from ganscan.data.shortcut import format_separability

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _noise(size: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _jpeg(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _noise(size, seed).save(path, "JPEG", quality=75)


@pytest.fixture
def work(tmp_path):
    """A miniature work folder: reals of two kinds, their reconstruction twins, and GAN fakes."""
    w = tmp_path / "work"
    for i in range(12):
        _jpeg(w / "real" / "celeba64" / f"c{i}.jpg", 64, i)          # shares ProGAN's size and format
        _jpeg(w / "fake-ae1" / "celeba64" / f"c{i}.jpg", 64, 100 + i)
        _jpeg(w / "fake-gan" / "progan" / f"p{i:02d}.jpg", 64, 200 + i)
    for i in range(5):
        _jpeg(w / "real" / "flowers128" / f"f{i}.jpg", 40, 300 + i)   # no GAN of that size: all twinned
        _jpeg(w / "fake-ae1" / "flowers128" / f"f{i}.jpg", 40, 400 + i)
    return w


def test_mixture_balances_every_format_so_format_alone_is_chance(work):
    td = _load("train_default")
    td.stage_mix(work)
    mix = work / "fake-mix1"
    twins = sorted(p.name for p in (mix / "ae1" / "celeba64").iterdir())
    gan = list((mix / "progan").iterdir())
    assert 0 < len(twins) < 12                                    # only some celeba64 reals are twinned...
    assert len(twins) + len(gan) == 12                            # ...and ProGAN makes up the rest
    assert twins == sorted(f"c{i}.jpg" for i in range(12) if td.twinned(f"c{i}.jpg"))
    assert len(list((mix / "ae1" / "flowers128").iterdir())) == 5
    data = training_set(real=[str(work / "real")], fake=[str(mix)])
    assert data.n_real == data.n_fake == 17
    assert format_separability(data)["balanced_accuracy"] == 0.5
    # the unbalanced alternative (every real twinned plus the GAN fakes) is what the mixture avoids
    skewed = training_set(real=[str(work / "real")], fake=[str(work / "fake-ae1"), str(work / "fake-gan")])
    assert format_separability(skewed)["balanced_accuracy"] > 0.5


def test_mixture_refuses_when_the_gan_made_too_few(work):
    td = _load("train_default")
    for p in sorted((work / "fake-gan" / "progan").iterdir())[2:]:
        p.unlink()
    with pytest.raises(SystemExit, match="progan fakes needed"):
        td.stage_mix(work)


def test_detector_table_rows_from_evaluations(tmp_path, capsys):
    dt = _load("detector_table")
    run = tmp_path / "run-a"
    run.mkdir()
    row = {"ap": 0.9, "auc": 0.8, "accuracy": 0.7, "real_acc": 0.6, "fake_acc": 0.75}
    ev = {"model": {"arch": "npr"}, "threshold": 0.5, "mean": row,
          "sets": [{"set": "cyclegan", **row}],
          "perturbations": [{"perturbation": "jpeg:90", "mean": {**row, "ap": 0.85}, "rows": []}]}
    (run / "eval-val.json").write_text(json.dumps(ev))
    (run / "eval-camera.json").write_text(json.dumps({"mean": {"real_acc": 0.96}}))
    dt.main([str(run), str(tmp_path / "missing")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3                                        # header, rule, one row (missing run skipped)
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:2] == ["run-a", "npr"]
    assert "0.900 / 0.70" in cells and "0.850" in cells and "0.04" in cells
    dt.main([str(run)], short=True)
    assert "0.850" not in capsys.readouterr().out.splitlines()[2]


def test_detector_table_per_set_with_perturbation_drops(tmp_path, capsys):
    dt = _load("detector_table")
    row = {"set": "cyclegan", "n_real": 5, "n_fake": 7, "ap": 0.9, "auc": 0.8, "accuracy": 0.7,
           "real_acc": 0.6, "fake_acc": 0.75}
    ev = {"sets": [row], "mean": {k: v for k, v in row.items() if k != "set"},
          "perturbations": [{"perturbation": "jpeg:90", "rows": [{**row, "ap": 0.85}], "mean": {**row, "ap": 0.85}}]}
    (tmp_path / "eval-val.json").write_text(json.dumps(ev))
    dt.sets_table(tmp_path)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "jpeg:90 acc / AP (drop)" in lines[0]
    assert lines[2].startswith("| cyclegan | 5 / 7 |") and "0.850 (-0.050)" in lines[2]
    assert "mean (val)" in lines[3]


def test_fit_jpeg_copies_give_both_twins_of_a_pair_the_same_quality(tmp_path):
    from ganscan.data.provenance import jpeg_quality

    sets = _load("twins_sets")
    src = tmp_path / "twins-seen"
    for i in range(6):
        for cls in ("0_real", "1_fake"):
            (src / cls).mkdir(parents=True, exist_ok=True)
            px = np.random.default_rng(i * 2 + (cls == "1_fake")).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(px).save(src / cls / f"s{i}_0.png")
    dst = tmp_path / "fit-jpeg" / "twins-seen"
    sets.jpeg_copies(src, dst)
    qualities = set()
    for i in range(6):
        q = [jpeg_quality(Image.open(dst / cls / f"s{i}_0.jpg").quantization) for cls in ("0_real", "1_fake")]
        assert q[0] == q[1] and 70 <= q[0] <= 95
        qualities.add(q[0])
    assert len(qualities) > 1                     # drawn per pair, not one quality for all
    before = {p: p.stat().st_mtime_ns for p in dst.rglob("*.jpg")}
    sets.jpeg_copies(src, dst)                    # a second run leaves what exists alone
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*.jpg")} == before


def test_translation_generators_keep_size_and_their_twins_share_format_and_size(tmp_path):
    import torch

    tf = _load("translation_family")
    for arch in tf.ARCHS:
        g = tf.build({"arch": arch, "task": "sr", "ngf": 8, "blocks": 1, "depth": 5, "norm": "instance", "seed": 1})
        y = g(torch.rand(1, 3, 64, 64) * 2 - 1)
        assert y.shape == (1, 3, 64, 64) and float(y.detach().abs().max()) <= 1.0
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(tf.degrade(x, "identity"), x)
    gray = tf.degrade(x, "gray")
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert not torch.equal(tf.degrade(x, "sr"), x)

    data = tmp_path / "data"
    for folder in _load("train_twins").SOURCES:
        (data / "train" / "real" / folder).mkdir(parents=True)
    for i in range(8):
        _jpeg(data / "train" / "real" / "flowers128" / f"f{i}.jpg", 160, i)
    work = tmp_path / "work"
    base = ["--data", str(data), "--work", str(work), "--side", "train"]
    import sys
    argv = sys.argv
    try:
        sys.argv = ["tf", "bank", *base, "--archs", "unet,resnet3", "--per-arch", "1", "--steps", "2", "--pool", "6"]
        tf.main()
        assert len(list((work / "translate-banks" / "bank-s0").glob("*.safetensors"))) == 2
        sys.argv = ["tf", "bank", *base, "--seed", "1", "--archs", "resnet4", "--per-arch", "1", "--steps", "2",
                    "--pool", "6", "--width", "8", "--blocks", "1", "--decay", "0.5"]
        tf.main()
        (spec, g), = tf.load_bank(work / "translate-banks" / "bank-s1")
        assert (spec["ngf"], spec["blocks"]) == (8, 1)
        assert sum(isinstance(m, tf.ResBlock) for m in g.modules()) == 1
        sys.argv = ["tf", "pairs", *base, "--bank", "bank-s0", "--out", "tr", "--size", "64", "--max-crops", "2"]
        tf.main()
    finally:
        sys.argv = argv
    real = sorted(p.name for p in (work / "tr" / "0_real").iterdir())
    assert real and real == sorted(p.name for p in (work / "tr" / "1_fake").iterdir())   # same stem and format
    for name in real:
        a, b = Image.open(work / "tr" / "0_real" / name), Image.open(work / "tr" / "1_fake" / name)
        assert a.size == b.size == (64, 64)
        if name.endswith(".jpg"):
            assert a.quantization == b.quantization
    rows = (work / "tr" / "pairs.csv").read_text().splitlines()
    assert len(rows) == len(real) + 1 and "generator" in rows[0]


def test_each_family_stage_makes_its_pairs_from_its_own_banks_and_halves_only_folders_it_writes():
    tt = _load("train_twins")
    held_folders = set()
    for stage, (banks, pairs, halves, (mix, parts)) in tt.FAMILY_STAGES.items():
        made = {f"bank-s{b[0]}" for b in banks} | {b[7][1] for b in banks if b[7]}
        assert {p[0] for p in pairs} <= made, stage
        written = {p[1].removeprefix("heldout/") for p in pairs if p[1].startswith("heldout/")}
        assert set(halves) <= written, stage
        assert held_folders.isdisjoint(written), stage   # no stage overwrites another's held-out family
        held_folders |= written
        fits = {f"{fit}/{name}" for name, fit in halves.items() if fit}
        assert {v for k, v in parts.items() if v.startswith("fit-")} <= fits | {"fit-translate/translate-seen"}, stage
    for r in tt.RECIPES.values():
        assert not r.get("long") or r.get("translate")   # the long mix reads translate's fit half


def test_the_stylegan_like_up_sampling_layer_interpolates_and_adds_fixed_noise():
    import torch

    tf = _load("translation_family")
    up = tf.StyleUp(2, 2, seed=3)
    with torch.no_grad():
        up.conv.weight.zero_()
        up.conv.bias.zero_()
        for c in range(2):
            up.conv.weight[c, c, 1, 1] = 1.0   # the conv passes the blurred channels through
        up.noise_strength.zero_()
        flat = up(torch.full((1, 2, 8, 8), 0.5))
        # zeros between the pixels, blurred with gain 4: a constant stays constant away from the border
        assert flat.shape == (1, 2, 16, 16) and torch.allclose(flat[..., 2:-2, 2:-2], torch.tensor(0.5))
        up.noise_strength.fill_(1.0)
        a, b = up(torch.zeros(1, 2, 8, 8)), up(torch.zeros(1, 2, 8, 8))
    assert torch.equal(a, b) and float(a.std()) > 0.5   # noise, the same every call
    assert torch.equal(a[:, 0], a[:, 1])                 # one noise image, scaled per channel
    gens = {arch: tf.build({"arch": arch, "ngf": 8, "blocks": 1, "depth": 5, "norm": "instance", "seed": 1})
            for arch in ("resnet-up", "resnet-bilinear", "resnet-style")}
    assert sum(isinstance(m, tf.StyleUp) for m in gens["resnet-style"].modules()) == 2
    ups = [m.mode for m in gens["resnet-bilinear"].modules() if isinstance(m, torch.nn.Upsample)]
    assert ups == ["bilinear", "bilinear"]


def test_the_translate_stage_writes_the_large_family_that_twins_table_reports(tmp_path, monkeypatch):
    tt, table = _load("train_twins"), _load("twins_table")
    monkeypatch.syspath_prepend(str(ROOT / "examples"))   # as when the script runs: it imports translation_family
    calls = []
    monkeypatch.setattr(tt.subprocess, "run", lambda cmd, check: calls.append(cmd))
    held = tmp_path / "heldout"
    for d in [tmp_path / "translate-banks" / "bank-s9u", held / "val-mix",
              *(held / "report" / n for n in tt.FAMILY_STAGES["translate"][2])]:
        d.mkdir(parents=True)
    tt.stage_translate(tmp_path / "data", tmp_path, "translate")
    pairs = {c[c.index("--out") + 1]: c for c in calls if "pairs" in c}
    large = {out.removeprefix("heldout/"): c for out, c in pairs.items() if "large" in out}
    assert set(large) == set(table.LARGE_SETS)
    for c in large.values():
        assert c[c.index("--side") + 1] == "held" and c[c.index("--size") + 1] == "512"   # 64 tiles: over the cap
    assert all("--size" not in c for out, c in pairs.items() if "large" not in out)     # the 128 px families as before
    assert {large[n][large[n].index("--bank") + 1] for n in large} == \
        {pairs[f"heldout/translate-{k}"][pairs[f"heldout/translate-{k}"].index("--bank") + 1] for k in ("seen", "unet", "gan")}


def test_a_recipe_fine_tunes_its_own_init_unless_the_command_line_names_another():
    tt = _load("train_twins")

    def args(**kw):
        base = dict(recipe="v10", init=None, run=None, work="w", lr=2e-4, rescale=0.0)
        return SimpleNamespace(**{**base, **kw})
    a = args()
    tt.apply_recipe(a)
    assert a.init == "ganscan-twins-v4" and a.run == str(Path("w") / "run-v10") and a.rescale == 0.3
    b = args(init="runs/x/best.safetensors", run="runs/mine")
    tt.apply_recipe(b)
    assert b.init == "runs/x/best.safetensors" and b.run == "runs/mine" and b.epochs == 3
    c = args(recipe="v12")
    tt.apply_recipe(c)
    assert c.init is None and c.small == "pairs-small"   # from scratch
    d = args(calib_u2j=True)
    tt.apply_recipe(d)
    assert d.calib_u2j and d.calib_frac                  # added to v10's own calibration kinds
    e = args(recipe="v14")
    tt.apply_recipe(e)
    assert e.calib_u2j and e.init == "ganscan-twins-v10"
    f = args()
    tt.apply_recipe(f)
    assert not f.calib_u2j                               # v10 itself is calibrated without the kind
    assert f.crop_align == 1                             # crops at any offset
    g, h = args(recipe="v16"), args(recipe="v16", crop_align=1)
    tt.apply_recipe(g)
    tt.apply_recipe(h)
    assert g.crop_align == 8 and g.init == "ganscan-twins-v10" and h.crop_align == 1   # the control: --crop-align 1
    v19 = args(recipe="v19")
    tt.apply_recipe(v19)
    assert v19.translate and v19.translate2 and not v19.long
    assert tt.family_stages(v19) == ["translate", "translate2"] and tt.val_set(v19) == "val-mix"


def test_an_averaged_recipe_trains_a_run_per_seed_and_averages_them(tmp_path, monkeypatch):
    tt = _load("train_twins")
    calls = []

    def fake_ganscan(*a):   # a train call leaves its run's best checkpoint; the average writes the output
        calls.append(a)
        if a[0] == "train":
            out = Path(a[a.index("-o") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "best.safetensors").write_bytes(b"x")
    monkeypatch.setattr(tt, "ganscan", fake_ganscan)
    args = SimpleNamespace(recipe="v34", init=None, run=None, work=str(tmp_path), lr=2e-4, rescale=0.0, seed=7,
                           resume=False, pairs=["pairs"], precision="auto", threshold_rule="fpr:0.05")
    tt.apply_recipe(args)
    assert args.average_seeds == (0, 1) and args.arch == "npr32-ref" and args.init == "ganscan-twins-v10"
    run = tt.stage_train(tmp_path, args)
    trains = [c for c in calls if c[0] == "train"]
    assert [c[c.index("--seed") + 1] for c in trains] == ["0", "1"]
    assert [c[c.index("-o") + 1] for c in trains] == [str(run / "seed0"), str(run / "seed1")]
    avg = calls[-1]
    assert avg[:2] == ("models", "average") and avg[avg.index("-o") + 1] == str(run / "best.safetensors")
    assert list(avg[2:4]) == [str(run / "seed0" / "best.safetensors"), str(run / "seed1" / "best.safetensors")]
    # a stopped build continues: the trained seed is kept, the average written again
    (run / "seed1" / "best.safetensors").unlink()
    calls.clear()
    tt.stage_train(tmp_path, args)
    assert [c[c.index("--seed") + 1] for c in calls if c[0] == "train"] == ["1"] and calls[-1][1] == "average"
    v32 = SimpleNamespace(recipe="v32", init=None, run=None, work="w", lr=2e-4, rescale=0.0)
    tt.apply_recipe(v32)
    assert v32.average_seeds is None


def test_a_spectrum_member_recipe_fuses_its_run_as_the_spectrum_member_beside_its_partner(tmp_path, monkeypatch):
    tt = _load("train_twins")
    calls = []
    monkeypatch.setattr(tt, "ganscan", lambda *a: calls.append(a))
    for name, r in tt.RECIPES.items():
        args = SimpleNamespace(fsd=False, fit_jpeg=False, translate=r.get("translate", False), long=False,
                               name=r["name"], member=r.get("member", "npr"), partner=r.get("partner"),
                               calib_frac=r.get("calib_frac", False), calib_u2j=r.get("calib_u2j", False),
                               jpeg_branch=r.get("jpeg_branch"), fusion_name=r.get("fusion_name"))
        calls.clear()
        out = tt.stage_fuse(tmp_path, tmp_path / r["run"], args)
        cmd = calls[0]
        best = str(tmp_path / r["run"] / "best.safetensors")
        if r.get("jpeg_branch"):   # the run trained the JPEG branch's member; lossless files keep the named member
            assert cmd[cmd.index("--npr") + 1] == r["jpeg_branch"] and cmd[cmd.index("--npr-jpeg") + 1] == best, name
            assert cmd[cmd.index("--fit-jpeg") + 1] == str(tmp_path / "heldout" / "fit-jpeg"), name
            assert cmd[cmd.index("--name") + 1] == r["fusion_name"], name
            args.calib_u2j = True   # the enlarged-then-JPEG kind binds JPEG files only, into its own output
            calls.clear()
            out_u = tt.stage_fuse(tmp_path, tmp_path / r["run"], args)
            cmd_u = calls[0]
            assert cmd_u[cmd_u.index("--calibrate-jpeg") + 1] == str(tmp_path / "heldout" / "calib-u2j"), name
            assert out_u.name == "fused-u2j.safetensors" and out.name == "fused.safetensors", name
            args.calib_u2j = r.get("calib_u2j", False)
        elif args.member == "spectrum":
            assert r["arch"] == "alexnet64-spectrum" and r["partner"], name
            assert cmd[cmd.index("--spectrum") + 1] == best and cmd[cmd.index("--npr") + 1] == r["partner"], name
        else:
            assert "--spectrum" not in cmd and cmd[cmd.index("--npr") + 1] == best and "--npr-jpeg" not in cmd, name
        assert "fusion" in cmd[cmd.index("--name") + 1] and out.parent == tmp_path / r["run"], name
        calib = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--calibrate"]
        assert calib[-1] == str(tmp_path / "heldout" / "calib"), name
        assert (str(tmp_path / "heldout" / "calib-frac") in calib) == bool(r.get("calib_frac")), name
        assert (str(tmp_path / "heldout" / "calib-u2j") in calib) == bool(r.get("calib_u2j")), name


@pytest.mark.parametrize("recipe", ["v40", "v43", "v48", "v49"])
def test_the_default_recipe_reads_v10s_fusion_at_two_scales(tmp_path, monkeypatch, recipe):
    tt = _load("train_twins")
    calls, runs = [], []
    monkeypatch.setattr(tt, "ganscan", lambda *a: calls.append(a))
    monkeypatch.setattr(tt.subprocess, "run", lambda cmd, check: runs.append(cmd))
    args = SimpleNamespace(recipe=recipe, init=None, run=None, work=str(tmp_path), lr=2e-4, rescale=0.0, fsd=False,
                           member="npr", partner=None)
    tt.apply_recipe(args)
    assert args.run == str(tmp_path / "run-v10") and args.init == "ganscan-twins-v4"   # v10's build
    out = tt.stage_fuse(tmp_path, Path(args.run), args)
    fuse = calls[0]
    assert fuse[:2] == ("models", "fuse") and fuse[fuse.index("-o") + 1] == str(Path(args.run) / "fused.safetensors")
    cmd = runs[0]
    assert cmd[1].endswith("retile.py") and cmd[2] == str(Path(args.run) / "fused.safetensors")
    assert out == Path(args.run) / f"fused-{recipe}.safetensors" and cmd[cmd.index("-o") + 1] == str(out)
    opts = {k: cmd[cmd.index(k) + 1] for k in ("--half-tiles", "--half-margin", "--half-filter", "--name", "--fpr")}
    assert opts == {"--half-tiles": "4", "--half-margin": "1.0", "--half-filter": "lanczos",
                    "--name": f"ganscan-fusion-{recipe}", "--fpr": "0.05"} and "--half-lossless" in cmd
    # v43 (C49): JPEG files under the tile cap read in overlapping tiles at stride 16; v40 has no such read
    assert ("--tile-stride" in cmd and cmd[cmd.index("--tile-stride") + 1] == "16") == (recipe != "v40")
    assert ("--stride-jpeg-only" in cmd) == (recipe != "v40")
    # v48 (C54): a JPEG file's tiles pooled by their probabilities; v40 and v43 average the logits
    assert ("--tile-pool" in cmd and cmd[cmd.index("--tile-pool") + 1] == "prob") == (recipe in ("v48", "v49"))
    assert ("--pool-jpeg-only" in cmd) == (recipe in ("v48", "v49"))
    # v49 (C56): JPEG files of 256 px and more read at half size too, at margin 3; its threshold from bf16 scores
    jpeg_read = {k: cmd[cmd.index(k) + 1] for k in ("--half-jpeg-side", "--half-jpeg-margin", "--precision") if k in cmd}
    assert jpeg_read == ({"--half-jpeg-side": "256", "--half-jpeg-margin": "3.0", "--precision": "bf16"}
                         if recipe == "v49" else {})
    i = cmd.index("--calibrate")
    assert cmd[i + 1:i + 3] == [str(tmp_path / "heldout" / "calib"), str(tmp_path / "heldout" / "calib-frac")]
    runs.clear()
    tt.stage_table(tmp_path / "data", tmp_path, Path(args.run), args)
    table = runs[0]
    assert table[table.index("--models") + 1:table.index("--work")][-1] == str(out)   # the two-scale model


def test_a_recipe_pair_folder_sets_its_own_pair_fields_and_the_others_keep_the_defaults(tmp_path, monkeypatch):
    from ganscan.detectors.train import twins as T

    tt = _load("train_twins")
    monkeypatch.setattr(tt, "sources", lambda data, held: [f"p{i}.jpg" for i in range(3)])
    monkeypatch.setattr(tt, "fit_crops", lambda paths: [])
    monkeypatch.setattr(T, "build_bank", lambda seed, *a, **k: f"bank{seed}")
    seen = {}
    monkeypatch.setattr(T, "write_twins", lambda src, dst, bank, cfg, **k: seen.setdefault(Path(dst).name, (bank, cfg)))
    args = SimpleNamespace(recipe="v14", rescale=0.3, small=None, tails_per_kind=1)
    assert [j[0] for j in tt.pair_jobs(args)] == ["pairs-rs", "pairs-u2j"]
    tt.stage_pairs(tmp_path / "data", tmp_path, args)
    rs, u2j = seen["pairs-rs"][1], seen["pairs-u2j"][1]
    assert rs == T.PairConfig(rescale_prob=0.3)                                   # pairs-rs exactly as v10 made it
    assert (u2j.interp_real_prob, u2j.jpeg_prob, u2j.jpeg_quality, u2j.rescale_prob) == (1.0, 1.0, (60, 95), 0.3)
    assert seen["pairs-u2j"][0] == "bank4" and seen["pairs-rs"][0] == "bank0"   # each folder its own tail bank
    v10 = SimpleNamespace(recipe="v10")
    assert all(len(j) == 5 and j[4] == {} for j in tt.pair_jobs(v10))


def test_a_pair_config_with_every_real_up_scaled_and_compressed_makes_only_such_pairs():
    import torch
    from ganscan.detectors.train import twins as T

    crop = _noise(32, 0)
    tail = torch.nn.Upsample(scale_factor=2, mode="nearest")
    cfg = T.PairConfig(size=32, interp_real_prob=1.0, jpeg_prob=1.0, jpeg_quality=(60, 95), blur_prob=0.0)
    rng = np.random.default_rng(1)
    pairs = [T.make_pair(crop, tail, cfg, rng) for _ in range(20)]
    assert all(p["up"] != "none" and 60 <= p["jpeg"] <= 95 for p in pairs)
    assert len({p["jpeg"] for p in pairs}) > 1


def test_twins_table_prints_a_column_per_requested_perturbation_and_na_where_no_set_has_it():
    table = _load("twins_table")
    fake = {"n_real": 2, "n_fake": 2, "auc": 0.9, "ap": 0.8, "tpr_at_threshold": 0.5, "tpr_at_5fpr": 0.5,
            "fpr_at_threshold": 0.0, "auc_jpeg:75": 0.7, "tpr_jpeg:75": 0.2}
    out = {"m": {"threshold": 0.5, "sets": {"own/twins-seen": fake,
                                            "own/twins-shuffle": {**fake, "auc_jpeg:75": 0.6, "tpr_jpeg:75": 0.4},
                                            "full/web": {"n_real": 3, "fpr_at_threshold": 1 / 3, "fpr_jpeg:75": 2 / 3}}}}
    lines = table.markdown(out, ["jpeg:75", "blur:1"]).splitlines()
    assert lines[2].endswith("| AUC jpeg:75 | AUC blur:1 | at threshold, jpeg:75 | at threshold, blur:1 |")
    mean = next(l for l in lines if l.startswith("| **mean own**"))
    assert mean.endswith("| 0.650 | n/a | TPR 30 % | TPR n/a |")   # means of 0.7 and 0.6, 20 and 40 %; no set has blur:1
    real = next(l for l in lines if l.startswith("| full/web"))
    assert real.count("|") == lines[2].count("|") and "33 %" in real
    assert real.endswith("| FPR 67 % | FPR n/a |")   # the real photos perturbed alike


def test_retile_changes_only_what_large_images_read_and_recalibrates_the_threshold(tmp_path):
    import torch

    from ganscan.core.checkpoint import read_metadata, save_checkpoint
    from ganscan.core.device import choose_precision, resolve_device
    from ganscan.detectors.evaluate import EvalSettings, score_files
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.registry import build_detector, get_config
    from ganscan.errors import DataError

    retile = _load("retile")
    torch.manual_seed(0)
    arch = "fusion-spectrum-npr32"
    net = build_detector(arch)
    state = {**net.state_dict(), "weight": torch.tensor([1.0, 1.0]), "bias": torch.tensor([0.0])}
    src = tmp_path / "tiles16.safetensors"
    save_checkpoint(src, state, {"kind": "detector", "arch": arch, "name": "t16", "threshold": 0.5,
                                 "preprocessing": get_config(arch).preprocessing()})
    rng = np.random.default_rng(0)
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(small)      # 4 tiles
    Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(large)      # 64 tiles
    for kind, size in (("crops", 96), ("photos", 400)):
        for i in range(10):
            px = rng.integers(0, 256, (size, size + 8 * i, 3), dtype=np.uint8)
            p = tmp_path / "calib" / kind / "0_real" / f"{kind}{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(px).save(p)
    out = tmp_path / "tiles64.safetensors"
    meta = retile.retile(str(src), 64, [str(tmp_path / "calib")], 0.1, "t64", out, precision="fp32")
    assert read_metadata(out)["preprocessing"]["max_tiles"] == 64 and meta["retiled_from"]["max_tiles"] == 16
    assert read_metadata(out)["threshold_precision"] == "fp32"   # the calibration's precision is recorded
    rates = meta["threshold_calibration"]["fpr_by_kind"]
    assert set(rates) == {"crops", "photos"} and max(rates.values()) <= 0.1
    prec, settings = choose_precision(resolve_device("cpu"), "fp32"), EvalSettings(workers=0)
    before = score_files(load_detector(str(src)), [str(small), str(large)], prec, settings)
    after = score_files(load_detector(str(out)), [str(small), str(large)], prec, settings)
    assert after[str(small)][0] == pytest.approx(before[str(small)][0], abs=1e-6)   # 4 tiles: read whole either way
    assert after[str(large)][0] != pytest.approx(before[str(large)][0], abs=1e-6)   # 64 tiles now, not 16
    crop = tmp_path / "crop.safetensors"
    save_checkpoint(crop, state, {"kind": "detector", "arch": arch, "name": "c",
                                  "preprocessing": {**get_config(arch).preprocessing(), "policy": "crop"}})
    with pytest.raises(DataError, match="not tiles"):
        retile.retile(str(crop), 64, [str(tmp_path / "calib")], 0.1, "c64", tmp_path / "c64.safetensors")
    # the tile grid on multiples of 8: a 128 px image's grid already starts there, a 300 px one's does not
    odd = tmp_path / "odd.png"
    Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(odd)
    def retiled(name, base=src, **settings):   # ``base``'s tensors under new read settings: (file, metadata, reads)
        out = tmp_path / f"{name}.safetensors"
        meta = retile.retile(str(base), None, [str(tmp_path / "calib")], 0.1, name, out, **settings)
        return out, meta, read_metadata(out)["preprocessing"]

    a8, meta, pre = retiled("a8", align=8)
    assert pre["tile_align"] == 8 and pre["max_tiles"] == 16 and meta["retiled_from"]["tile_align"] == 1
    before = score_files(load_detector(str(src)), [str(small), str(odd)], prec, settings)
    after = score_files(load_detector(str(a8)), [str(small), str(odd)], prec, settings)
    assert after[str(small)][0] == pytest.approx(before[str(small)][0], abs=1e-6)
    assert after[str(odd)][0] != pytest.approx(before[str(odd)][0], abs=1e-6)   # centred at 22, now at 16
    # a half-size read (C43): an image under 128 px scores as before, a larger one the larger of its two reads
    tiny = tmp_path / "tiny.png"
    Image.fromarray(rng.integers(0, 256, (96, 120, 3), dtype=np.uint8)).save(tiny)
    h4, meta, pre = retiled("h4", half_tiles=4)
    assert pre["half_tiles"] == 4 and pre["max_tiles"] == 16 and meta["retiled_from"]["half_tiles"] == 0
    assert max(meta["threshold_calibration"]["fpr_by_kind"].values()) <= 0.1
    files = [str(tiny), str(large)]
    before = score_files(load_detector(str(src)), files, prec, settings)
    after = score_files(load_detector(str(h4)), files, prec, EvalSettings(workers=1))   # views cross a pipe
    assert after[str(tiny)][0] == pytest.approx(before[str(tiny)][0], abs=1e-6)
    assert after[str(large)][0] >= before[str(large)][0] - 1e-6
    m2, meta, pre = retiled("m2", h4, half_margin=2.0)
    assert pre["half_margin"] == 2.0 and meta["retiled_from"]["half_tiles"] == 4
    margin = score_files(load_detector(str(m2)), files, prec, settings)
    assert before[str(large)][0] - 1e-6 <= margin[str(large)][0] <= after[str(large)][0] + 1e-6
    lz, meta, pre = retiled("lz", m2, half_filter="lanczos", half_lossless=True)
    assert (pre["half_filter"], pre["half_lossless"], pre["half_margin"]) == ("lanczos", True, 2.0)
    assert load_detector(str(lz)).config.describe_preprocessing() == "tiles64x16+half4-2-lanczos-lossless"
    big_jpeg = tmp_path / "large.jpg"
    Image.open(large).save(big_jpeg, quality=95)
    plain = score_files(load_detector(str(src)), [str(big_jpeg)], prec, settings)
    lossless = score_files(load_detector(str(lz)), [str(big_jpeg)], prec, EvalSettings(workers=1))
    assert lossless[str(big_jpeg)][0] == pytest.approx(plain[str(big_jpeg)][0], abs=1e-6)   # a JPEG: v10's read alone
    assert "half_tiles" not in retiled("h0", h4, half_tiles=0)[2]
    # overlapping tiles (C48): a 128 px image reads 9 tiles at stride 32, a 300 px one (16 tiles) as before
    s32, meta, pre = retiled("s32", tile_stride=32)
    assert pre["tile_stride"] == 32 and meta["retiled_from"]["tile_stride"] == 0
    files = [str(small), str(odd)]
    before = score_files(load_detector(str(src)), files, prec, settings)
    after = score_files(load_detector(str(s32)), files, prec, settings)
    assert after[str(odd)][0] == pytest.approx(before[str(odd)][0], abs=1e-6)
    assert after[str(small)][0] != pytest.approx(before[str(small)][0], abs=1e-6)
    # for JPEG files only (C49): a lossless 128 px image scores as before, the same image as a JPEG as s32 reads it
    s32j, meta, pre = retiled("s32j", s32, stride_jpeg_only=True)
    assert pre["tile_stride"] == 32 and pre["stride_jpeg_only"] is True
    small_jpeg = tmp_path / "small.jpg"
    Image.open(small).save(small_jpeg, quality=95)
    files = [str(small), str(small_jpeg)]
    only = score_files(load_detector(str(s32j)), files, prec, settings)
    every = score_files(load_detector(str(s32)), files, prec, settings)
    plain = score_files(load_detector(str(src)), files, prec, settings)
    assert only[str(small)][0] == pytest.approx(plain[str(small)][0], abs=1e-6)
    assert only[str(small_jpeg)][0] == pytest.approx(every[str(small_jpeg)][0], abs=1e-6)
    assert only[str(small_jpeg)][0] != pytest.approx(plain[str(small_jpeg)][0], abs=1e-6)
    # a JPEG half-size read from 256 px (C51): the 300 px JPEG scores max(v43's, half - margin), a lossless file as before
    hj, meta, pre = retiled("hj", lz, half_jpeg_side=256, half_jpeg_margin=0.0)
    assert (pre["half_jpeg_side"], pre["half_jpeg_margin"]) == (256, 0.0)
    files = [str(big_jpeg), str(large)]
    with_read = score_files(load_detector(str(hj)), files, prec, EvalSettings(workers=1))
    without = score_files(load_detector(str(lz)), files, prec, settings)
    assert with_read[str(large)][0] == pytest.approx(without[str(large)][0], abs=1e-6)
    assert with_read[str(big_jpeg)][0] >= without[str(big_jpeg)][0] - 1e-6
    # another tile pooling (C53): the mean of the highest half of each read's tiles is at least their mean; an image
    # read in one tile scores as before
    top, meta, pre = retiled("top", tile_pool="top50")
    assert pre["tile_pool"] == "top50" and meta["retiled_from"]["tile_pool"] == "mean" and "tile_pool" not in read_metadata(src)["preprocessing"]
    files = [str(tiny), str(large), str(small)]
    pooled = score_files(load_detector(str(top)), files, prec, EvalSettings(workers=1))
    mean = score_files(load_detector(str(src)), files, prec, settings)
    assert pooled[str(tiny)][0] == pytest.approx(mean[str(tiny)][0], abs=1e-6)
    assert pooled[str(large)][0] > mean[str(large)][0] and pooled[str(small)][0] > mean[str(small)][0]
    assert load_detector(str(top)).config.describe_preprocessing() == "tiles64x16+pool-top50"
    # for JPEG files only (C54): the lossless 128 px image scores by the mean again, its JPEG copy by the pooling
    topj, meta, pre = retiled("topj", top, pool_jpeg_only=True)
    assert pre["tile_pool"] == "top50" and pre["pool_jpeg_only"] is True
    files = [str(small), str(small_jpeg)]
    got = score_files(load_detector(str(topj)), files, prec, settings)
    assert got[str(small)][0] == pytest.approx(score_files(load_detector(str(src)), files, prec, settings)[str(small)][0], abs=1e-6)
    assert got[str(small_jpeg)][0] == pytest.approx(score_files(load_detector(str(top)), files, prec, settings)[str(small_jpeg)][0], abs=1e-6)


def test_overlap_tiles_chooses_the_stride_by_rule_v42():
    ot = _load("overlap_tiles")

    def summ(clean, jpeg, tpr):
        return {"auc": {"none": clean, "jpeg:90": jpeg}, "threshold": 0.5, "tpr": tpr}

    base = summ([0.95, 0.97], [0.90, 0.90], 0.85)
    assert ot.choose({0: base, 32: summ([0.95, 0.97], [0.91, 0.92], 0.84), 16: summ([0.95, 0.966], [0.92, 0.93], 0.85)}) == 16
    # 16 loses a clean AUC beyond 0.005: not eligible; 32 then
    assert ot.choose({0: base, 32: summ([0.95, 0.97], [0.91, 0.92], 0.84), 16: summ([0.94, 0.97], [0.95, 0.95], 0.9)}) == 32
    # a TPR more than 2 points lower is not eligible; no gain under JPEG 90: nothing
    assert ot.choose({0: base, 32: summ([0.95, 0.97], [0.95, 0.95], 0.82)}) is None
    assert ot.choose({0: base, 32: summ([0.96, 0.98], [0.90, 0.90], 0.9)}) is None
    # rule v43: a JPEG-90 AUC that falls more than 0.005 makes a stride ineligible when the read is for JPEGs only
    drop = {0: base, 32: summ([0.95, 0.97], [0.93, 0.894], 0.85)}
    assert ot.choose(drop) == 32 and ot.choose(drop, jpeg_only=True) is None
    # JPEG files take the overlapping read, the others the plain one; a JPEG-90 copy is a JPEG
    plain = {"s": {"none": [[0, 1.0], [1, 2.0]], "jpeg:90": [[0, 3.0], [1, 4.0]]}}
    over = {"s": {"none": [[0, -1.0], [1, -2.0]], "jpeg:90": [[0, -3.0], [1, -4.0]]}}
    got = ot.mixed(plain, over, {"s": [False, True]})
    assert got == {"s": {"none": [[0, 1.0], [1, -2.0]], "jpeg:90": [[0, -3.0], [1, -4.0]]}}
    with pytest.raises(SystemExit):
        ot.mixed(plain, over, {"s": [True]})
    # the summary: AUC per set, the threshold at 5 % FPR per calibration kind, the clean TPR there
    fit = {"f": {"none": [[0, -2.0], [1, 2.0], [1, -3.0]], "jpeg:90": [[0, 0.0], [1, 1.0], [1, -1.0]]}}
    calib = {"k": {"none": [[0, v / 10 - 1] for v in range(20)]}}
    m = ot.summary(fit, calib)
    assert m["auc"] == {"none": [0.5], "jpeg:90": [0.5]} and m["tpr"] == 0.5
    assert 1 / (1 + np.exp(-0.8)) < m["threshold"] <= 1 / (1 + np.exp(-0.9))


def test_tile_pool_chooses_the_pooling_by_rule_v47():
    tp = _load("tile_pool")

    def summ(clean, jpeg, tpr):
        return {"auc": {"none": clean, "jpeg:90": jpeg}, "threshold": 0.5, "tpr": tpr}

    base = summ([0.95, 0.97], [0.90, 0.90], 0.85)
    better = summ([0.95, 0.97], [0.91, 0.92], 0.84)
    assert tp.choose({"mean": base, "median": better, "top50": summ([0.95, 0.97], [0.91, 0.91], 0.9)}) == "median"
    # a tie on the mean of the 8: the earlier pooling of TILE_POOLS
    assert tp.choose({"mean": base, "top50": better, "median": better}) == "top50"
    # an AUC more than 0.005 lower, or a TPR more than 2 points lower, is not eligible; no gain: nothing
    assert tp.choose({"mean": base, "lme": summ([0.94, 0.99], [0.95, 0.95], 0.9)}) is None
    assert tp.choose({"mean": base, "lme": summ([0.95, 0.97], [0.95, 0.95], 0.82)}) is None
    assert tp.choose({"mean": base, "prob": summ([0.95, 0.97], [0.90, 0.90], 0.9)}) is None
    # an image's logit: each read pooled, the half-size read less the margin, the larger kept
    row = [1, [0.0, 1.0, 8.0], [2.0, 2.0, 9.0, 3.0], False]
    assert tp.pooled(row, "mean", 0.0) == 4.0 and tp.pooled(row, "median", 1.0) == 1.5
    assert tp.pooled([0, [0.0, 1.0, 8.0], None, True], "top50", 1.0) == 4.5
    got = tp.as_rows_p({"s": {"none": [row]}}, "median", 1.0)
    assert got == {"s": {"none": [[1, 1.5]]}}
    # rule v48: a lossless file keeps the mean, a JPEG file takes the pooling
    assert tp.pooled(row, "median", 1.0, jpeg_only=True) == 3.0
    assert tp.pooled([1, [0.0, 1.0, 8.0], None, True], "median", 1.0, jpeg_only=True) == 1.0


def test_tile_pool_keeps_every_tile_and_their_mean_is_the_scans_score(tmp_path, monkeypatch):
    import torch

    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.data.datasets import test_sets
    from ganscan.detectors.registry import build_detector, get_config

    tp = _load("tile_pool")
    monkeypatch.setattr(tp, "CHECK_EVERY", 1)   # every batch also scored by forward_logits
    torch.manual_seed(0)
    arch = "fusion-spectrum-npr32"
    state = {**build_detector(arch).state_dict(), "weight": torch.tensor([1.0, 1.0]), "bias": torch.tensor([0.0])}
    pre = {**get_config(arch).preprocessing(), "half_tiles": 4, "half_margin": 1.0, "half_filter": "lanczos",
           "half_lossless": True, "tile_stride": 16, "stride_jpeg_only": True}
    ckpt = tmp_path / "v43like.safetensors"
    save_checkpoint(ckpt, state, {"kind": "detector", "arch": arch, "name": "v43like", "threshold": 0.5,
                                  "preprocessing": pre})
    rng = np.random.default_rng(1)
    for label in ("0_real", "1_fake"):
        d = tmp_path / "set" / label
        d.mkdir(parents=True)
        for i in range(3):
            px = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
            px.save(d / f"{i}.png")
            px.save(d / f"{i}.jpg", quality=90)
    reads, worst = tp.tile_logits(str(ckpt), test_sets(str(tmp_path / "set")), progress=lambda *_: None)
    assert worst < 1e-4                                   # the kept tiles' mean is forward_logits' score
    (rows_clean, rows_jpeg), = [(c["none"], c["jpeg:90"]) for c in reads.values()]
    assert len(rows_clean) == len(rows_jpeg) == 12
    for label, native, half, is_jpeg in rows_clean:
        # a 128 px JPEG: 16 overlapping tiles, no half-size read; a PNG: 4 tiles and one half-size tile
        assert (len(native), half is None) == ((16, True) if is_jpeg else (4, False))
    assert all(r[3] and len(r[1]) == 16 and r[2] is None for r in rows_jpeg)   # every JPEG-90 copy is a JPEG
    # the poolings read the same kept tiles, and the mean probability differs from the mean logit where tiles disagree
    assert any(abs(tp.pooled(r, "prob", 1.0) - tp.pooled(r, "mean", 1.0)) > 1e-9 for r in rows_jpeg)


def test_tile_pool_keeps_each_members_tile_logits_of_a_fusion(tmp_path):
    import torch

    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.data.datasets import test_sets
    from ganscan.detectors.registry import build_detector, get_config

    tp = _load("tile_pool")
    torch.manual_seed(0)
    arch = "fusion-spectrum-npr32"
    state = {**build_detector(arch).state_dict(), "weight": torch.tensor([0.5, 2.0]), "bias": torch.tensor([0.25])}
    pre = {**get_config(arch).preprocessing(), "half_tiles": 4, "half_margin": 1.0, "half_filter": "lanczos",
           "half_lossless": True}
    ckpt = tmp_path / "fused.safetensors"
    save_checkpoint(ckpt, state, {"kind": "detector", "arch": arch, "name": "f", "threshold": 0.5, "preprocessing": pre})
    rng = np.random.default_rng(2)
    for label in ("0_real", "1_fake"):
        d = tmp_path / "set" / label
        d.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(d / f"{i}.png")
    sets = test_sets(str(tmp_path / "set"))
    fused, _ = tp.tile_logits(str(ckpt), sets, conditions=("none",), progress=lambda *_: None)
    members, worst = tp.tile_logits(str(ckpt), sets, conditions=("none",), progress=lambda *_: None, members=True)
    assert worst == 0.0                                   # nothing to check against a single score
    (a,), (b,) = [c["none"] for c in fused.values()], [c["none"] for c in members.values()]
    for (y, native, half, jpg), (y2, native2, half2, jpg2) in zip(a, b):
        assert (y, jpg, len(native), half is None) == (y2, jpg2, len(native2), half2 is None)
        assert all(len(t) == 2 for t in native2 + (half2 or []))   # [spectrum, twin] per tile
        # the fusion's tile logit is its weights applied to the members' (bf16 where the CPU has it: loose)
        for f, (s, t) in zip(native + (half or []), native2 + (half2 or [])):
            assert f == pytest.approx(0.5 * s + 2.0 * t + 0.25, abs=0.05 * (1 + abs(f)))


def test_max_fusion_reads_tiles_by_rules_v51_and_v52():
    from types import SimpleNamespace

    mf = _load("max_fusion")
    lin = ((0.5, 2.0), 0.25)
    tiles = [[1.0, -1.0], [-2.0, 0.5]]                   # [s, t] per tile
    assert mf.fused(tiles, ("linear",), lin) == [-1.25, 0.25]
    assert mf.fused(tiles, ("max", -1.0), lin) == [0.0, 0.5]
    assert mf.fused(tiles, ("hinge", 0.0), lin) == [-1.25, 1.25]     # s counted only above 0
    assert mf.fused(tiles, ("cap", -1.0, 0.5), lin) == [-1.25, 0.25]  # min(L, max(t, s - 1) + 0.5): L
    assert mf.fused([[0.0, 2.0]], ("cap", 0.0, 0.5), lin) == [2.5]    # L = 4.25 capped at max(2, 0) + 0.5
    cfg = SimpleNamespace(tile_pool="prob", pool_jpeg_only=True, half_margin=1.0, half_jpeg_margin=3.0)
    # a lossless file: mean logits, half-size read at margin 1; a JPEG file: mean probability, margin 3
    row = [1, [[0.0, 0.0], [0.0, 4.0]], [[0.0, 8.0]], False]
    assert mf.file_logit(row, ("max", -5.0), cfg, lin) == pytest.approx(7.0)
    jrow = [1, [[0.0, 0.0], [0.0, 4.0]], [[0.0, 8.0]], True]
    p = (0.5 + 1 / (1 + np.exp(-4.0))) / 2
    assert mf.file_logit(jrow, ("max", -5.0), cfg, lin) == pytest.approx(max(np.log(p / (1 - p)), 5.0))

    def summ(clean, jpeg, tpr, u2j):
        return {"auc": {"none": clean, "jpeg:90": jpeg}, "threshold": 0.5, "tpr": tpr, "u2j": u2j}

    ref = summ([0.95, 0.97], [0.90, 0.90], 0.85, 0.36)
    good = summ([0.95, 0.97], [0.90, 0.91], 0.84, 0.08)
    assert mf.choose(ref, {("max", 0.0): good, ("max", 1.0): summ([0.95, 0.97], [0.90, 0.90], 0.9, 0.05)}) \
        == ("max", 0.0)                                    # the higher mean of the 8 AUCs
    assert mf.choose(ref, {("max", 0.0): summ([0.95, 0.966], [0.90, 0.90], 0.9, 0.05)}) == ("max", 0.0)   # 0.004 lower
    assert mf.choose(ref, {("max", 0.0): summ([0.94, 0.97], [0.90, 0.90], 0.9, 0.05)}) is None   # AUC 0.01 lower
    assert mf.choose(ref, {("max", 0.0): summ([0.95, 0.97], [0.90, 0.90], 0.82, 0.05)}) is None  # TPR 3 points lower
    assert mf.choose(ref, {("hinge", 0.5): summ([0.95, 0.97], [0.90, 0.90], 0.9, 0.11)}) is None  # u2j over 10 %
    assert [mf.label(h) for h in (("max", -1.0), ("hinge", 0.5), ("cap", -2.0, 0.5))] == \
        ["max d=-1", "H a=+0.5", "C d=-2 c=0.5"]


def test_zed_fusion_fits_a_third_member_and_applies_rule_v53():
    mf = _load("max_fusion")
    zf = _load("zed_fusion")
    lin = ((0.5, 2.0), 0.25)
    # every member weighted, the third clipped to +-clip
    assert mf.fused([[1.0, -1.0, 20.0]], ("weights", (1.0, 1.0, 0.5), 0.5, 8.0), lin) == [4.5]
    assert mf.fused([[1.0, -1.0, 3.0]], ("linear",), lin) == [-1.25]   # v49's fusion ignores a third logit
    # fitted on the clean files' mean native tile logits: a third member that alone separates the classes
    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):
        y = i % 2
        z = (2.0 if y else -2.0) + rng.normal()
        rows.append([y, [[rng.normal(), rng.normal(), z], [rng.normal(), rng.normal(), z]], None, False])
    w, b = zf.fit_weights({"a": {"none": rows, "jpeg:90": []}}, 3)
    assert w[2] > 1.0 and abs(w[0]) < 0.5 and abs(w[1]) < 0.5
    w2, _ = zf.fit_weights({"a": {"none": rows, "jpeg:90": []}}, 2)
    assert len(w2) == 2
    reads = {"fit": {"a": {"none": [[0, [[0, 0, 1.0], [0, 0, 3.0]], None, False], [1, [[0, 0, -4.0]], None, True]]}},
             "calib": {"cam": {"none": [[0, [[0, 0, -1.0]], None, True], [0, [[0, 0, 0.5]], None, True],
                                        [0, [[0, 0, 2.0]], None, True]]}}, "u2j": {}}
    assert zf.medians(reads) == ["a none: +2.00 / -4.00", "cam: +0.50"]

    def summ(clean, jpeg, tpr, u2j):
        return {"auc": {"none": clean, "jpeg:90": jpeg}, "tpr": tpr, "u2j": u2j}

    ref = summ([1.0, 0.95], [0.90, 0.90], 0.85, 0.36)
    assert zf.eligible(ref, summ([1.0, 0.95], [0.90, 0.90], 0.84, 0.10))          # u2j at the limit
    assert not zf.eligible(ref, summ([1.0, 0.95], [0.90, 0.90], 0.84, 0.11))      # over it, no JPEG gain
    assert zf.eligible(ref, summ([1.0, 0.95], [0.92, 0.92], 0.85, 0.36))          # no more u2j, JPEG +0.02
    assert not zf.eligible(ref, summ([1.0, 0.95], [0.92, 0.92], 0.85, 0.37))      # ... but more u2j
    assert not zf.eligible(ref, summ([0.99, 0.95], [0.90, 0.90], 0.85, 0.05))     # an AUC 0.01 lower
    assert not zf.eligible(ref, summ([1.0, 0.95], [0.90, 0.90], 0.82, 0.05))      # TPR 3 points lower


def test_quality_threshold_calls_low_quality_jpegs_at_their_own_threshold(tmp_path):
    from PIL import Image

    qt = _load("quality_threshold")
    img = Image.new("RGB", (32, 32), (120, 60, 200))
    img.save(tmp_path / "q70.jpg", quality=70)
    img.save(tmp_path / "q95.jpg", quality=95)
    img.save(tmp_path / "a.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    qs = [qt.file_quality(str(tmp_path / n)) for n in ("q70.jpg", "q95.jpg", "a.png", "bad.jpg")]
    assert abs(qs[0] - 70) <= 2 and abs(qs[1] - 95) <= 2 and qs[2] is None and qs[3] is None
    assert [qt.low(q) for q in qs] == [True, False, False, False]
    # T_low: the lowest threshold (never below T) keeping every kind's low-quality part at 5 %; other files ignored
    kinds = {"u2j": [(p / 100, 75) for p in range(100)], "png": [(0.99, None)] * 10, "hi": [(0.95, 95)] * 10}
    t_low, rates = qt.thresholds(kinds, 0.5)
    assert 0.94 < t_low <= 0.95 and rates == {"u2j": 0.05}
    assert qt.thresholds({"u2j": [(0.1, 75)] * 40}, 0.5)[0] == 0.5   # never below v49's
    rows = [(1, 0.7, 75), (1, 0.7, 95), (1, 0.9, 75), (0, 0.7, None)]
    assert qt.flagged(rows, 1, 0.6, 0.8) == pytest.approx(2 / 3) and qt.flagged(rows, 0, 0.6, 0.8) == 1.0
    assert qt.eligible(0.857, 0.841, 0.049) and not qt.eligible(0.857, 0.83, 0.049)
    assert not qt.eligible(0.857, 0.85, 0.11)

    def table(own, tr, large, u2j, cam, jpeg75):
        f = {"auc": 0.9}
        return {"m": {"sets": {"own/a": {**f, "tpr_at_threshold": own}, "translate/b": {**f, "tpr_at_threshold": tr},
                               "large/c": {**f, "tpr_at_threshold": large},
                               "report/upscaled2x-jpeg75": {"n_real": 100, "fpr_at_threshold": u2j},
                               "full/camera": {"n_real": 65, "fpr_at_threshold": cam},
                               "report/jpeg75": {"n_real": 100, "fpr_at_threshold": jpeg75}}}}

    ref = table(0.82, 0.90, 0.81, 0.288, 1 / 65, 0.02)
    lines, ok = qt.stage2(table(0.80, 0.89, 0.80, 0.05, 0.0, 0.01), ref)
    assert ok and lines[0] == "mean TPR own: C60 80.0%, v49 82.0% (ok)" and len(lines) == 6
    assert not qt.stage2(table(0.79, 0.89, 0.80, 0.05, 0.0, 0.01), ref)[1]    # own 3 points lower
    assert not qt.stage2(table(0.82, 0.90, 0.81, 0.11, 0.0, 0.01), ref)[1]    # enlarged-then-JPEG reals over 10 %
    assert not qt.stage2(table(0.82, 0.90, 0.81, 0.05, 0.0, 0.03), ref)[1]    # another real kind flagged more
    assert not qt.stage2(table(0.82, 0.90, 0.81, 0.05, 4 / 65, 0.01), {**ref, "m": {"sets": {
        **ref["m"]["sets"], "full/camera": {"n_real": 65, "fpr_at_threshold": 5 / 65}}}})[1]   # 4 camera photos


def test_members_table_puts_models_side_by_side(tmp_path, capsys):
    mt = _load("members_table")

    def fake_set(auc, tpr, jpeg=None):
        return {"n_real": 10, "n_fake": 10, "auc": auc, "tpr_at_threshold": tpr,
                **({} if jpeg is None else {"auc_jpeg:90": jpeg})}

    a = {"a": {"threshold": 0.6, "sets": {"own/x": fake_set(0.9, 0.5, 0.8), "own/y": fake_set(0.7, 0.3, 0.6),
                                          "val/z": fake_set(0.6, 0.1), "cam": {"n_real": 5, "fpr_at_threshold": 0.2}}}}
    b = {"b": {"threshold": 0.7, "sets": {"own/x": fake_set(1.0, 1.0), "cam": {"n_real": 5, "fpr_at_threshold": 0.0}}}}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    models = mt.load_models([tmp_path / "a.json", tmp_path / "b.json"])
    got = dict(mt.rows(models))
    assert got["own/x"] == [(0.9, 0.8, 0.5), (1.0, None, 1.0)] and got["own/y"][1] is None
    own = got["**mean own**"]
    assert own[0] == pytest.approx((0.8, 0.7, 0.4)) and own[1] == (1.0, None, 1.0)
    assert got["**mean val**"] == [(0.6, None, 0.1), None] and got["cam"] == [0.2, 0.0]
    text = mt.markdown(models, ["A", "B"])
    assert "| own/x | 0.900 (0.800); 50 % | 1.000; 100 % |" in text and "| cam | FPR 20.0 % | FPR 0.0 % |" in text
    assert text.endswith("Thresholds: A 0.600; B 0.700.")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="not a table"):
        mt.load_models([tmp_path / "bad.json"])


def test_two_scale_chooses_the_half_size_reads_settings_by_rules_v38_and_v39():
    ts = _load("two_scale")
    # per set and condition: [label, native logit, half-size logit or None, is a JPEG]
    rows = [[0, 0.0, 0.0, False], [0, 0.2, 1.5, False], [1, 0.1, 1.2, False], [1, 0.3, None, False]]
    reads = {"a": {c: rows for c in ts.CONDITIONS}}
    lines, aucs = ts.table(reads, [0.0, 1.0, 5.0])
    assert len(lines) == 2 + 4 and lines[2].startswith("| no half-size read |")
    # margin 0: max(n, h) = 0, 1.5 | 1.2, 0.3 -> AUC 0.5; margin 1: 0, 0.5 | 0.2, 0.3 -> 0.5; margin 5: native, 0.75
    assert aucs[None] == [0.75] * 3 and aucs[0.0] == [0.5] * 3 and aucs[1.0] == [0.5] * 3 and aucs[5.0] == [0.75] * 3
    assert ts.choose_v38(aucs, [0.0, 1.0, 5.0]) is None   # nothing beats leaving the half-size read out
    better = [[0, 0.0, 0.0, False], [0, 0.2, -1.0, False], [1, 0.1, 2.0, False], [1, 0.3, None, False]]
    _, aucs = ts.table({"a": {c: better for c in ts.CONDITIONS}}, [0.0, 1.0, 5.0])
    assert ts.choose_v38(aucs, [0.0, 1.0, 5.0]) == 1.0    # 0 and 1 tie at AUC 1.0: the larger margin
    # lossless only: a JPEG keeps its native score
    jpeg = [[0, 0.0, 0.0, False], [0, 0.2, 1.5, True], [1, 0.1, 1.2, False], [1, 0.3, None, False]]
    assert ts.table({"a": {c: jpeg for c in ts.CONDITIONS}}, [0.0], lossless=True)[1][0.0] == [1.0] * 3
    # rule v39: a setting that loses clean or JPEG-90 AUC is not eligible, whatever it gains enlarged
    n = len(ts.CONDITIONS)
    up = ts.CONDITIONS.index("bicubic:2")

    def aucs_of(clean, enlarged):
        return [enlarged if i % n == up else clean for i in range(n)]

    settings = {("box", False): {None: aucs_of(0.9, 0.6), 1.0: aucs_of(0.89, 0.99), 2.0: aucs_of(0.9, 0.8)},
                ("lanczos", True): {None: aucs_of(0.9, 0.6), 1.0: aucs_of(0.897, 0.85), 2.0: aucs_of(0.9, 0.7)}}
    assert ts.choose_v39(settings, [1.0, 2.0]) == ("lanczos", True, 1.0)
    settings[("box", False)][2.0] = aucs_of(0.9, 0.85)        # a tie on the enlarged mean: the larger margin
    assert ts.choose_v39(settings, [1.0, 2.0]) == ("box", False, 2.0)
    assert ts.choose_v39({("box", False): {None: aucs_of(0.9, 0.6), 1.0: aucs_of(0.8, 0.9)}}, [1.0]) is None
    # rule v40: a setting whose threshold costs too much TPR is not eligible either
    assert ts.choose_v39(settings, [1.0, 2.0], tpr_ok=lambda f, lossless, m: m == 1.0) == ("lanczos", True, 1.0)
    # the threshold on the calibration reals (20 per kind: 5 % is one) and the fit sets' TPR there
    calib = {"a": {"none": [[0, -3.0 + i / 10, 4.0 if i >= 18 else None, False] for i in range(20)]}}
    fit = {"f": {"none": [[1, 0.0, 5.0, False], [1, -1.0, None, False], [0, -4.0, None, False]]}}
    t, tpr = ts.threshold_and_tpr(fit, calib, None, False)     # no half-size read: just above the second real, -1.2
    assert 1 / (1 + np.exp(1.2)) < t < 1 / (1 + np.exp(1.1)) and tpr == 1.0
    t, tpr = ts.threshold_and_tpr(fit, calib, 0.0, False)      # the half-size read: the two top reals read 4.0
    assert 1 / (1 + np.exp(-4.0)) < t < 1 / (1 + np.exp(-4.1)) and tpr == 0.5


def test_enlarged_copies_enlarge_both_classes_and_save_them_as_jpeg(tmp_path):
    from conftest import write_images

    ec = _load("enlarged_copies")
    held = tmp_path / "heldout"
    for cls, seed in (("0_real", 1), ("1_fake", 2)):
        write_images(held / "set" / cls, 3, size=(40, 30), seed=seed)
    (held / "set" / "1_fake" / "broken.png").write_bytes(b"not an image")
    done = ec.write_copies(held, tmp_path / "out", sets=("set",), scale=2.0, quality=80, limit=10)
    assert done == {"set": (6, 1)}
    copies = sorted((tmp_path / "out" / "set" / "1_fake").iterdir())
    assert len(copies) == 3 and all(c.suffix == ".jpg" for c in copies)
    with Image.open(copies[0]) as im:
        assert im.format == "JPEG" and im.size == (80, 60)
    # the first file of each class: a real, and the broken file, which sorts first among the fakes
    assert ec.write_copies(held, tmp_path / "few", sets=("set",), limit=1) == {"set": (1, 1)}


def test_band_energy_reads_the_top_octave_of_noise_and_not_of_a_smoothly_enlarged_image(tmp_path):
    be = _load("band_energy")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    assert abs(be.top_octave_share(noise) - 0.75) < 0.05          # white noise: three quarters of the plane
    enlarged = noise.resize((32, 32), Image.BOX).resize((64, 64), Image.BICUBIC)
    assert be.top_octave_share(enlarged) < 0.2 * be.top_octave_share(noise)    # bicubic 2x: about 0.09
    assert be.top_octave_share(Image.new("L", (32, 32), 128)) == 0.0   # a flat image has no energy at all
    for cls, img in (("0_real", noise), ("1_fake", enlarged)):
        (tmp_path / "set" / cls).mkdir(parents=True)
        img.convert("RGB").save(tmp_path / "set" / cls / "a.png")
    (tmp_path / "set" / "1_fake" / "broken.png").write_bytes(b"not an image")
    out = be.measure(tmp_path / "set", limit=10, quality=75)
    assert out["0_real"]["share"] > 0.6 and out["1_fake"]["share"] < 0.15
    assert out["1_fake"]["files"] == 1 and out["1_fake"]["unreadable"] == 1   # counted, not fatal
    assert 0.0 <= out["0_real"]["share_jpeg"] <= 1.0
    assert be.measure(tmp_path / "set", limit=10, quality=None)["0_real"]["share_jpeg"] is None   # --jpeg 0


def test_twins_sets_writes_each_upscaled_crop_as_jpeg75_into_its_half(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    ts = _load("twins_sets")
    up = tmp_path / "negatives" / "upscaled2x" / "0_real"
    up.mkdir(parents=True)
    names = [f"crop{i}.png" for i in range(12)]
    for i, n in enumerate(names):
        _noise(32, i).save(up / n)
    ts.write_upscaled_jpegs(up, tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "ref.jpg", "JPEG", quality=75)
    q75 = Image.open(tmp_path / "ref.jpg").quantization                    # quality 75's tables
    halves = {n: ("calib-u2j" if ts.half(n) == "calib" else "report") for n in names}
    assert set(halves.values()) == {"calib-u2j", "report"}                 # both halves get some
    for n, sub in halves.items():
        out = tmp_path / sub / "upscaled2x-jpeg75" / "0_real" / n.replace(".png", ".jpg")
        other = tmp_path / ({"calib-u2j": "report", "report": "calib-u2j"}[sub]) / "upscaled2x-jpeg75" / "0_real" / out.name
        assert out.exists() and not other.exists()
        with Image.open(out) as im:
            assert im.format == "JPEG" and im.size == (32, 32) and im.quantization == q75
    first = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.jpg"))
    ts.write_upscaled_jpegs(up, tmp_path)                                   # a second run writes nothing again
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.jpg")) == first


def test_a_native_pair_enlarges_the_centre_of_the_crop_itself_and_zero_keeps_the_old_pairs():
    import torch
    from ganscan.detectors.train import twins as T

    crop = _noise(32, 0)
    tail = torch.nn.Upsample(scale_factor=2, mode="nearest")
    base = dict(size=32, blur_prob=0.0, jpeg_prob=0.0, interp_real_prob=0.0)
    old = T.make_pair(crop, tail, T.PairConfig(**base), np.random.default_rng(3))
    zero = T.make_pair(crop, tail, T.PairConfig(**base, native_prob=0.0), np.random.default_rng(3))
    assert old["real"].tobytes() == zero["real"].tobytes() and old["fake"].tobytes() == zero["fake"].tobytes()
    assert old["up"] == "none"                                   # interp_real_prob 0: the crop itself is the real twin
    nat = T.make_pair(crop, tail, T.PairConfig(**base, native_prob=1.0), np.random.default_rng(3))
    assert nat["down"] == "native" and nat["up"] != "none"       # a native pair's real twin is always enlarged
    centre = crop.crop((8, 8, 24, 24))
    g = T._geom(centre.resize((32, 32), Image.NEAREST), nat["geom"])
    assert nat["fake"].tobytes() == g.tobytes()                   # the nearest tail: the centre, pixels doubled
    assert nat["real"].size == nat["fake"].size == (32, 32)
    rt = _load("train_twins")
    fields = [j[4] for j in rt.pair_jobs(SimpleNamespace(recipe="v15")) if j[0] == "pairs-nat"][0]
    assert fields["native_prob"] == 1.0 and T.PairConfig(**fields).jpeg_prob == 0.5


def test_enlarge_diag_writes_three_kinds_of_each_crop_once_and_counts_verdicts_per_model(tmp_path):
    diag = _load("enlarge_diag")
    src = tmp_path / "unchanged" / "0_real"
    src.mkdir(parents=True)
    for i in range(3):
        _noise(32, i).save(src / f"c{i}.png")
    (src / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "diag"
    assert diag.write_kinds(tmp_path / "unchanged", out) == 3          # the broken file is skipped, not fatal
    for k in diag.KINDS:
        files = sorted((out / k / "0_real").iterdir())
        assert len(files) == 3 and all(Image.open(f).size == (32, 32) for f in files)
        assert all((f.suffix == ".png") == (k == "downup") for f in files)
    a = Image.open(out / "native-jpeg75" / "0_real" / "c0.jpg")
    assert a.format == "JPEG"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.*")}
    assert diag.write_kinds(tmp_path / "unchanged", out) == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.*")} == before   # written once
    rows = [{"verdict_m1": "fake", "verdict_m2": "real"}, {"verdict_m1": "fake", "verdict_m2": "fake"},
            {"verdict_m1": "real", "verdict_m2": "real"}, {"verdict_m1": None, "verdict_m2": None}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert diag.flagged(tmp_path / "r.jsonl") == {"m1": 0.5, "m2": 0.25}
    (tmp_path / "one.jsonl").write_text(json.dumps({"model": "m", "verdict": "fake"}) + "\n")
    assert diag.flagged(tmp_path / "one.jsonl") == {"m": 1.0}


@pytest.mark.parametrize("argv", [[p.stem, "--help"] for p in sorted((ROOT / "examples").glob("*.py"))]
                         + [["translation_family", "bank", "--help"], ["translation_family", "pairs", "--help"]],
                         ids=lambda a: " ".join(a))
def test_every_example_script_explains_itself(argv, monkeypatch, capsys):
    """`python examples/X.py --help` prints its usage and does nothing else (no script runs on import)."""
    import sys

    monkeypatch.setattr(sys, "argv", [f"{argv[0]}.py", *argv[1:]])
    mod = _load(argv[0])
    with pytest.raises(SystemExit) as exc:
        getattr(mod, "cli", mod.main)()   # detector_table's main() is its library function; cli() parses argv
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_repeated_lines_table_counts_an_unreadable_photo_and_reads_the_repetition(tmp_path):
    from ganscan.data.provenance import REPEAT_FLAG

    rl = _load("repeated_lines")
    for i in range(3):
        _noise(96, i).save(tmp_path / f"p{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    line = rl.folder_line(str(tmp_path))
    assert line.startswith(f"{tmp_path}: 3 photos (1 unreadable, left out)")
    cells = dict(c.split(" m", 1) for c in line.split("; ")[1:])
    assert float(cells["unchanged"].split()[1].rstrip(",")) < REPEAT_FLAG   # noise repeats no line
    assert cells["nearest 2x"].endswith("flagged 3")                         # every line doubled


def test_jpeg_members_reports_every_weighting_and_the_median_shift():
    jm = _load("jpeg_members")
    rng = np.random.default_rng(0)

    def sset(n, names, sep):   # member 1 separates the classes by `sep`, member 0 by a little
        y = [0] * n + [1] * n
        x = [[0.3 * lab + rng.normal(), sep * lab + rng.normal()] for lab in y]
        return {"paths": [f"{i}{names[lab]}" for i, lab in enumerate(y)], "y": y, "x": x}

    d = {"fit/a": sset(40, (".png", ".jpg"), 3.0), "fit/b": sset(40, (".jpg", ".png"), 3.0),
         "fitjpeg/a": sset(40, (".jpg", ".jpg"), 1.0),
         "own/s": sset(30, (".png", ".png"), 4.0), "ownj/s": sset(30, (".jpg", ".jpg"), 0.5)}
    lines = jm.analyse(d)
    rows = [line for line in lines if line.startswith("| every fit file") or line.startswith("| non-JPEG")
            or line.startswith("| JPEG fit files")]
    assert len(rows) == 4
    clean, under = (float(v) for v in rows[0].split("|")[4:6])
    assert clean > 0.9 and under < clean   # the trace that separates the clean set is weak under JPEG
    med = [line for line in lines if line.startswith("| s |")]
    assert [m.split("|")[2].strip() for m in med] == ["real", "fake"]
    assert "->" in med[1]
    odds = [line for line in lines if line.startswith("the members' odds added")]
    assert len(odds) == 1 and "under JPEG 90" in odds[0] and "s " in odds[0].split("by set")[1]


def test_odds_fusion_lets_either_member_carry_the_evidence():
    """The odds fusion (C33) fitted on fakes that only one member or only the other sees: a fake that either
    member reads is scored fake, which no linear weighting of the two can do; and its parameters map back to the
    raw logits (a rescaled member gives a rescaled scale)."""
    import torch

    jm = _load("jpeg_members")
    rng = np.random.default_rng(1)
    n = 200
    reals = rng.normal(0, 1, (n, 2))
    fakes = rng.normal(0, 1, (n, 2))
    fakes[: n // 2] += (6.0, -4.0)   # half the fakes carry evidence for member 0 only, and member 1 reads them
    fakes[n // 2:] += (-4.0, 6.0)    # as more real than the reals (their trace erased there); the other half alike
    x = torch.from_numpy(np.concatenate([reals, fakes]))
    y = torch.from_numpy(np.array([0] * n + [1] * n))
    scale, shift = jm.fit_odds(x, y)
    from ganscan.detectors import metrics as M
    from ganscan.detectors.zoo.fusion import fit_logistic

    odds_auc = M.roc_auc(y.numpy(), jm.odds_logit(x, scale, shift).numpy())
    w, _ = fit_logistic(x, y)
    lin_auc = M.roc_auc(y.numpy(), (x.double() @ w.double()).numpy())
    assert odds_auc > 0.99 and odds_auc > lin_auc + 0.02
    x2 = x.clone()
    x2[:, 1] *= 2.0
    scale2, _ = jm.fit_odds(x2, y)
    assert abs(float(scale2[1]) * 2.0 - float(scale[1])) < 0.05 * abs(float(scale[1]))


def test_jpeg_ceiling_measures_what_a_pass_leaves_and_ranks_each_fake_against_its_twin():
    from PIL import Image

    jc = _load("jpeg_ceiling")
    rng = np.random.default_rng(2)
    base = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert jc.top_octave_rms(base, base) == 0.0
    arr = np.asarray(base).astype(np.int16)
    arr[::2, ::2] += 40   # a period-2 trace: all of it in the top octave
    traced = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    assert jc.top_octave_rms(traced, base) > 5.0
    flat = Image.fromarray(np.full((64, 64, 3), 100, np.uint8))
    from ganscan.data.augment import jpeg_roundtrip

    assert jc.top_octave_rms(jpeg_roundtrip(flat, 90), flat) < 0.5   # a flat image goes through JPEG 90 unchanged
    rows = [{"set": "s", "tail": "tconv" if i % 2 else "nearest", "real_up": "none", "left_clean": 2.0,
             "left_jpeg": float(i), "margin_clean": 1.0, "margin_jpeg": 1.0 if i >= 5 else -1.0,
             "real": (-2.0, -1.0), "fake": (3.0, 0.5)} for i in range(10)]
    lines = jc.report(rows)
    quintiles = lines[2:lines.index("")]   # the first table, without its header
    assert len(quintiles) == 5
    assert quintiles[0].split("|")[5].strip() == "0.0 %" and quintiles[-1].split("|")[5].strip() == "100.0 %"
    by_tail = [line for line in lines if line.startswith("| tail = ")]
    assert len(by_tail) == 2 and all("-2.00 -> -1.00" in line for line in by_tail)


def test_test_time_twin_is_a_standard_enlargement_at_the_files_own_quality(tmp_path):
    from PIL import Image

    from ganscan.data.provenance import jpeg_quality

    tt = _load("test_time_twin")
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 255, (33, 47, 3), dtype=np.uint8))
    twin = tt.enlarged_twin(img)
    assert twin.size == (46, 32)   # odd sizes cut to even
    smooth = Image.fromarray(np.repeat(np.repeat(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), 8, 0), 8, 1))
    assert np.abs(np.asarray(tt.enlarged_twin(smooth), float) - np.asarray(smooth, float)).mean() < \
        np.abs(np.asarray(twin, float) - np.asarray(img.crop((0, 0, 46, 32)), float)).mean()   # it removes detail only
    src = tmp_path / "a.jpg"
    img.save(src, format="JPEG", quality=83)
    out = tt.write_twin(src, tmp_path / "out" / "a")
    assert out.suffix == ".jpg"
    with Image.open(out) as im:
        assert jpeg_quality(im.quantization) == 83
    png = tmp_path / "b.png"
    img.save(png)
    assert tt.write_twin(png, tmp_path / "out" / "b").suffix == ".png"
    (tmp_path / "c.png").write_bytes(b"not an image")
    assert tt.write_twin(tmp_path / "c.png", tmp_path / "out" / "c") is None
    # a copy that an earlier run wrote is reused, not written again
    again = tt.write_twin(src, tmp_path / "out" / "a")
    assert again == out and again.stat().st_mtime_ns == out.stat().st_mtime_ns


def test_test_time_twin_reads_a_reference_members_network_alone(tmp_path):
    import torch

    from ganscan.core.checkpoint import load_checkpoint, save_checkpoint
    from ganscan.detectors.load import load_detector
    from ganscan.detectors.zoo.families import NPRNet32, NPRNet32Reference

    tt = _load("test_time_twin")
    torch.manual_seed(0)
    ref = NPRNet32Reference()
    src = tmp_path / "ref.safetensors"
    save_checkpoint(src, ref.state_dict(), {"kind": "detector", "arch": "npr32-ref", "name": "r"})
    g_path = tt.as_arch(str(src), "npr32", tmp_path / "g" / "g.safetensors")
    g = load_detector(g_path)
    assert g.config.name == "npr32" and load_checkpoint(g_path)[1]["name"] == "r as npr32"
    x = torch.randn(2, 3, 64, 64)
    plain = NPRNet32()
    plain.load_state_dict(ref.state_dict())
    with torch.no_grad():
        assert torch.allclose(g.model(x), plain.eval()(x), atol=1e-4)   # g alone, no reference subtracted
    spectrum = tmp_path / "s.safetensors"
    from ganscan.detectors.registry import build_detector

    save_checkpoint(spectrum, build_detector("alexnet64-spectrum").state_dict(),
                    {"kind": "detector", "arch": "alexnet64-spectrum"})
    with pytest.raises(SystemExit, match="does not share"):
        tt.as_arch(str(spectrum), "npr32", tmp_path / "g" / "x.safetensors")


def test_ship_fusion_card_records_every_run_of_an_averaged_member(tmp_path, monkeypatch):
    import sys

    import torch

    from ganscan.core.checkpoint import save_checkpoint, sha256_file

    sf = _load("ship_fusion")
    (tmp_path / "weights").mkdir()
    monkeypatch.setattr(sf, "ROOT", tmp_path)
    runs = []
    for seed in (0, 1):
        r = tmp_path / f"seed{seed}"
        r.mkdir()
        save_checkpoint(r / "best.safetensors", {"w": torch.zeros(1)},
                        {"kind": "detector", "arch": "npr32-ref", "training": {"data": {"real": ["a"]}, "n_train": 10,
                                                                               "n_val": 2, "epochs": 2,
                                                                               "options": {"seed": seed}}})
        (r / "log.csv").write_text("kind,epoch,seconds\nepoch,1,100.0\nepoch,2,210.5\n")
        (r / "format-check.json").write_text(json.dumps({"balanced_accuracy": 0.5}))
        runs.append(r)
    fused = tmp_path / "fused.safetensors"
    save_checkpoint(fused, {"w": torch.ones(1)}, {"kind": "detector", "arch": "fusion-spectrum-npr32-ref",
                                                  "threshold": 0.6, "preprocessing": {"policy": "tiles"}})
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"x": {"sets": {"own/a": {"auc": 0.9}, "report/camera": {"fpr_at_threshold": 0.0}}}}))
    cmds = tmp_path / "commands.txt"
    cmds.write_text("python examples/train_twins.py --recipe v34\n")
    argv = ["ship_fusion.py", str(fused), "--name", "soup-fusion", "--table", str(table), "--command-file", str(cmds)]
    monkeypatch.setattr(sys, "argv", argv + ["--npr-run", str(runs[0]), "--npr-run", str(runs[1])])
    sf.main()
    card = json.loads((tmp_path / "weights" / "soup-fusion.json").read_text())
    seeds = card["recipe"]["npr_member_averaged_runs"]
    assert [s["seed"] for s in seeds] == [0, 1] and [s["best_epoch"] for s in seeds] == [2, 2]
    assert [s["sha256"] for s in seeds] == [sha256_file(r / "best.safetensors") for r in runs]
    assert card["time"]["npr_member_training_seconds"] == 421.0 and card["format_check"]["balanced_accuracy"] == 0.5
    assert card["sha256"] == sha256_file(tmp_path / "weights" / "soup-fusion.safetensors")
    assert card["metrics"]["own_mean_auc"] == 0.9 and card["metrics"]["fpr_report_camera"] == 0.0
    # one run: the card has no per-run records, as before
    monkeypatch.setattr(sys, "argv", argv + ["--npr-run", str(runs[0])])
    sf.main()
    card = json.loads((tmp_path / "weights" / "soup-fusion.json").read_text())
    assert "npr_member_averaged_runs" not in card["recipe"] and card["time"]["npr_member_training_seconds"] == 210.5
    # a retiled detector whose NPR member was shipped before: the member's record comes from that card
    fused_meta = {"kind": "detector", "arch": "fusion-spectrum-npr32", "threshold": 0.63, "threshold_precision": "bf16",
                  "preprocessing": {"policy": "tiles"}, "members": {"npr": {"weights_sha256": "abc"}}}
    save_checkpoint(fused, {"w": torch.ones(1)}, fused_meta)
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"name": "old", "sha256": "f00", "members": {"npr": {"weights_sha256": "abc"}},
                                   "data": {"n_train": {"real": 7}}, "recipe": {"npr_member": {"epochs": 3}},
                                   "format_check": {"balanced_accuracy": 0.51},
                                   "time": {"npr_member_training_seconds": 99.0}}))
    monkeypatch.setattr(sys, "argv", argv + ["--member-card", str(earlier)])
    sf.main()
    card = json.loads((tmp_path / "weights" / "soup-fusion.json").read_text())
    assert card["data"] == {"n_train": {"real": 7}} and card["format_check"]["balanced_accuracy"] == 0.51
    assert card["member_card"] == {"name": "old", "sha256": "f00"} and card["threshold_precision"] == "bf16"
    assert card["time"]["npr_member_training_seconds"] == 99.0 and card["metrics"]["own_mean_auc"] == 0.9
    earlier.write_text(json.dumps({"members": {"npr": {"weights_sha256": "other"}}}))
    with pytest.raises(SystemExit, match="is not this detector's"):
        sf.main()
    monkeypatch.setattr(sys, "argv", argv)   # neither a run nor a card
    with pytest.raises(SystemExit):
        sf.main()


def test_enlarge_ratio_reads_a_lossless_enlargement_low_and_a_jpeg_pass_raises_it():
    from PIL import Image

    er = _load("enlarge_ratio")
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    native = er.enlargement_ratio(np.asarray(noise))
    enlarged = er.enlargement_ratio(np.asarray(noise.resize((256, 256), Image.BICUBIC)))
    assert native > 1.0 > 0.2 > enlarged           # white noise: the top octave holds more than the one below
    again = er.enlargement_ratio(np.asarray(er.transformed(noise, "enlarged-jpeg90")))
    assert again > enlarged                        # the JPEG pass puts power back into the top octave
    assert er.enlargement_ratio(np.full((64, 64, 3), 7, np.uint8)) == float("inf")


def test_enlarge_ratio_in_the_jpeg_blocks_reads_an_enlarged_then_compressed_image_low():
    import io

    from PIL import Image

    er = _load("enlarge_ratio")
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))

    def jpeg(img, q):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=q)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    big = noise.resize((256, 256), Image.BICUBIC)
    native, enlarged = er.block_ratio(jpeg(noise, 75)), er.block_ratio(jpeg(big, 75))
    assert native > 1.0 and enlarged < 0.2         # white noise against its bicubic enlargement
    assert abs(enlarged - er.block_ratio(np.asarray(big))) < 0.05   # the JPEG pass adds no top-octave power there
    assert er.block_ratio(np.full((64, 64, 3), 7, np.uint8)) == float("inf")


def test_two_scale_rule_v44_gives_jpeg_files_a_half_size_read_at_their_own_margin():
    ts = _load("two_scale")
    # rows: [label, v43's logit, half-size logit or None, is a JPEG]
    rows = [[0, 0.0, 5.0, False], [0, 1.0, 4.0, True], [1, 0.5, 6.0, True], [1, 0.2, None, True]]
    assert ts.jpeg_logits(rows, None) == [0.0, 1.0, 0.5, 0.2]           # v43: no JPEG half-size read
    assert ts.jpeg_logits(rows, 2.0) == [0.0, 2.0, 4.0, 0.2]            # lossless and half-less rows keep v43's
    # v43's logits replace the half-size reads' native ones, file by file; misaligned reads stop the script
    half = {"s": {"none": [[0, 9.0, 1.0, False], [1, 9.0, None, True]]}}
    assert ts.v43_rows(half, {"s": {"none": [[0, -1.0], [1, 2.0]]}}) == \
        {"s": {"none": [[0, -1.0, 1.0, False], [1, 2.0, None, True]]}}
    with pytest.raises(SystemExit):
        ts.v43_rows(half, {"s": {"none": [[1, -1.0], [1, 2.0]]}})
    E = ts.ENLARGED_JPEG

    def summ(clean, jpeg, enl, tpr=0.85, u2j=0.4):
        return {"auc": {"none": clean, "jpeg:90": jpeg, E: enl}, "threshold": 0.6, "tpr": tpr, "u2j": u2j}

    base = summ([0.95], [0.90], [0.40])
    assert ts.choose_v44({None: base, 1.0: summ([0.95], [0.90], [0.50]), 3.0: summ([0.95], [0.90], [0.46])}) == 1.0
    assert ts.choose_v44({None: base, 1.0: summ([0.95], [0.897], [0.60])}) is None       # JPEG 90 -0.003
    assert ts.choose_v44({None: base, 1.0: summ([0.95], [0.90], [0.60], u2j=0.43)}) is None   # u2j +3 points
    assert ts.choose_v44({None: base, 1.0: summ([0.95], [0.90], [0.60], tpr=0.82)}) is None   # TPR -3 points
    assert ts.choose_v44({None: base, 1.0: summ([0.95], [0.90], [0.44])}) is None        # gains under 0.05
    # rule v46: a margin that flags more than 1 point more of the enlarged-then-JPEG reals is not eligible
    lim = {None: {**base, "enlarged_reals": 0.30}, 1.0: {**summ([0.95], [0.90], [0.60]), "enlarged_reals": 0.32},
           3.0: {**summ([0.95], [0.90], [0.50]), "enlarged_reals": 0.305}}
    assert ts.choose_v44(lim) == 1.0 and ts.choose_v44(lim, reals_limit=0.01) == 3.0
    # the summary: AUC per condition, v10's threshold rule on the calibration reads, TPR and u2j's share there
    fit = {"f": {c: [[0, -2.0, None, False], [1, 2.0, None, False], [1, -3.0, 9.0, True]] for c in
                 ("none", "jpeg:90", E)}}
    calib = {"k": {"none": [[0, v / 10 - 1, None, False] for v in range(20)]}}
    m = ts.summary_v44(fit, calib, [[0, 5.0, None, True], [0, -5.0, None, True]], None)
    assert m["auc"]["none"] == [0.5] and m["tpr"] == 0.5 and m["u2j"] == 0.5
    assert m["enlarged_reals"] == 0.0      # the one enlarged-then-JPEG real reads -2.0, under the threshold
    assert ts.summary_v44(fit, calib, [[0, -5.0, None, True]], 1.0)["auc"]["none"] == [1.0]


def test_two_scale_rule_v45_drops_the_half_size_read_of_small_jpegs():
    ts = _load("two_scale")
    reads = {"s": {"none": [[0, 1.0, 2.0, True], [1, 1.0, 2.0, False], [1, 0.0, 3.0, True]],
                   "bicubic:2+jpeg:90": [[0, 1.0, 2.0, True], [1, 1.0, 2.0, True], [1, 0.0, 3.0, True]]}}
    sizes = {"s": [128, 128, 300]}
    got = ts.small_jpegs_unread(reads, sizes, 256)
    assert got["s"]["none"] == [[0, 1.0, None, True], [1, 1.0, 2.0, False], [1, 0.0, 3.0, True]]
    assert got["s"]["bicubic:2+jpeg:90"] == reads["s"]["bicubic:2+jpeg:90"]   # enlarged 2x: 256 px and more


def test_two_scale_chains_perturbations(tmp_path):
    from PIL import Image

    ts = _load("two_scale")
    src = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(src)
    img, jpg = ts.perturbed(str(src), "bicubic:2+jpeg:90")
    assert img.size == (60, 80) and jpg
    img, jpg = ts.perturbed(str(src), "bicubic:2")
    assert img.size == (60, 80) and not jpg
    assert ts.perturbed(str(src), "none")[1] is False


def test_jpeg_gain_ci_resamples_both_models_alike():
    jc = _load("jpeg_gain_ci")
    rows = {"none": [[0, 0.1], [0, 0.4], [1, 0.3], [1, 0.9]], "jpeg:90": [[0, 0.5], [0, 0.2], [1, 0.3], [1, 0.1]]}
    better = {"none": rows["none"], "jpeg:90": [[0, 0.1], [0, 0.2], [1, 0.3], [1, 0.9]]}
    same = jc.bootstrap({"s": rows}, {"s": rows}, rounds=50)
    assert same["v43 gain under JPEG 90"] == (0.0, 0.0, 0.0)      # one draw for both models: no gain, no spread
    got = jc.bootstrap({"s": rows}, {"s": better}, rounds=50)
    point, low, high = got["v43 gain under JPEG 90"]
    assert point == pytest.approx(1.0 - 0.25) and low <= point <= high   # AUC 0.25 -> 1.0 under JPEG 90
    assert got["v43 drop (clean - JPEG 90)"][0] == pytest.approx(0.75 - 1.0)
    assert got["v40 drop (clean - JPEG 90)"][0] == pytest.approx(0.75 - 0.25)
    assert got["v43 gain, clean"] == (0.0, 0.0, 0.0)                  # the clean reads are the same
    named = jc.bootstrap({"s": rows}, {"s": better}, rounds=50, names=("v43", "v48"))
    assert named["v48 gain under JPEG 90"][0] == pytest.approx(0.75) and "v43 drop (clean - JPEG 90)" in named


def test_translation_banks_train_in_bf16_only_where_the_cpu_has_it(monkeypatch):
    import torch

    import ganscan.core.device as D

    tf = _load("translation_family")
    for native in (True, False):
        monkeypatch.setattr(D, "cpu_has_fast_bf16", lambda native=native: native)
        assert tf.bank_bf16("auto") is native      # auto follows the CPU
        assert tf.bank_bf16("bf16") and not tf.bank_bf16("fp32")
    seen = []
    real_autocast = torch.autocast

    def spy(*a, **k):
        seen.append(k.get("enabled", True))
        return real_autocast(*a, **k)

    monkeypatch.setattr(torch, "autocast", spy)
    from PIL import Image
    pool = [Image.new("RGB", (40, 40), (i * 40, 80, 120)) for i in range(3)]
    spec = {"arch": "unet", "task": "identity", "ngf": 8, "blocks": 1, "depth": 5, "norm": "instance", "seed": 1}
    for bf16 in (False, True):
        seen.clear()
        tf.train_one(spec, pool, 2, 32, lambda m: None, bf16=bf16)
        assert seen == [bf16, bf16]                # every training step's forward pass, as asked
