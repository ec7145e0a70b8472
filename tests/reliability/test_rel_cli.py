"""The command line: every option validated with a helpful one-line message, and plugins
of every quality, installed for real (a dist-info with entry points on PYTHONPATH), never
stopping the other commands.

Already covered elsewhere (listed in README): eight option mistakes in
tests/test_cli_train.py, plugin isolation with faked entry points in tests/test_plugins.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, assert_one_line_error, default_signals, invoke, subprocess_env

QUICK = ["--limit", "1000", "--val-size", "100", "--epochs", "1", "-m", "hidden_size=8"]

# args, fragments of the error line, exit code
MISTAKES = [
    (["-o", "lr=0"], ["optimizer 'sgd'", "lr must be > 0; got 0.0"], 2),
    (["-o", "lr=-0.5"], ["lr must be > 0; got -0.5"], 2),
    (["-o", "lr=fast"], ["option 'lr' of optimizer 'sgd' must be a number; got 'fast'"], 2),
    (["-o", "momentun=0.9"], ["optimizer 'sgd' has no option 'momentun'. Did you mean "
                              "'momentum'? Valid options: lr (float), schedule "
                              "(constant|step|cosine), step_size (int)", "nesterov (bool)"], 2),
    (["-o", "schedule=cosin"], ["'schedule' of optimizer 'sgd' must be one of constant, step, "
                                "cosine; got 'cosin'"], 2),
    (["-o", "nesterov=maybe"], ["'nesterov' of optimizer 'sgd' must be true or false"], 2),
    (["-m", "hidden_size=abc"], ["'hidden_size' of model 'twolayer' must be an integer"], 2),
    (["-m", "hidden_size=1.5"], ["must be an integer; got '1.5'"], 2),
    (["-m", "hidden_size=0"], ["hidden_size must be >= 1; got 0"], 2),
    (["-m", "hiden_size=3"], ["Did you mean 'hidden_size'? Valid options: hidden_size (int), "
                              "reg (float), init_scale (float)"], 2),
    (["--model", "softmax", "-m", "hidden_size=3"], ["model 'softmax' has no option "
                                                     "'hidden_size'"], 2),
    (["-m", "=3"], ["is not of the form name=value"], 2),
    (["--model", "twolayr"], ["unknown model 'twolayr'. Did you mean 'twolayer'?"], 2),
    (["--optimizer", "sgdd"], ["unknown optimizer 'sgdd'. Did you mean 'sgd'?"], 2),
    (["--optimizer", "adam"], ["unknown optimizer 'adam'. Known optimizers: sgd"], 2),
    (["--dataset", "mnsit"], ["unknown dataset 'mnsit'. Did you mean 'mnist'?"], 2),
    (["--batch-size", "0"], ["--batch-size must be between 1 and 1000 (the training images); "
                             "got 0"], 2),
    (["--batch-size", "1001"], ["--batch-size must be between 1 and 1000"], 2),
    (["--batch-size", "-5"], ["--batch-size must be between 1 and 1000"], 2),
    (["--limit", "0"], ["--limit must be between 1 and 59900"], 2),
    (["--limit", "60000"], ["--limit must be between 1 and 59900 (the training images left "
                            "after holding out --val-size 100)"], 2),
    (["--val-size", "-1"], ["--val-size must be between 0 and 59999 (the dataset has 60000 "
                            "training images); got -1"], 2),
    (["--val-size", "60000"], ["--val-size must be between 0 and 59999 (the dataset has "
                               "60000 training images); got 60000: give a smaller --val-size"],
     2),
    (["--epochs", "0"], ["--epochs must be at least 1; got 0"], 2),
    (["--epochs", "-2"], ["--epochs must be at least 1; got -2"], 2),
    (["--steps-per-epoch", "0"], ["--steps-per-epoch must be at least 1"], 2),
    (["--seed", "-1"], ["--seed must be 0 or more; got -1"], 2),
    (["--threads", "0"], ["Invalid value for '--threads': 0 is not in the range x>=1"], 2),
    (["--batch-size", "many"], ["Invalid value for '--batch-size': 'many' is not a valid "
                                "integer"], 2),
    (["--sampling", "sometimes"], ["Invalid value for '--sampling'"], 2),
    (["--epoch", "3"], ["No such option '--epoch'. Did you mean '--epochs'?"], 2),
    (["--resume", "no-such-run"], ["no-such-run: no such run folder"], 1),
]


def _defaults(args: list[str]) -> list[str]:
    """QUICK settings, minus the ones a case sets itself."""
    given = {a for a in args if a.startswith("--")}
    out, i = [], 0
    while i < len(QUICK):
        if QUICK[i] in given or (QUICK[i] == "-m" and "softmax" in args):
            i += 2
            continue
        out += QUICK[i:i + 2]
        i += 2
    return out


@pytest.mark.parametrize("args, fragments, code", MISTAKES,
                         ids=[" ".join(a) for a, _, _ in MISTAKES])
def test_train_option_mistakes_are_one_line_before_anything_runs(tmp_path, args, fragments,
                                                                  code):
    result = invoke("train", *_defaults(args), *args, "--out", tmp_path / "run")
    assert_one_line_error(result, *fragments, exit_code=code)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, fragment", [
    (["trian"], "No such command 'trian'"),
    (["test", "x", "--split", "dev"], "Invalid value for '--split'"),
    (["test", "x", "--params", "first"], "Invalid value for '--params'"),
    (["predict", "x", "--top", "11", "a.png"], "Invalid value for '--top'"),
    (["inspect", "--dataset", "mnist-fashion"], "unknown dataset 'mnist-fashion'"),
])
def test_other_command_mistakes(args, fragment):
    assert_one_line_error(invoke(*args), fragment, exit_code=2)


# -- plugins installed for real ---------------------------------------------------------------

PLUGIN_MODULES = {
    "rel_good": '''
        import click
        from mnistkit import hookimpl

        @hookimpl
        def mnistkit_register_models(register):
            from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
            register("goodnet", SoftmaxClassifier, options=SoftmaxOptions, help="a softmax")

        @hookimpl
        def mnistkit_register_commands(cli):
            @cli.command("hello")
            def hello():
                """Say hello (a plugin command)."""
                click.echo("hello from a plugin")
    ''',
    "rel_broken_import": '''
        import numpyy  # a typo: ImportError when the plugin loads
    ''',
    "rel_syntax": '''
        def broken(:
    ''',
    "rel_hook_raises": '''
        from mnistkit import hookimpl

        @hookimpl
        def mnistkit_register_models(register):
            raise RuntimeError("cannot find my weights")
    ''',
    "rel_command_raises": '''
        from mnistkit import hookimpl

        @hookimpl
        def mnistkit_register_commands(cli):
            raise AttributeError("'Group' object has no attribute 'comand'")
    ''',
    "rel_duplicate": '''
        from mnistkit import hookimpl

        @hookimpl
        def mnistkit_register_models(register):
            from mnistkit.models.softmax import SoftmaxClassifier
            register("twolayer", SoftmaxClassifier, help="shadows a built-in")
    ''',
    "rel_bad_dataset": '''
        from mnistkit import hookimpl

        def load(options, data_dir):
            raise FileNotFoundError(2, "No such file or directory", "/srv/data/x.gz")

        @hookimpl
        def mnistkit_register_datasets(register):
            register("brokendata", load, help="always fails to load")
    ''',
}
DISTRIBUTIONS = {
    "mnistkit-relgood": {"good": "rel_good"},
    "mnistkit-relbad": {"broken": "rel_broken_import", "syntax": "rel_syntax",
                        "hookraises": "rel_hook_raises", "cmdraises": "rel_command_raises",
                        "duplicate": "rel_duplicate", "baddata": "rel_bad_dataset"},
}
BAD_WARNINGS = [
    "warning: plugin 'broken' from mnistkit-relbad was skipped: ModuleNotFoundError: "
    "No module named 'numpyy'",
    "warning: plugin 'syntax' from mnistkit-relbad was skipped: SyntaxError:",
    "warning: plugin 'hookraises' from mnistkit-relbad: its hook mnistkit_register_models "
    "failed and was skipped (RuntimeError: cannot find my weights)",
    "warning: plugin 'cmdraises' from mnistkit-relbad: its hook mnistkit_register_commands "
    "failed and was skipped (AttributeError:",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder that, on PYTHONPATH, installs the plugins above through real
    ``*.dist-info/entry_points.txt`` files read by importlib.metadata."""
    root = tmp_path_factory.mktemp("site")
    for module, source in PLUGIN_MODULES.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    for dist, points in DISTRIBUTIONS.items():
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "\n".join(f"{name} = {module}" for name, module in points.items())
        (info / "entry_points.txt").write_text(f"[mnistkit]\n{lines}\n")
    return root


