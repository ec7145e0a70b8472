"""Sweeps: the trials a spec expands to, TOML files, the ranked summary, run listing."""

from __future__ import annotations

import json
import math

import pytest

from mnistkit.errors import OptionsError, RunError, UnknownNameError
from mnistkit.plugins import load_plugins
from mnistkit.run_index import find_run_folders, list_runs, matches, sort_rows
from mnistkit.sweep import (
    SweepSpec,
    count_trials,
    describe_config,
    expand_trials,
    spec_from_cli,
    spec_from_toml,
    summarize,
)


def cli_spec(**changes):
    settings = dict(model="twolayer", optimizer="sgd", model_options=(),
                    optimizer_options=(), epochs="2", batch_size="128", dataset="mnist",
                    seeds=1, search="grid", trials=None, search_seed=0, val_size=1000,
                    limit=5000)
    settings.update(changes)
    return spec_from_cli(**settings)


def test_grid_crosses_every_value_then_the_seeds(registry):
    spec = cli_spec(model_options=("hidden_size=32,64",), optimizer_options=("lr=0.1,0.3,0.8",),
                    seeds=2)
    trials = expand_trials(spec, registry)
    assert count_trials(spec) == len(trials) == 12
    assert [t.trial_id for t in trials[:3]] == ["t0000", "t0001", "t0002"]
    pairs = [(t.config["model_options"]["hidden_size"], t.config["optimizer_options"]["lr"],
              t.seed) for t in trials]
    assert pairs[:4] == [("32", "0.1", 0), ("32", "0.1", 1), ("32", "0.3", 0), ("32", "0.3", 1)]
    assert len(set(pairs)) == 12
    assert all(t.config["limit"] == 5000 and t.config["val_size"] == 1000 for t in trials)
    assert {t.config["epochs"] for t in trials} == {2}


def test_random_search_is_seeded(registry):
    spec = cli_spec(optimizer_options=("lr=0.01,0.03,0.1,0.3,1",), model_options=(
        "hidden_size=16,32,64,128",), search="random", trials=6, search_seed=3)
    first = expand_trials(spec, registry)
    again = expand_trials(spec, registry)
    other = expand_trials(cli_spec(**{**dict(optimizer_options=("lr=0.01,0.03,0.1,0.3,1",),
                                             model_options=("hidden_size=16,32,64,128",),
                                             search="random", trials=6, search_seed=4)}),
                          registry)
    assert len(first) == 6 and [t.config for t in first] == [t.config for t in again]
    assert [t.config for t in first] != [t.config for t in other]


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"model_options": ("hiden_size=3",)}, OptionsError, "has no option 'hiden_size'"),
    ({"model_options": ("hidden_size=0,8",)}, OptionsError, "hidden_size"),
    ({"optimizer_options": ("lr=fast",)}, OptionsError, "must be a number"),
    ({"model": "twolayer,twolayr"}, UnknownNameError, "unknown model 'twolayr'"),
    ({"epochs": "2,0"}, OptionsError, "epochs values must be at least 1"),
    ({"batch_size": "many"}, OptionsError, "batch_size values must be whole numbers"),
    ({"seeds": 0}, OptionsError, "^seeds must be at least 1"),
    ({"search": "random"}, OptionsError, "^search random needs trials N"),
    ({"search": "bayes"}, OptionsError, "^search must be one of grid, random"),
    ({"model_options": ("hidden_size",)}, OptionsError, "not of the form name=value"),
    ({"model_options": ("hidden_size=",)}, OptionsError, "empty list of values"),
])
def test_bad_sweeps_are_refused_before_anything_runs(registry, changes, error, message):
    with pytest.raises(error, match=message):
        expand_trials(cli_spec(**changes), registry)


def test_huge_grids_are_refused_by_count(registry):
    values = ",".join(str(v) for v in range(1, 401))
    with pytest.raises(OptionsError, match="160,000 trials"):
        cli_spec(model_options=(f"hidden_size={values}",), optimizer_options=(
            f"step_size={values}",))


def test_toml_sweep_matches_the_command_line(tmp_path, registry):
    path = tmp_path / "sweep.toml"
    path.write_text('epochs = 2\nseeds = 2\nlimit = 5000\nval_size = 1000\n'
                    '[model_options]\nhidden_size = [32, 64]\n'
                    '[optimizer_options]\nlr = [0.1, 0.3, 0.8]\n')
    from_file = expand_trials(spec_from_toml(path), registry)
    from_cli = expand_trials(cli_spec(model_options=("hidden_size=32,64",),
                                      optimizer_options=("lr=0.1,0.3,0.8",), seeds=2), registry)
    assert len(from_file) == 12
    assert [describe_config(t.config) for t in from_file] == [
        describe_config(t.config) for t in from_cli]
    assert [t.seed for t in from_file] == [t.seed for t in from_cli]


@pytest.mark.parametrize(("text", "message"), [
    ("epochs = [", "not valid TOML"),
    ("epoch = 2", "unknown setting 'epoch'"),
    ("seeds = 'three'", "seeds must be a count or a list"),
    ("model_options = 3", "must be a table"),
])
def test_bad_toml_files_are_one_line(tmp_path, text, message):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    with pytest.raises(OptionsError, match=message):
        spec_from_toml(path)


