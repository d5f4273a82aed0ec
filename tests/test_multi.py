"""Several detectors in one scan (decode once): each model's column equals its own scan, the first model gives
the verdict, reports, the table, resume and evaluate with several models."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import EDGE, run_ok, write_images
from ganscan.reports.schema import COLUMNS

# different preprocessing (crop 64 with ImageNet statistics; 64 px tiles with Inception statistics, shared by
# the last two, which then read one tensor)
MODELS = ("placeholder", "ganscan-spectrum-v1", "ganscan-fusion-v1")


def _jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi") / "files"
    write_images(d, 4, size=(80, 60))
    write_images(d, 3, size=(200, 150), seed=1, prefix="big")
    for bad in ("broken.png", "truncated_jpeg.jpg"):
        shutil.copy(EDGE / bad, d / bad)
    (d / "notes.txt").write_text("not an image")
    return d


def _scan(runner, cli, folder, models, *extra):
    args = ["scan", str(folder), "-f", "jsonl", "--batch-size", "3", *extra]
    for m in models:
        args += ["-m", m]
    res = run_ok(runner, cli, args)
    return {Path(r["path"]).name: r for r in _jsonl(res.stdout)}, res


@pytest.mark.parametrize("workers", ["0", "2"])
def test_each_models_column_equals_its_own_scan(runner, cli, folder, workers):
    multi, res = _scan(runner, cli, folder, MODELS, "--workers", workers)
    assert sorted(multi) == sorted(p.name for p in folder.iterdir() if p.suffix != ".txt")
    for model in MODELS:
        single, _ = _scan(runner, cli, folder, [model], "--workers", workers)
        for name, row in single.items():   # bit-identical: the same batches through the same forward pass
            assert multi[name][f"score_{model}"] == row["score"], (model, name)
            assert multi[name][f"verdict_{model}"] == row["verdict"], (model, name)
            if model == MODELS[0]:   # the first model is the main verdict, with its threshold and evidence
                for key in ("score", "verdict", "threshold", "model", "weights_sha256", "evidence_verdict"):
                    assert multi[name][key] == row[key], (key, name)
    for bad in ("broken.png", "truncated_jpeg.jpg"):   # a bad file keeps its row, an error for every model
        row = multi[bad]
        assert row["verdict"] == "error" and row["error"]
        assert all(row[f"score_{m}"] is None and row[f"verdict_{m}"] == "error" for m in MODELS)
    assert "fake per model:" in res.stderr and "models placeholder [PLACEHOLDER], ganscan-spectrum-v1" in res.stderr


def test_one_model_keeps_the_columns_and_two_add_theirs(runner, cli, folder, tmp_path):
    run_ok(runner, cli, ["scan", str(folder), "-o", str(tmp_path / "one.parquet"), "--workers", "0"])
    assert pq.read_table(tmp_path / "one.parquet").column_names == COLUMNS
    out = tmp_path / "two.parquet"
    run_ok(runner, cli, ["scan", str(folder), "-o", str(out), "--workers", "0", "-m", MODELS[0], "-m", MODELS[1]])
    table = pq.read_table(out)
    at = COLUMNS.index("verdict") + 1
    assert table.column_names == COLUMNS[:at] + [f"{k}_{m}" for m in MODELS[:2] for k in ("score", "verdict")] \
        + COLUMNS[at:]
    assert str(table.schema.field(f"score_{MODELS[1]}").type) == "double"
    run = json.loads(table.schema.metadata[b"ganscan.models"])
    assert [(m["model"], m["column"]) for m in run] == [(m, m) for m in MODELS[:2]]
    csv_out = run_ok(runner, cli, ["scan", str(folder), "-f", "csv", "--workers", "0", "-m", MODELS[0],
                                   "-m", MODELS[1]]).stdout
    assert f"verdict,score_{MODELS[0]},verdict_{MODELS[0]},score_{MODELS[1]}" in csv_out.splitlines()[0]


def test_the_table_shows_the_models_side_by_side(runner, cli, folder):
    res = run_ok(runner, cli, ["scan", str(folder), "-f", "table", "--workers", "0", "-m", MODELS[0],
                               "-m", MODELS[1]])
    header = next(line for line in res.stdout.splitlines() if "path" in line and "verdict" in line)
    assert header.index("verdict") < header.index(MODELS[0]) < header.index(MODELS[1])
    assert f"models {MODELS[0]} (UNTRAINED PLACEHOLDER), {MODELS[1]}" in res.stdout


def test_resume_with_several_models_and_a_report_of_other_models_is_refused(runner, cli, folder, tmp_path):
    out = tmp_path / "r.jsonl"
    two = ["-m", MODELS[0], "-m", MODELS[1]]
    first = [p for p in sorted(folder.iterdir()) if p.name.startswith("img")][:2]
    run_ok(runner, cli, ["scan", *map(str, first), "-o", str(out), "--workers", "0", *two])
    journal = out.with_name(out.name + ".partial.jsonl")
    out.rename(journal)                                   # as a killed scan leaves it
    res = run_ok(runner, cli, ["scan", str(folder), "-o", str(out), "--resume", "--workers", "0", *two])
    assert "2 already reported" in res.stderr
    rows = _jsonl(out.read_text())
    assert len(rows) == len({r["path"] for r in rows}) == 9
    assert all(f"score_{MODELS[1]}" in r for r in rows)
    for other in (["-m", MODELS[0]], ["-m", MODELS[1], "-m", MODELS[0]], ["-m", MODELS[0], "-m", MODELS[2]]):
        res = runner.invoke(cli, ["scan", str(folder), "-o", str(out), "--resume", "--workers", "0", *other])
        assert res.exit_code == 1 and "cannot resume" in res.output and "--force" in res.output, other
    single = tmp_path / "single.csv"                      # a one-model report is not continued with two
    run_ok(runner, cli, ["scan", str(folder), "-o", str(single), "--workers", "0", "-m", MODELS[0]])
    res = runner.invoke(cli, ["scan", str(folder), "-o", str(single), "--resume", "--workers", "0", *two])
    assert res.exit_code == 1 and "cannot resume" in res.output
    run_ok(runner, cli, ["scan", str(folder), "-o", str(single), "--resume", "--workers", "0", "-m", MODELS[0]])


def test_the_same_weights_twice_are_refused_and_names_stay_unique(runner, cli, tmp_path):
    from ganscan.detectors.load import column_names, load_detector

    write_images(tmp_path / "d", 1)
    res = runner.invoke(cli, ["scan", str(tmp_path / "d"), "-m", "placeholder", "-m", "placeholder"])
    assert res.exit_code == 1 and "given twice" in res.output
    a, b = load_detector("placeholder"), load_detector("ganscan-spectrum-v1")
    b.meta["name"] = "placeholder"   # two detectors with one label
    assert column_names([a, b]) == ["placeholder", "placeholder-2"]
    b.meta["name"] = "my model/v2"
    assert column_names([a, b]) == ["placeholder", "my_model_v2"]


def test_evaluate_with_two_models_gives_one_block_each(runner, cli, tmp_path):
    sets = tmp_path / "sets"
    for name, seed in (("alpha", 0), ("beta", 1)):
        write_images(sets / name / "0_real", 3, seed=seed)
        write_images(sets / name / "1_fake", 3, size=(64, 64), seed=seed + 10)
    two = ["-m", MODELS[0], "-m", MODELS[1]]
    out = json.loads(run_ok(runner, cli, ["evaluate", *two, str(sets), "-f", "json", "--workers", "0"]).stdout)
    assert [m["model"]["model"] for m in out["models"]] == list(MODELS[:2])
    for model, block in zip(MODELS, out["models"]):
        alone = json.loads(run_ok(runner, cli, ["evaluate", model, str(sets), "-f", "json", "--workers", "0"]).stdout)
        assert block == alone
        assert [r for r in out["rows"] if r["model"] == model] == [{"model": model, **r} for r in alone["rows"]]
    table = run_ok(runner, cli, ["evaluate", *two, str(sets), "-f", "table", "--workers", "0"]).stdout
    assert "2 models" in table and table.count("mean") == 2 and MODELS[1] in table
    run_ok(runner, cli, ["evaluate", *two, str(sets), "-o", str(tmp_path / "r.parquet"), "--workers", "0"])
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names[0] == "model" and table.num_rows == 2 * 3
    meta = json.loads(table.schema.metadata[b"ganscan"])
    assert [m["model"]["model"] for m in meta["models"]] == list(MODELS[:2])
    res = runner.invoke(cli, ["evaluate", "-m", MODELS[0]])
    assert res.exit_code == 2 and "Missing argument 'DATA...'" in res.output