def mnistkit(site: Path, *args: str, load: str | None = None) -> subprocess.CompletedProcess:
    env = subprocess_env(PYTHONPATH=f"{site}:{REPO}")
    if load is not None:
        env["MNISTKIT_LOAD_PLUGINS"] = load
    return subprocess.run([sys.executable, "-m", "mnistkit", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=default_signals)


def warnings_of(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("warning:")]


def test_broken_plugins_are_one_warning_each_and_listing_works(site):
    proc = mnistkit(site, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = warnings_of(proc)
    assert len(warnings) == len(BAD_WARNINGS), proc.stderr
    for expected in BAD_WARNINGS:
        assert any(w.startswith(expected) for w in warnings), (expected, warnings)
    listing = json.loads(proc.stdout)
    loaded = {p["name"]: p for p in listing["plugins"]}
    assert {"builtins", "good", "duplicate", "baddata"} <= set(loaded)
    assert loaded["good"]["distribution"] == "mnistkit-relgood"
    assert {f["name"] for f in listing["failed"]} == {"broken", "syntax", "hookraises",
                                                      "cmdraises"}


def test_other_commands_work_next_to_broken_plugins(site, tmp_path):
    models = mnistkit(site, "models", "--json")
    assert models.returncode == 0 and "Traceback" not in models.stderr
    listing = json.loads(models.stdout)
    assert {"goodnet", "softmax"} <= {m["name"] for m in listing["items"]}
    assert listing["conflicts"] == {"twolayer": ["builtins", "duplicate"]}
    hello = mnistkit(site, "hello")
    assert hello.returncode == 0 and hello.stdout.strip() == "hello from a plugin"
    trained = mnistkit(site, "train", "--model", "goodnet", *QUICK[:6], "--out",
                       tmp_path / "run", "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert "test accuracy" in trained.stdout and "Traceback" not in trained.stderr


def test_a_duplicate_name_is_refused_only_where_it_is_used(site, tmp_path):
    proc = mnistkit(site, "train", *QUICK, "--out", tmp_path / "run")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "Error: model 'twolayer' is registered by more than one plugin: builtins and duplicate. "
        "Uninstall one of them, or choose plugins with MNISTKIT_LOAD_PLUGINS")


def test_a_dataset_plugin_failing_to_load_is_named(site):
    proc = mnistkit(site, "inspect", "--dataset", "brokendata")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "Error: dataset 'brokendata' from plugin 'baddata' failed to load: FileNotFoundError: "
        "[Errno 2] No such file or directory: '/srv/data/x.gz'")


def test_empty_load_plugins_starts_with_the_builtins_only(site, tmp_path):
    proc = mnistkit(site, "plugins", "--json", load="")
    assert proc.returncode == 0 and proc.stderr == ""
    assert [p["name"] for p in json.loads(proc.stdout)["plugins"]] == ["builtins"]
    trained = mnistkit(site, "train", *QUICK, "--out", tmp_path / "run", "--quiet", load="")
    assert trained.returncode == 0 and trained.stderr == ""  # twolayer is unambiguous again


@pytest.mark.parametrize("load", ["good", "mnistkit-relgood"])
def test_load_plugins_selects_by_entry_point_or_distribution(site, load):
    proc = mnistkit(site, "plugins", "--json", load=load)
    assert proc.returncode == 0 and proc.stderr == ""
    assert [p["name"] for p in json.loads(proc.stdout)["plugins"]] == ["builtins", "good"]