def test_toml_that_is_not_a_small_regular_file_is_refused_unread(tmp_path):
    import os

    with pytest.raises(OptionsError, match="not a regular file"):
        spec_from_toml(tmp_path)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(OptionsError, match="not a regular file"):  # never blocks on open
        spec_from_toml(fifo)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(OptionsError, match=r"2097152 bytes is too large for a sweep file "
                                           r"\(at most 1048576\); refused unread"):
        spec_from_toml(big)


def test_spec_round_trips_through_its_json():
    spec = SweepSpec(axes={"o.lr": ["0.1", "0.2"], "epochs": [2]}, seeds=[0, 1],
                     fixed={"limit": 10, "val_size": 5})
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(OptionsError, match="damaged"):
        SweepSpec.from_dict({"axes": {}})


def _trial(config_value, seed, val, test, status="finished"):
    config = {"model": "twolayer", "optimizer": "sgd", "dataset": "mnist", "epochs": 2,
              "batch_size": 128, "model_options": {}, "optimizer_options": {"lr": config_value}}
    return {"config": config, "seed": seed, "status": status, "val_accuracy": val,
            "test_accuracy": test}


def test_summary_ranks_by_mean_validation_accuracy_with_spread():
    trials = [_trial("0.1", 0, 0.90, 0.99), _trial("0.1", 1, 0.92, 0.99),
              _trial("0.3", 0, 0.95, 0.80), _trial("0.3", 1, 0.93, 0.80),
              _trial("0.8", 0, None, None, "failed")]
    summary = summarize(trials)
    assert [s.config["optimizer_options"]["lr"] for s in summary] == ["0.3", "0.1", "0.8"]
    best = summary[0]
    assert best.finished == 2 and best.trials == 2
    assert best.val_mean == pytest.approx(0.94) and best.val_std == pytest.approx(0.01)
    assert best.test_mean == pytest.approx(0.80)  # reported, never used to rank
    assert summary[2].finished == 0 and math.isnan(summary[2].val_mean)


# -- listing run folders ---------------------------------------------------------------------
def _fake_run(folder, **changes):
    record = {"format_version": 1, "status": "finished", "created": "2026-12-01T10:00:00",
              "model": "twolayer", "optimizer": "sgd", "model_options": {"hidden_size": 8},
              "optimizer_options": {"lr": 0.1}, "dataset": {"name": "mnist", "fingerprint": "x"},
              "training": {"epochs": 1, "batch_size": 10, "seed": 0, "sampling": "shuffle",
                           "steps_per_epoch": None, "pixel_scale": 1 / 255, "val_size": 10,
                           "limit": None},
              "history": [{"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.9,
                           "val_accuracy": 0.8, "lr": 0.1, "seconds": 1.0}],
              "best_epoch": 1, "metrics": {"test_accuracy": 0.85, "val_accuracy": 0.8},
              "wall_seconds": 2.0}
    record.update(changes)
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_runs_are_found_recursively_and_damaged_ones_listed_as_damaged(tmp_path):
    _fake_run(tmp_path / "a")
    _fake_run(tmp_path / "S" / "trials" / "t0000", model="mlp", metrics={})
    _fake_run(tmp_path / "killed", status="running")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    (tmp_path / ".hidden").mkdir()
    _fake_run(tmp_path / ".hidden" / "x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert [p.name for p in find_run_folders(tmp_path)] == ["t0000", "a", "broken", "killed"]
    rows = {r.path.split("/")[-1]: r for r in list_runs(tmp_path)}
    assert rows["broken"].status == "damaged" and "unreadable" in rows["broken"].error
    assert rows["killed"].status == "stopped"  # says running, but no process holds it
    assert rows["t0000"].test_accuracy is None and rows["t0000"].val_accuracy == 0.8
    assert [r.path.split("/")[-1] for r in sort_rows(list(rows.values()), "test")][:1] == ["a"]
    assert matches(rows["a"], {"model": "twolayer", "lr": "0.10"})
    assert not matches(rows["a"], {"model": "mlp"}) and not matches(rows["a"], {"nope": "1"})
    with pytest.raises(RunError, match="no such folder"):
        list_runs(tmp_path / "missing")


def test_summary_counts_a_repeated_configuration_and_seed_once():
    trials = [_trial("0.1", 0, 0.90, 0.9), _trial("0.1", 0, 0.90, 0.9), _trial("0.1", 1, 0.80, 0.8)]
    (only,) = summarize(trials)
    assert only.trials == 2 and only.val_mean == pytest.approx(0.85)


@pytest.mark.parametrize(("args", "line"), [
    (["--search", "random"], "Error: --search random needs --trials N (N >= 1); got None"),
    (["--seeds", "0"], "Error: --seeds must be at least 1; got 0"),
    (["--workers", "0"], "Error: Invalid value for '--workers': 0 is not in the range x>=1."),
])
def test_the_cli_spells_the_settings_a_bad_sweep_names_as_its_flags(tmp_path, args, line):
    from click.testing import CliRunner

    from mnistkit.cli import build_cli

    result = CliRunner().invoke(build_cli(load_plugins([], entry_points=False)),
                                ["sweep", "--epochs", "1", "--out", str(tmp_path / "s"), *args])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == line, (
        result.output)
    assert not (tmp_path / "s").exists()
