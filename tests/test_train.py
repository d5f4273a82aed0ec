"""ganscan train: metrics, data layouts, augmentations, the loop, exact resume, DDP, checkpoints."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train_helpers import make_folder, synth_image, tiny_options, train_tiny

ROOT = Path(__file__).resolve().parent.parent


# --- metrics against hand-computed values ------------------------------------------------------------

def test_accuracies_at_threshold():
    from ganscan.detectors.metrics import accuracies

    y = [0, 0, 0, 1, 1]
    s = [0.1, 0.6, 0.5, 0.5, 0.2]  # score >= 0.5 is fake: real 0.6 and 0.5 wrong, fake 0.5 right, 0.2 wrong
    a = accuracies(y, s, 0.5)
    assert a == {"accuracy": 2 / 5, "real_acc": 1 / 3, "fake_acc": 1 / 2}
    only_real = accuracies([0, 0], [0.1, 0.9])
    assert only_real["fake_acc"] is None and only_real["real_acc"] == 0.5


def test_average_precision_hand_computed():
    from ganscan.detectors.metrics import average_precision

    # ranking: 0.9 F, 0.8 R, 0.7 F, 0.1 R -> precision at the fakes: 1/1, 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    # a tie between a fake and a real at the top counts together: P = 1/2 at recall 1/2, then 2/3
    assert average_precision([1, 0, 1], [0.9, 0.9, 0.5]) == pytest.approx(0.5 * 0.5 + 0.5 * (2 / 3))
    assert average_precision([0, 0], [0.3, 0.4]) is None
    assert average_precision([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0


def test_roc_auc_hand_computed():
    from ganscan.detectors.metrics import roc_auc

    # pairs (fake, real): (0.9,0.8) win (0.9,0.1) win (0.7,0.8) loss (0.7,0.1) win -> 3/4
    assert roc_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.75)
    # a tie counts one half: fakes {0.5, 0.9}, reals {0.5, 0.1}: (0.5,0.5)=1/2 -> 3.5/4
    assert roc_auc([1, 1, 0, 0], [0.5, 0.9, 0.5, 0.1]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 1], [0.2, 0.3]) is None


def test_metrics_match_bruteforce_on_random_data():
    from ganscan.detectors.metrics import average_precision, roc_auc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) * 0.5 + y * 0.3, 2)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    brute_auc = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    assert roc_auc(y, s) == pytest.approx(brute_auc)
    ap = 0.0
    prev_recall = 0.0
    for t in sorted(set(s), reverse=True):
        called = s >= t
        tp = (called & (y == 1)).sum()
        recall = tp / pos.size
        ap += (recall - prev_recall) * tp / called.sum()
        prev_recall = recall
    assert average_precision(y, s) == pytest.approx(ap)


def test_threshold_calibration_rules():
    from ganscan.detectors.metrics import calibrate_threshold

    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    c = calibrate_threshold(y, s, "eer")  # between 0.4 and 0.6 one real and one fake are wrong either way
    assert c.rule == "eer" and c.fpr == c.fnr == 0.25
    assert 0.3 < c.threshold < 0.7
    f = calibrate_threshold(y, s, "fpr:0.0")  # no real may be called fake: above 0.6
    assert f.fpr == 0.0 and 0.6 < f.threshold <= 0.7 and f.fnr == 0.25
    x = calibrate_threshold(y, s, "fixed:0.5")
    assert (x.threshold, x.fpr, x.fnr) == (0.5, 0.25, 0.25)
    with pytest.raises(ValueError, match="unknown threshold rule"):
        calibrate_threshold(y, s, "youden")


# --- data layouts and bad input ----------------------------------------------------------------------

def test_layouts(tmp_path):
    from ganscan.data.datasets import test_sets, training_set

    make_folder(tmp_path / "direct", 3, 2, size=16)
    make_folder(tmp_path / "classes" / "cat", 2, 2, size=16)
    make_folder(tmp_path / "classes" / "dog", 1, 3, size=16)
    make_folder(tmp_path / "plain", 2, 1, size=16, real_name="real", fake_name="fake")
    assert (training_set([str(tmp_path / "direct")]).n_real, training_set([str(tmp_path / "direct")]).n_fake) == (3, 2)
    merged = training_set([str(tmp_path / "classes")])
    assert (merged.n_real, merged.n_fake) == (3, 5)
    plain = training_set([], real=[str(tmp_path / "plain" / "real")], fake=[str(tmp_path / "plain" / "fake"),
                                                                        str(tmp_path / "direct" / "1_fake")])
    assert (plain.n_real, plain.n_fake) == (2, 3)
    sets = test_sets(str(tmp_path / "classes"))  # a folder of sets -> one per sub-folder
    assert [s.name for s in sets] == ["cat", "dog"]


def test_bad_training_data_messages(tmp_path):
    from ganscan.data.datasets import stratified_split, training_set
    from ganscan.errors import DataError

    make_folder(tmp_path / "a", 4, 0, size=16)  # empty 1_fake folder
    with pytest.raises(DataError, match="class folder holds no images"):
        training_set([str(tmp_path / "a")])
    make_folder(tmp_path / "b", 4, None, size=16)  # no fake folder at all
    with pytest.raises(DataError, match="single-class: 4 real images and no fake"):
        training_set([str(tmp_path / "b")])
    (tmp_path / "c" / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="no 0_real/1_fake or real/fake folders"):
        training_set([str(tmp_path / "c")])
    make_folder(tmp_path / "d", 5, 5, size=16)
    s = training_set([str(tmp_path / "d")])
    with pytest.raises(DataError, match="leaves no real images for validation"):
        stratified_split(s, 0.05, 0)
    with pytest.raises(DataError, match="leaves no real images to train on"):
        stratified_split(s, 0.95, 0)
    tr, va = stratified_split(s, 0.4, 7)
    tr2, va2 = stratified_split(s, 0.4, 7)
    assert va.paths == va2.paths and (va.n_real, va.n_fake) == (2, 2) and not set(tr.paths) & set(va.paths)


# --- augmentations ---------------------------------------------------------------------------------

def test_train_view_deterministic_and_configurable():
    from ganscan.data.augment import AugmentConfig, degrade_for_validation, sample_rng, train_view

    img = synth_image(np.random.default_rng(0), True, 48)
    cfg = AugmentConfig(crop=32, blur_prob=0.5, jpeg_prob=0.5)
    a = train_view(img, cfg, sample_rng(1, 2, 3))
    b = train_view(img, cfg, sample_rng(1, 2, 3))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, train_view(img, cfg, sample_rng(1, 3, 3)))  # another epoch, another view
    # blur always on with sigma 3: high frequencies vanish; without: they stay
    sharp = train_view(img, AugmentConfig(crop=32, flip_prob=0), sample_rng(0, 0, 0)).astype(float)
    soft = train_view(img, AugmentConfig(crop=32, flip_prob=0, blur_prob=1, blur_sigma=(3, 3)), sample_rng(0, 0, 0))
    hf = lambda x: np.abs(np.diff(x.astype(float), axis=1)).mean()  # noqa: E731
    assert hf(soft) < 0.3 * hf(sharp)
    # small images are mirror-padded, never resized
    tiny = Image.new("RGB", (10, 20), (200, 10, 10))
    assert train_view(tiny, AugmentConfig(crop=32), sample_rng(0, 0, 0)).shape == (32, 32, 3)
    # validation: fixed sigma/quality, same pixels every call
    v1 = np.asarray(degrade_for_validation(img, cfg, 5, 11))
    assert np.array_equal(v1, np.asarray(degrade_for_validation(img, cfg, 5, 11)))
    assert (cfg.val_sigma, cfg.val_quality) == (1.5, 65)
    with pytest.raises(ValueError, match="blur_prob"):
        AugmentConfig(blur_prob=2)


def test_train_view_aligned_crops_start_on_the_grid():
    from ganscan.data.augment import AugmentConfig, aligned_offset, random_crop_array, sample_rng, train_view

    # every pixel holds its own coordinates, so a view tells where it was cut
    yy, xx = np.mgrid[0:128, 0:200]
    coords = np.stack([yy, xx, np.zeros_like(yy)], axis=2).astype(np.uint8)
    img = Image.fromarray(coords)
    seen = set()
    for i in range(40):
        a = train_view(img, AugmentConfig(crop=64, flip_prob=0, crop_align=8), sample_rng(0, 0, i))
        top, left = int(a[0, 0, 0]), int(a[0, 0, 1])
        assert top % 8 == 0 and left % 8 == 0 and a.shape == (64, 64, 3)
        assert np.array_equal(a, coords[top:top + 64, left:left + 64])
        seen.add((top, left))
    assert len(seen) > 10   # still spread over the image
    # the default draws exactly the offsets it always drew
    for u in (0.0, 0.37, 0.999):
        assert aligned_offset(u, 64) == int(u * 65) and aligned_offset(u, 64, 8) == int(u * 9) * 8 <= 64
    a = random_crop_array(coords, 64, 0.999, 0.999, 8)
    assert (a[0, 0, 0], a[0, 0, 1]) == (64, 136)
    # a large image is first cut to a window: the window is aligned too
    big = np.zeros((600, 900, 3), np.uint8)
    big[..., 0], big[..., 1] = (np.arange(600) % 256)[:, None], (np.arange(900) % 8)[None, :]
    for i in range(10):
        a = train_view(Image.fromarray(big), AugmentConfig(crop=64, flip_prob=0, crop_align=8), sample_rng(1, 0, i))
        assert a[0, 0, 1] == 0 and int(a[0, 0, 0]) % 8 == 0
    # flips keep a 64 px crop on the 8 px grid: the first column is the crop's last
    f = train_view(img, AugmentConfig(crop=64, flip_prob=1, crop_align=8), sample_rng(0, 0, 0))
    assert int(f[0, 0, 1]) % 8 == 7
    with pytest.raises(ValueError, match="alignment"):
        AugmentConfig(crop_align=0)


def test_train_view_rescale():
    from ganscan.data.augment import AugmentConfig, degrade_for_validation, sample_rng, train_view

    # a pixel-level checkerboard (the period-2 pattern of a transposed convolution) on a large image
    yy, xx = np.mgrid[0:200, 0:300]
    board = Image.fromarray(np.repeat(((yy + xx) % 2 * 255).astype(np.uint8)[..., None], 3, axis=2))
    hf = lambda x: np.abs(np.diff(x.astype(float), axis=1)).mean()  # noqa: E731
    plain = AugmentConfig(crop=32, flip_prob=0)
    halved = AugmentConfig(crop=32, flip_prob=0, rescale_prob=1, rescale_range=(0.5, 0.5))
    for i in range(4):   # every filter drawn (box, bilinear, bicubic, Lanczos) antialiases the pattern away
        a = train_view(board, plain, sample_rng(0, 0, i))
        b = train_view(board, halved, sample_rng(0, 0, i))
        assert a.shape == b.shape == (32, 32, 3)
        assert hf(a) > 200 and hf(b) < 0.25 * hf(a)
        assert np.array_equal(b, train_view(board, halved, sample_rng(0, 0, i)))   # reproducible
    # a factor range of exactly 1 changes nothing, and the other random choices stay put
    same = AugmentConfig(crop=32, flip_prob=0.5, blur_prob=0.5, jpeg_prob=0.5, rescale_prob=1, rescale_range=(1, 1))
    base = AugmentConfig(crop=32, flip_prob=0.5, blur_prob=0.5, jpeg_prob=0.5)
    img = synth_image(np.random.default_rng(3), False, 80)
    for i in range(5):
        assert np.array_equal(train_view(img, same, sample_rng(2, 1, i)), train_view(img, base, sample_rng(2, 1, i)))
    # an image that would end smaller than the crop is left alone (no view made of mirror padding)
    small = synth_image(np.random.default_rng(4), True, 48)
    assert np.array_equal(train_view(small, halved, sample_rng(0, 0, 0)), train_view(small, plain, sample_rng(0, 0, 0)))
    # validation: the middle factor, on a fixed subset, the same pixels every call
    val = AugmentConfig(crop=32, rescale_prob=1, rescale_range=(0.5, 1.0))
    assert val.val_rescale == 0.75
    assert degrade_for_validation(board, val, 0, 1).size == (225, 150)
    assert degrade_for_validation(small, val, 0, 1).size == (36, 36)   # 36 still fills the 32 crop
    assert degrade_for_validation(synth_image(np.random.default_rng(5), True, 40), val, 0, 1).size == (40, 40)
    assert degrade_for_validation(board, AugmentConfig(crop=32), 0, 1).size == (300, 200)
    for bad in ((0.5, 1.2), (0.05, 0.5), (0.9, 0.6)):
        with pytest.raises(ValueError, match="rescale range"):
            AugmentConfig(rescale_range=bad)
    with pytest.raises(ValueError, match="rescale_prob"):
        AugmentConfig(rescale_prob=1.5)


def test_parse_perturbations():
    from ganscan.data.augment import parse_perturbations

    assert parse_perturbations("jpeg:90, blur:1,resize:0.5") == [("jpeg", 90.0), ("blur", 1.0), ("resize", 0.5)]
    for bad, msg in (("jpg:90", "unknown perturbation"), ("jpeg:101", "quality"), ("blur:x", "not a number")):
        with pytest.raises(ValueError, match=msg):
            parse_perturbations(bad)


def test_rescale_perturbations_use_their_own_filter():
    import numpy as np
    from PIL import Image

    from ganscan.data.augment import apply_perturbation, parse_perturbations

    assert parse_perturbations("nearest:2,lanczos:0.5") == [("nearest", 2.0), ("lanczos", 0.5)]
    with pytest.raises(ValueError, match="scale"):
        parse_perturbations("bicubic:5")
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    out = {k: np.asarray(apply_perturbation(img, k, 2.0)[0]) for k in ("nearest", "resize", "bicubic", "lanczos")}
    assert all(a.shape == (16, 16, 3) for a in out.values())
    # nearest-neighbour 2x repeats every pixel in a 2x2 block; the interpolating filters do not
    assert np.array_equal(out["nearest"], np.asarray(img).repeat(2, 0).repeat(2, 1))
    for k in ("resize", "bicubic", "lanczos"):
        assert not np.array_equal(out[k], out["nearest"])
    assert not np.array_equal(out["bicubic"], out["resize"]) and not np.array_equal(out["lanczos"], out["bicubic"])
    assert apply_perturbation(img, "nearest", 2.0)[1] == "png"


def test_shift_perturbation_moves_the_grid_phase_losslessly():
    from ganscan.data.augment import apply_perturbation, parse_perturbations

    assert parse_perturbations("shift:1,shift:4") == [("shift", 1.0), ("shift", 4.0)]
    for bad in ("shift:0", "shift:1.5", "shift:65"):
        with pytest.raises(ValueError, match="shift"):
            parse_perturbations(bad)
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out, how = apply_perturbation(Image.fromarray(px), "shift", 3)
    assert how == "png" and np.array_equal(np.asarray(out), px[3:, 3:])
    tiny, _ = apply_perturbation(Image.fromarray(px[:2, :2]), "shift", 3)   # nothing would be left: unchanged
    assert np.array_equal(np.asarray(tiny), px[:2, :2])


def test_tiles_on_an_aligned_grid():
    from ganscan.detectors.preprocess import tile_array, views_uint8
    from ganscan.detectors.registry import get_config

    yy, xx = np.mgrid[0:250, 0:300]
    arr = np.stack([yy % 256, xx % 256, np.zeros_like(yy)], axis=2).astype(np.uint8)
    free = tile_array(arr, 64, 16)
    on8 = tile_array(arr, 64, 16, align=8)
    # centred: the 3 x 4 grid starts at (29, 22); on the 8 px grid at (24, 16); the same tiles otherwise
    assert (free[0, 0, 0, 0], free[0, 0, 0, 1]) == (29, 22) and (on8[0, 0, 0, 0], on8[0, 0, 0, 1]) == (24, 16)
    assert free.shape == on8.shape == (12, 64, 64, 3)
    square = np.concatenate([arr, arr[:6]])[:256, :256]   # 256 px: the centred grid starts at the origin
    assert np.array_equal(tile_array(square, 64, 16, 8), tile_array(square, 64, 16))
    cfg = get_config("npr32")
    assert "tile_align" not in cfg.preprocessing() and cfg.describe_preprocessing() == "tiles64x16"
    aligned = cfg.with_preprocessing({**cfg.preprocessing(), "tile_align": 8})
    assert aligned.tile_align == 8 and aligned.preprocessing()["tile_align"] == 8
    assert aligned.describe_preprocessing() == "tiles64x16a8"
    assert np.array_equal(views_uint8(arr, aligned), on8) and np.array_equal(views_uint8(arr, cfg), free)


def test_overlapping_tiles_only_where_the_grid_is_under_the_cap():
    from ganscan.detectors.preprocess import tile_array, views_uint8
    from ganscan.detectors.registry import get_config

    yy, xx = np.mgrid[0:128, 0:160]
    arr = np.stack([yy, xx, np.zeros_like(yy)], axis=2).astype(np.uint8)
    assert tile_array(arr, 64, 16).shape[0] == 4           # 2 x 2 fit without overlap
    s32 = tile_array(arr, 64, 16, stride=32)               # 3 rows x 4 columns at stride 32, centred
    assert s32.shape == (12, 64, 64, 3)
    origins = {(int(t[0, 0, 0]), int(t[0, 0, 1])) for t in s32}
    assert origins == {(y, x) for y in (0, 32, 64) for x in (0, 32, 64, 96)}
    capped = tile_array(arr, 64, 5, stride=16)             # 5 x 7 positions, 5 kept, evenly spread
    assert capped.shape[0] == 5 and (int(capped[0, 0, 0, 0]), int(capped[-1, 0, 0, 1])) == (0, 96)
    big = np.zeros((300, 300, 3), np.uint8)                # 16 tiles fill the cap: the stride changes nothing
    big[:, :, 0] = np.arange(300)[:, None] % 256
    assert np.array_equal(tile_array(big, 64, 16, stride=32), tile_array(big, 64, 16))
    assert np.array_equal(tile_array(arr, 64, 16, stride=64), tile_array(arr, 64, 16))   # not under the tile
    cfg = get_config("npr32")
    assert "tile_stride" not in cfg.preprocessing()
    over = cfg.with_preprocessing({**cfg.preprocessing(), "tile_stride": 32})
    assert over.preprocessing()["tile_stride"] == 32 and over.describe_preprocessing() == "tiles64x16s32"
    assert np.array_equal(views_uint8(arr, over), s32)
    jpeg_only = over.with_preprocessing({**over.preprocessing(), "stride_jpeg_only": True})
    assert jpeg_only.preprocessing()["stride_jpeg_only"] is True and jpeg_only.describe_preprocessing() == "tiles64x16s32j"
    assert np.array_equal(views_uint8(arr, jpeg_only, jpeg=True), s32)                   # a JPEG file: overlapping
    assert np.array_equal(views_uint8(arr, jpeg_only), tile_array(arr, 64, 16))          # a lossless one: the grid
    assert "stride_jpeg_only" not in cfg.with_preprocessing({"stride_jpeg_only": True}).preprocessing()  # no stride


# --- recipes ---------------------------------------------------------------------------------------

def test_recipes_and_overrides():
    from ganscan.detectors.train.options import RECIPES, resolve_options
    from ganscan.errors import GanscanError

    w = resolve_options("wang2020")
    assert (w["arch"], w["optimizer"], w["lr"], w["batch_size"], w["blur_prob"], w["jpeg_prob"], w["crop"]) == \
        ("resnet50", "adam", 1e-4, 64, 0.5, 0.5, 224)
    assert (w["schedule"], w["monitor"], w["patience"], w["lr_factor"], w["min_lr"]) == ("plateau", "val_bacc", 5, 0.1, 1e-6)
    k = resolve_options("khan")
    assert (k["optimizer"], k["lr"], k["weight_decay"], k["head_lr"], k["head_weight_decay"], k["momentum"]) == \
        ("sgd", 1e-3, 1e-3, 5e-5, 1e-5, 0.9)
    assert (k["schedule"], k["monitor"], k["val_split"]) == ("early_stop", "val_loss", 0.3)
    t = resolve_options("trieste", {"blur_prob": 0.1, "epochs": 3})
    assert (t["arch"], t["epochs"], t["blur_prob"], t["jpeg_prob"]) == ("resnet18", 3, 0.1, 0.5)
    assert set(RECIPES) == {"wang2020", "khan", "trieste"}
    with pytest.raises(GanscanError, match="unknown architecture"):
        resolve_options("trieste", {"arch": "resnet19"})


def test_schedule_plateau_then_stop():
    from ganscan.detectors.train.schedule import Schedule

    s = Schedule("plateau", "max", patience=2, factor=0.1, min_lr=1e-6, min_delta=0.001)
    events = [s.step(v, 1e-4) for v in (0.5, 0.6, 0.6, 0.6005)]
    assert events[:3] == [None, None, None] and "1.0e-05" in events[3] and s.lr_scale == pytest.approx(0.1)
    for v in (0.6, 0.6, 0.6, 0.6):
        s.step(v, 1e-4)
    assert s.stopped and "below" in s.reason
    # one rule of "improved" for the schedule and the best checkpoint: better by more than min_delta
    from ganscan.detectors.train.schedule import improved

    assert improved(0.6011, 0.6, "max", 0.001) and not improved(0.6005, 0.6, "max", 0.001)
    assert improved(0.39, 0.4, "min", 0.001) and not improved(0.3995, 0.4, "min", 0.001)
    assert improved(0.1, None, "min", 0.001) and not improved(None, 0.5, "max", 0.001)


def test_balanced_sampler_draws_both_classes_equally():
    from ganscan.detectors.train.data import EpochSampler

    labels = [0] * 90 + [1] * 10
    smp = EpochSampler(labels, seed=0, rank=0, world=1, balance="sample")
    drawn = [labels[i] for i, _ in smp]
    assert 0.35 < np.mean(drawn) < 0.65
    r0 = EpochSampler(labels, 0, 0, 2, "weight")
    r1 = EpochSampler(labels, 0, 1, 2, "weight")
    a, b = [i for i, _ in r0], [i for i, _ in r1]
    assert len(a) == len(b) == 50 and sorted(a + b) == list(range(100))


# --- the loop ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("trained")
    data = make_folder(base / "data", 32, 24, seed=3, size=32)
    result = train_tiny(data, base / "run", epochs=4, val_every=2)
    return data, result


def test_training_learns_and_writes_everything(trained):
    from ganscan.core.checkpoint import read_metadata

    data, r = trained
    epoch_rows = [x for x in r.rows if x["kind"] == "epoch"]
    assert len(epoch_rows) == 4 and len(r.rows) > 4  # per-epoch and every-2-steps validation
    assert r.best["val_acc"] == 1.0 and r.best["val_ap"] == 1.0 and r.best["val_auc"] == 1.0
    best = None  # the best checkpoint: the first validation that beat every earlier one by more than min_delta
    for row in r.rows:
        if best is None or row["val_bacc"] > best["val_bacc"] + 0.001:
            best = row
    assert (r.best["kind"], r.best["step"]) == (best["kind"], best["step"])
    for name in ("best.safetensors", "last.safetensors", "resume.safetensors", "log.csv", "log.json",
                 "loss.png", "accuracy.png"):
        assert (r.out_dir / name).stat().st_size > 0, name
    with open(r.out_dir / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"train_loss", "train_acc", "train_real_acc", "train_fake_acc", "val_loss", "val_acc", "val_real_acc",
            "val_fake_acc", "val_ap", "val_auc"} <= set(rows[0])
    assert len(rows) == len(r.rows)
    meta = read_metadata(r.best_path)
    assert meta["kind"] == "detector" and meta["arch"] == "test-cnn"
    assert meta["threshold"] == pytest.approx(r.threshold) and meta["threshold_rule"] == "eer"
    assert meta["preprocessing"]["input_size"] == 32 and meta["preprocessing"]["policy"] == "crop"
    t = meta["training"]
    assert t["recipe"] == "trieste" and t["seed"] == 0 and t["options"]["crop"] == 32 and t["data"]["data"]
    assert meta["metrics"]["val_acc"] == 1.0
    assert json.loads((r.out_dir / "log.json").read_text())["best"]["threshold"] == pytest.approx(r.threshold)


def test_checkpoint_loads_and_scan_uses_threshold(trained, tmp_path):
    from click.testing import CliRunner

    from ganscan.cli import cli
    from ganscan.detectors.load import load_detector

    data, r = trained
    det = load_detector(str(r.best_path))
    assert det.config.input_size == 32 and det.threshold == pytest.approx(r.threshold)
    files = sorted(str(p) for p in (data / "1_fake").iterdir())[:3] + sorted(str(p) for p in (data / "0_real").iterdir())[:3]
    res = CliRunner().invoke(cli, ["scan", *files, "--model", str(r.best_path), "-f", "jsonl", "--workers", "0"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 6
    for row in rows:
        assert row["threshold"] == pytest.approx(r.threshold)
        assert row["verdict"] == ("fake" if row["score"] >= r.threshold else "real")
    assert [row["verdict"] for row in rows] == ["fake"] * 3 + ["real"] * 3


def _same_run(a, b, out_a, out_b):
    """Two runs logged the same rows (wall time aside) and wrote bit-identical checkpoints."""
    from ganscan.core.checkpoint import load_checkpoint

    strip = lambda rows: [{k: v for k, v in x.items() if k not in ("seconds", "train_images_per_s")} for x in rows]  # noqa: E731
    assert strip(a.rows) == strip(b.rows)
    for name in ("best.safetensors", "last.safetensors"):
        ta, _ = load_checkpoint(out_a / name)
        tb, _ = load_checkpoint(out_b / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (name, k)


def _resume(data, out, **options):
    from ganscan.detectors.train.data import DataSpec
    from ganscan.detectors.train.trainer import Runtime, train

    return train(DataSpec(data=[str(data)]), tiny_options(**options), out, Runtime(workers=0, threads=1),
                 recipe="trieste", resume=True)


def test_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch):
    from ganscan.detectors.train.trainer import Trainer

    data = make_folder(tmp_path / "data", 24, 20, seed=5, size=32)  # 33 training images: 4 steps per epoch
    full = train_tiny(data, tmp_path / "full", epochs=3, val_every=3)

    class Killed(Exception):
        pass

    step = Trainer._train_step

    def killed_in_step_7(self, x, y):  # the 7th step runs, then the process dies: nothing after it is saved
        out = step(self, x, y)
        if self.state["global_step"] == 6:
            raise Killed
        return out

    with monkeypatch.context() as m, pytest.raises(Killed):  # mid-epoch 2, one step after the state saved at step 6
        m.setattr(Trainer, "_train_step", killed_in_step_7)
        train_tiny(data, tmp_path / "cut", epochs=3, val_every=3)
    _same_run(_resume(data, tmp_path / "cut", epochs=3, val_every=3), full, tmp_path / "cut", tmp_path / "full")


def test_ctrl_c_saves_the_step_in_flight_and_resumes_exactly(tmp_path, monkeypatch):
    import shutil
    import signal

    from ganscan.core.checkpoint import load_checkpoint, save_checkpoint
    from ganscan.core.runs import pack
    from ganscan.detectors.train.trainer import Trainer

    data = make_folder(tmp_path / "data", 24, 20, seed=5, size=32)  # 4 steps per epoch
    full = train_tiny(data, tmp_path / "full", epochs=2, val_every=2)  # step 6 validates: its row must survive
    step = Trainer._train_step

    def ctrl_c_in_step_6(self, x, y):
        if self.state["global_step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, x, y)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_train_step", ctrl_c_in_step_6)
        cut = train_tiny(data, tmp_path / "cut", epochs=2, val_every=2)
    assert cut.interrupted and cut.stop_reason == "interrupted" and cut.epochs_run == 1
    tensors, meta = load_checkpoint(tmp_path / "cut" / "resume.safetensors", verify=False)
    assert (meta["state"]["global_step"], meta["state"]["step_in_epoch"]) == (6, 2)  # after the step in flight
    # the same state in the first resume format (a plain skeleton object, opt./scaler./rng. tensor names)
    shutil.copytree(tmp_path / "cut", tmp_path / "old")
    from ganscan.core.runs import unpack

    saved = unpack(meta.pop("skeleton"), tensors)
    old = {k: v for k, v in tensors.items() if k.startswith("model.")}
    meta["skeleton"] = {"optimizer": pack(saved["optimizer"], "opt", old), "scaler": pack(saved["scaler"], "scaler", old),
                        "rng": {k: pack(v, f"rng.{k}", old) for k, v in saved["rng"].items()}}
    save_checkpoint(tmp_path / "old" / "resume.safetensors", old, meta)
    for run in ("cut", "old"):
        _same_run(_resume(data, tmp_path / run, epochs=2), full, tmp_path / run, tmp_path / "full")


def test_unreadable_training_image_is_skipped_and_counted(tmp_path):
    data = make_folder(tmp_path / "data", 12, 12, seed=6, size=32)
    (data / "1_fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (data / "0_real" / "empty.jpg").write_bytes(b"")
    r = train_tiny(data, tmp_path / "run", epochs=1, val_split=0.2, seed=1)
    log = json.loads((r.out_dir / "log.json").read_text())
    # each is either in the training split (skipped, counted) or in validation (left out)
    n_train_bad = sum(1 for p in log["skipped_unreadable"] if p.endswith(("broken.png", "empty.jpg")))
    assert r.skipped == n_train_bad and n_train_bad >= 1


def test_freeze_backbone_and_backbone_lr(tmp_path):
    from ganscan.detectors.registry import build_detector
    from ganscan.core.checkpoint import load_checkpoint, save_checkpoint
    from ganscan.detectors.train.data import DataSpec
    from ganscan.detectors.train.trainer import Runtime, Trainer

    data = make_folder(tmp_path / "data", 12, 12, seed=8, size=32)
    torch.manual_seed(1)
    init = build_detector("test-cnn")
    save_checkpoint(tmp_path / "init.safetensors", init.state_dict(), {"kind": "detector", "arch": "test-cnn"})
    r = train_tiny(data, tmp_path / "ft", epochs=1, init=str(tmp_path / "init.safetensors"), freeze_backbone=True)
    after, _ = load_checkpoint(r.last_path)
    before = init.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if not k.startswith("fc."))  # BN stats too
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
    t = Trainer(DataSpec(data=[str(data)]), tiny_options(lr=1e-3, backbone_lr=1e-5), tmp_path / "x",
                Runtime(workers=0, device="cpu"))
    t._prepare_data()
    t._build_model()
    assert [(g["name"], g["lr"]) for g in t.opt.param_groups] == [("backbone", 1e-5), ("head", 1e-3)]
    # khan: SGD, body lr 1e-3 / L2 1e-3, last layer lr 5e-5 / L2 1e-5
    from ganscan.detectors.train.options import resolve_options

    k = Trainer(DataSpec(data=[str(data)]), resolve_options("khan", {"arch": "test-cnn", "batch_size": 4}),
                tmp_path / "k", Runtime(workers=0, device="cpu"))
    k._prepare_data()
    k._build_model()
    assert isinstance(k.opt, torch.optim.SGD) and k.opt.defaults["momentum"] == 0.9
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in k.opt.param_groups] == \
        [("backbone", 1e-3, 1e-3), ("head", 5e-5, 1e-5)]


def test_init_from_another_architecture_is_refused(tmp_path):
    from ganscan.detectors.registry import build_detector
    from ganscan.core.checkpoint import save_checkpoint
    from ganscan.errors import CheckpointError

    data = make_folder(tmp_path / "data", 8, 8, seed=9, size=32)
    save_checkpoint(tmp_path / "other.safetensors", build_detector("test-cnn").state_dict(),
                    {"kind": "detector", "arch": "alexnet"})
    with pytest.raises(CheckpointError, match="a alexnet checkpoint cannot initialise a test-cnn model"):
        train_tiny(data, tmp_path / "run", epochs=1, init=str(tmp_path / "other.safetensors"))
    save_checkpoint(tmp_path / "wrong.safetensors", {"w": torch.zeros(3)}, {"kind": "detector", "arch": "test-cnn"})
    with pytest.raises(CheckpointError, match="do not fit architecture test-cnn"):
        train_tiny(data, tmp_path / "run2", epochs=1, init=str(tmp_path / "wrong.safetensors"))


def test_a_run_on_aligned_crops_records_its_grid_for_scan(tmp_path):
    from ganscan.core.checkpoint import read_metadata
    from ganscan.detectors.load import load_detector

    data = make_folder(tmp_path / "data", 8, 8, seed=11, size=48)
    r = train_tiny(data, tmp_path / "run", epochs=1, crop_align=8)
    assert read_metadata(r.best_path)["preprocessing"]["tile_align"] == 8
    assert load_detector(str(r.best_path)).config.tile_align == 8
    plain = train_tiny(data, tmp_path / "plain", epochs=1)
    assert "tile_align" not in read_metadata(plain.best_path)["preprocessing"]


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_messages(tmp_path):
    from click.testing import CliRunner

    from ganscan.cli import cli

    runner = CliRunner()
    data = make_folder(tmp_path / "data", 6, 6, seed=10, size=32)
    base = ["train", str(data), "--arch", "test-cnn", "--crop", "32", "--batch-size", "4", "--workers", "0", "-q"]
    res = runner.invoke(cli, [*base, "-o", str(tmp_path / "r"), "--val-split", "0.01"])
    assert res.exit_code == 1 and "leaves no real images for validation" in res.output
    res = runner.invoke(cli, ["train", "-o", str(tmp_path / "nothing"), "--resume"])
    assert res.exit_code == 1 and "nothing to resume" in res.output
    single = make_folder(tmp_path / "single", 5, None, size=32)
    res = runner.invoke(cli, ["train", str(single), "-o", str(tmp_path / "s"), "--arch", "test-cnn"])
    assert res.exit_code == 1 and "single-class" in res.output
    res = runner.invoke(cli, [*base, "-o", str(tmp_path / "bad"), "--rescale-range", "0.5,1.5"])
    assert res.exit_code == 1 and "rescale range" in res.output
    res = runner.invoke(cli, [*base, "-o", str(tmp_path / "ok"), "--epochs", "1", "--recipe", "trieste",
                              "--blur-prob", "0", "--jpeg-prob", "0", "--rescale-prob", "0.5",
                              "--rescale-range", "0.6,0.9"])
    assert res.exit_code == 0, res.output
    from ganscan.detectors.load import load_detector

    opts = load_detector(str(tmp_path / "ok" / "best.safetensors")).meta["training"]["options"]
    assert (opts["rescale_prob"], opts["rescale_range"]) == (0.5, [0.6, 0.9])
    res = runner.invoke(cli, [*base, "-o", str(tmp_path / "ok"), "--epochs", "1"])
    assert res.exit_code == 1 and "already holds a training run" in res.output
    res = runner.invoke(cli, ["train", "-o", str(tmp_path / "ok"), "--resume", "--lr", "0.1"])
    assert res.exit_code == 1 and "only --epochs may change" in res.output
    for cmd in ("train", "evaluate"):
        res = runner.invoke(cli, [cmd, "--help"])
        assert res.exit_code == 0 and "Examples:" in res.output


# --- DDP -----------------------------------------------------------------------------------------

def test_ddp_two_cpu_processes_on_gloo(tmp_path):
    data = make_folder(tmp_path / "data", 12, 12, seed=11, size=32)
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(GANSCAN_ALLOCATOR="system", OMP_NUM_THREADS="1", NO_COLOR="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ganscan", "train", str(data), "-o", str(out), "--recipe", "trieste", "--arch", "test-cnn",
           "--crop", "32", "--batch-size", "8", "--epochs", "1", "--blur-prob", "0", "--jpeg-prob", "0",
           "--lr", "3e-3", "--val-split", "0.25", "--workers", "0", "--threads", "1", "--schedule", "none"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("training test-cnn on") == 1  # rank 0 logs, rank 1 stays quiet
    assert "x2 processes" in p.stderr
    log = json.loads((out / "log.json").read_text())
    assert [r["epoch"] for r in log["rows"]] == [1]
    # 18 training images, 2 ranks x 4 per step -> 2 steps per epoch, the same as one process with batch 8
    assert log["rows"][-1]["step"] == 2 and log["rows"][-1]["val_auc"] is not None
    from ganscan.detectors.load import load_detector

    det = load_detector(str(out / "best.safetensors"))
    assert det.meta["training"]["options"]["batch_size"] == 8
