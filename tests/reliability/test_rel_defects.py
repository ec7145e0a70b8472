"""Smaller defects (issue 11, item 6), each as a class of hostile cases:

- ``mnistkit test`` asked for an empty selection (``--split val`` of a run trained with
  ``--val-size 0``, a dataset without test images, a dataset too small for the run);
- Ctrl-C at any moment, including before the click group runs (imports, plugin loading,
  argument parsing) and after the command has finished;
- NaN and infinite values of any float option of any model, optimizer or dataset;
- rich output to a pipe or a file: not wrapped at 80 columns;
- names with characters the plot font lacks (emoji, CJK) or with ``$``: no warning;
- ``MNISTKIT_LOAD_PLUGINS`` naming something that is not installed: one warning each.

Where the case is about the command line, a real ``python -m mnistkit`` process is run.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import (
    REPO,
    assert_one_line_error,
    invoke,
    small_idx_folder,
    subprocess_env,
)

from mnistkit.options import _field_types
from mnistkit.plugins import LOAD_PLUGINS_ENV, load_plugins

QUICK = ["--model", "softmax", "--epochs", "1", "--batch-size", "50", "--quiet"]


def mnistkit(*args: object, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m mnistkit ARGS`` in a real process; its stdout and stderr are pipes."""
    return subprocess.run([sys.executable, "-m", "mnistkit", *map(str, args)],
                          env=env or subprocess_env(), capture_output=True, text=True,
                          timeout=timeout)


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr


# -- mnistkit test: empty selections ---------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Small data folders: normal, without test images, with fewer training images."""
    root = tmp_path_factory.mktemp("defects-data")
    return {"small": small_idx_folder(root / "small", n_train=600, n_test=100),
            "no-test": small_idx_folder(root / "no-test", n_train=600, n_test=0),
            "tiny": small_idx_folder(root / "tiny", n_train=80, n_test=50),
            "medium": small_idx_folder(root / "medium", n_train=350, n_test=50)}


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict[str, Path]:
    """A run without validation images, one holding out 100 of 600, one trained on 300."""
    root = tmp_path_factory.mktemp("defects-runs")
    made = {}
    for name, args in (("no-val", ["--val-size", "0"]), ("val-100", ["--val-size", "100"]),
                       ("limit-300", ["--val-size", "100", "--limit", "300"])):
        made[name] = root / name
        result = invoke("train", *QUICK, "--data-dir", data["small"], *args,
                        "--out", made[name])
        assert result.exit_code == 0, result.output
    return made


def test_split_val_of_a_run_without_validation_images_is_one_line(runs, data):
    """The reported case, through a real process: exit 2, one line, checked before the data
    is loaded (a --data-dir that does not exist is not even looked at)."""
    proc = mnistkit("test", runs["no-val"], "--split", "val", "--data-dir", data["small"])
    no_traceback(proc)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"Error: {runs['no-val']} has no validation images (it was trained with --val-size 0); "
        f"use --split test or --split train"]
    early = invoke("test", runs["no-val"], "--split", "val", "--data-dir", "/nonexistent")
    assert_one_line_error(early, "has no validation images", exit_code=2)


@pytest.mark.parametrize(("run", "split", "folder", "code", "fragments"), [
    ("no-val", "val", "small", 2, ["has no validation images", "--val-size 0"]),
    ("no-val", "val", "no-test", 2, ["has no validation images"]),
    ("val-100", "test", "no-test", 1, ["dataset 'mnist' has no test images: nothing to "
                                       "evaluate with --split test"]),
    ("no-val", "test", "no-test", 1, ["has no test images"]),
    ("val-100", "val", "tiny", 1, ["held out 100 validation images, but dataset 'mnist' now "
                                   "has only 80 training images", "--split test"]),
    ("val-100", "train", "tiny", 1, ["held out 100 validation images"]),
    ("limit-300", "train", "medium", 1, ["held out 100 validation images and trained on 300, "
                                         "but dataset 'mnist' now has only 350"]),
    ("limit-300", "val", "medium", 1, ["trained on 300"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_every_empty_or_missing_selection_is_one_line(runs, data, run, split, folder, code,
                                                      fragments):
    for params in ("best", "last"):
        result = invoke("test", runs[run], "--split", split, "--params", params,
                        "--data-dir", data[folder])
        assert_one_line_error(result, *fragments, exit_code=code)
        json_result = invoke("test", runs[run], "--split", split, "--json",
                             "--data-dir", data[folder])
        assert_one_line_error(json_result, *fragments, exit_code=code)


def test_the_splits_that_exist_still_evaluate(runs, data):
    for run, split, images in (("no-val", "test", 100), ("no-val", "train", 600),
                               ("val-100", "val", 100), ("val-100", "train", 500)):
        result = invoke("test", runs[run], "--split", split, "--json", "--data-dir",
                        data["small"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["images"] == images


# -- Ctrl-C at any moment ----------------------------------------------------------------------

def _default_sigint() -> None:
    """In the child: SIGINT at its default, even when the suite runs as a background job
    (which starts with SIGINT ignored, and a child would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: The console script ``mnistkit`` (``from mnistkit.cli import main; sys.exit(main())``),
#: telling the test on stderr when ``main`` starts importing the command line: the signals
#: are timed from there, not from the interpreter's start, whose length varies with the
#: machine's load (a SIGINT during Python's own start-up, before any mnistkit code runs, is
#: Python's).
CONSOLE_SCRIPT = """
import sys

class Marker:
    told = False

    def find_spec(self, name, path=None, target=None):
        if name == "mnistkit.cli.app" and not self.told:
            self.told = True
            sys.stderr.write("main\\n")
            sys.stderr.flush()

sys.meta_path.insert(0, Marker())
from mnistkit.cli import main
sys.exit(main())
"""


def interrupt_after(delay: float, args: list[str]) -> tuple[bool, int, str, str]:
    """Start the console script with ``ARGS``, SIGINT it ``delay`` seconds after ``main``
    began importing the command line; returns whether it was still running then, its exit
    code, its stdout and its stderr (without the marker line)."""
    proc = subprocess.Popen([sys.executable, "-c", CONSOLE_SCRIPT, *args], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    assert proc.stderr.readline() == "main\n"
    time.sleep(delay)
    running = proc.poll() is None
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return running, proc.returncode, stdout, stderr


@pytest.mark.parametrize("delay", [0, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.07, 0.1, 0.15,
                                   0.2, 0.3])
def test_real_sigint_at_any_early_moment_is_interrupted_and_130(runs, data, delay):
    """SIGINT while main imports click, pluggy and NumPy, loads the plugins, parses the
    command line, loads the data or evaluates: always ``Interrupted.`` and 130 (or, if the
    command had already finished, its own result), never a traceback nor ``Aborted!``."""
    running, code, stdout, stderr = interrupt_after(
        delay, ["test", str(runs["val-100"]), "--data-dir", str(data["small"])])
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "Aborted!" not in stderr
    if delay <= 0.1:  # importing NumPy alone takes longer: certainly still running
        assert running and code == 130, stderr
    if code == 0:  # the signal came once the command had printed everything
        assert "test accuracy" in stdout and stderr == "", stderr
    else:
        assert code == 130 and stderr == "Interrupted.\n", stderr


SIGINT_AT_IMPORT = '''
import os, signal, time
os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C while mnistkit loads this plugin
time.sleep(5)
'''

SIGINT_IN_REGISTER_COMMANDS = '''
import os, signal, time
from mnistkit import hookimpl

@hookimpl
def mnistkit_register_commands(cli):
    os.kill(os.getpid(), signal.SIGINT)  # while build_cli adds the plugins' commands
    time.sleep(5)
'''

SIGINT_LOST_IN_A_FINALISER = '''
import time

class Finaliser:
    def __del__(self):  # as a Ctrl-C landing in a weakref callback of the import system
        raise KeyboardInterrupt

Finaliser()  # dropped at once: Python can only print its KeyboardInterrupt as "ignored"
time.sleep(5)
'''

GOOD_PLUGIN = '''
from mnistkit import hookimpl

@hookimpl
def mnistkit_register_models(register):
    from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
    register("goodnet", SoftmaxClassifier, options=SoftmaxOptions, help="a softmax")
'''


def install_plugins(root: Path, dists: dict[str, dict[str, str]]) -> Path:
    """Install plugins for real in ``root`` (to put on PYTHONPATH): ``dists`` maps a
    distribution name to ``{entry point name: module source}``."""
    root.mkdir(parents=True, exist_ok=True)
    for dist, points in dists.items():
        for name, source in points.items():
            (root / f"{dist.replace('-', '_')}_{name}.py").write_text(textwrap.dedent(source))
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "\n".join(f"{name} = {dist.replace('-', '_')}_{name}" for name in points)
        (info / "entry_points.txt").write_text(f"[mnistkit]\n{lines}\n")
    return root


def with_plugins(site: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(PYTHONPATH=f"{site}:{REPO}", **extra)


@pytest.mark.parametrize("source", [SIGINT_AT_IMPORT, SIGINT_IN_REGISTER_COMMANDS,
                                    SIGINT_LOST_IN_A_FINALISER],
                         ids=["while-importing-a-plugin", "while-registering-commands",
                              "in-code-that-cannot-raise"])
def test_real_sigint_while_plugins_load_is_interrupted_and_130(tmp_path, source):
    """Before click's group runs at all (``build_cli`` in ``main``)."""
    site = install_plugins(tmp_path / "site", {"mnistkit-relsigint": {"sig": source}})
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mnistkit", "models"], env=with_plugins(site),
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=_default_sigint)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "Interrupted.\n" and proc.stdout == ""
    assert time.perf_counter() - started < 4.5  # at once, not after the plugin's 5 s sleep


def test_real_sigint_while_the_cli_modules_are_imported():
    """SIGINT during ``import click`` (the first import of mnistkit.cli.app), through the
    console-script entry point ``mnistkit.cli:main``."""
    code = textwrap.dedent('''
        import os, signal, sys, time
        import mnistkit.cli

        class Interrupting:
            def find_spec(self, name, path=None, target=None):
                if name == "click":
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)

        assert "click" not in sys.modules, "mnistkit.cli must import only the standard library"
        sys.meta_path.insert(0, Interrupting())
        sys.argv = ["mnistkit", "models"]
        mnistkit.cli.main()
    ''')
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True,
                          text=True, timeout=60, preexec_fn=_default_sigint)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "Interrupted.\n"


def test_ctrl_c_while_click_parses_the_command_line(monkeypatch):
    """A KeyboardInterrupt in the group's own argument parsing (before its invoke): click
    alone would print ``Aborted!`` and exit 1."""
    import click

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(click.Group, "parse_args", interrupted)
    result = invoke("models")
    assert result.exit_code == 130 and result.output.strip() == "Interrupted."


def test_sigint_after_the_command_finished_changes_nothing():
    """Once ``main`` is done SIGINT is ignored: the interpreter's shutdown cannot print a
    KeyboardInterrupt traceback for a command that succeeded."""
    code = textwrap.dedent('''
        import atexit, os, signal, sys, time
        import mnistkit.cli

        def late_ctrl_c():  # a Ctrl-C while Python shuts down, after the command finished
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            sys.stdout.write("shutdown finished\\n")

        atexit.register(late_ctrl_c)
        sys.argv = ["mnistkit", "--version"]
        mnistkit.cli.main()
    ''')
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True,
                          text=True, timeout=60, preexec_fn=_default_sigint)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == ["mnistkit, version 0.1.0", "shutdown finished"]


# -- non-finite numbers for float options -------------------------------------------------------

NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e400"]


def float_options() -> list[tuple[str, str, str]]:
    """(kind, name, option) of every float option of every installed model, optimizer and
    dataset (the example plugins too when they are installed)."""
    registry = load_plugins().registry
    found = []
    for kind in ("model", "optimizer", "dataset"):
        for entry in registry.entries(kind):
            if entry.options is None:
                continue
            for option, tp in _field_types(entry.options).items():
                if tp is float:
                    found.append((kind, entry.name, option))
    return found


FLOAT_OPTIONS = float_options()


def test_the_float_options_found_include_the_builtins():
    assert {("model", "twolayer", "reg"), ("model", "twolayer", "init_scale"),
            ("model", "softmax", "reg"), ("optimizer", "sgd", "lr")} <= set(FLOAT_OPTIONS)


@pytest.mark.parametrize(("kind", "name", "option"), FLOAT_OPTIONS,
                         ids=[f"{k}-{n}-{o}" for k, n, o in FLOAT_OPTIONS])
def test_every_float_option_refuses_non_finite_values(kind, name, option):
    from mnistkit.errors import OptionsError

    entry = load_plugins().registry.get(kind, name)
    for value in [*NON_FINITE, math.nan, math.inf, -math.inf]:
        with pytest.raises(OptionsError) as caught:
            entry.make_options({option: value})
        assert str(caught.value) == (
            f"option {option!r} of {kind} {name!r} must be a finite number; got {value!r}")
    assert math.isfinite(getattr(entry.make_options({option: "1e-3"}), option))


@pytest.mark.parametrize("args", [
    ["-m", "reg=nan"], ["-m", "init_scale=nan"], ["-m", "init_scale=-inf"], ["-o", "lr=inf"],
    ["-o", "lr=1e999"], ["-o", "momentum=NaN"], ["-o", "gamma=-1e400"],
])
def test_non_finite_options_are_one_line_before_anything_runs(tmp_path, data, args):
    out = tmp_path / "run"
    result = invoke("train", "--model", "twolayer", *args, "--data-dir", data["small"],
                    "--val-size", "100", "--epochs", "1", "--out", out, "--quiet")
    key = args[1].split("=")[0]
    line = assert_one_line_error(result, f"option {key!r} of", "must be a finite number",
                                 exit_code=2)
    assert "learning rate" not in line and not out.exists()


def test_non_finite_option_through_a_real_process(tmp_path, data):
    proc = mnistkit("train", "--model", "twolayer", "-m", "reg=nan", "--data-dir", data["small"],
                    "--val-size", "100", "--out", tmp_path / "run")
    no_traceback(proc)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "Error: option 'reg' of model 'twolayer' must be a finite number; got 'nan'"]


# -- rich output to pipes and files --------------------------------------------------------------

def test_console_is_unwrapped_when_not_a_terminal(monkeypatch):
    import io

    from mnistkit.cli import common

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    out = common.console()
    assert out.width == common.UNWRAPPED_WIDTH and out.soft_wrap
    monkeypatch.setenv("COLUMNS", "123")
    assert common.console().width == 123


@pytest.fixture(scope="module")
def long_runs(runs, tmp_path_factory) -> list[Path]:
    """13 copies of a run under a 200-character path."""
    import shutil

    root = tmp_path_factory.mktemp("wide") / ("a-very-long-folder-name-" * 8)
    root.mkdir()
    copies = []
    for i in range(13):
        copies.append(root / f"run-number-{i:02d}-with-a-long-name")
        shutil.copytree(runs["val-100"], copies[-1])
    return copies


def unwrapped_env(**extra: str) -> dict[str, str]:
    env = subprocess_env(**extra)
    env.pop("COLUMNS")
    return env


def test_test_output_to_a_pipe_keeps_the_run_path_whole(long_runs, data):
    run = long_runs[0]
    proc = mnistkit("test", run, "--data-dir", data["small"], env=unwrapped_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(str(run)) > 200 and lines[0].startswith("test accuracy ")
    assert lines[0].endswith(f"best parameters of {run})")
    assert not any(line != line.rstrip() for line in lines)  # no padding to the wide width
    confusion = lines[lines.index("Confusion matrix (rows: true, columns: predicted)") + 1:]
    assert len(confusion) == 10 + 4  # ten rows and the borders: nothing squeezed or folded


def test_compare_of_13_runs_to_a_pipe_is_one_line_per_field(long_runs):
    pytest.importorskip("mnistkit_compare")
    proc = mnistkit("compare", *long_runs, env=unwrapped_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if "run-number-00" in line)
    for run in long_runs:
        assert run.name in header  # every column titled with the whole run name
    model = [line for line in lines if line.split("│")[1:2] == [" model             "]]
    assert len(model) == 1 and model[0].count("softmax") == 13
    widths = {len(line) for line in lines[1:]}
    assert len(widths) == 1 and widths.pop() > 80  # one straight table, wider than 80


def test_columns_is_respected_when_set(long_runs):
    pytest.importorskip("mnistkit_compare")
    proc = mnistkit("compare", *long_runs[:2], env=subprocess_env(COLUMNS="100"))
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= 100


# -- plot text the font cannot draw ----------------------------------------------------------

@pytest.mark.parametrize("name", ["run-😀-🚀", "试验-运行", "a$\\foo$b", "ࢠ-x"])
def test_names_the_font_lacks_give_no_warning(runs, tmp_path, name):
    import shutil

    run = tmp_path / name
    shutil.copytree(runs["val-100"], run)
    proc = mnistkit("visualise", "history", run, runs["no-val"], "-o", tmp_path / "h.png")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and (tmp_path / "h.png").stat().st_size > 0
    single = mnistkit("visualise", "history", run)
    assert single.returncode == 0 and single.stderr == "", single.stderr
    assert (run / "history.png").exists()


def test_missing_glyphs_are_silenced_only_while_saving(tmp_path):
    import warnings

    from mnistkit.plots import sample_grid, save_figure

    fig = sample_grid(__import__("numpy").zeros((2, 28, 28), "uint8"), [0, 1],
                      ["中", "$\\nope$"], title="试验 😀")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail here
        before = list(warnings.filters)
        save_figure(fig, tmp_path / "grid.png")
        assert warnings.filters == before  # the caller's filters are left as they were
    assert (tmp_path / "grid.png").stat().st_size > 0


# -- MNISTKIT_LOAD_PLUGINS naming nothing installed ---------------------------------------------

@pytest.fixture(scope="module")
def good_site(tmp_path_factory) -> Path:
    return install_plugins(tmp_path_factory.mktemp("good-site"),
                           {"mnistkit-relgood": {"good": GOOD_PLUGIN}})


def plugin_names(proc: subprocess.CompletedProcess) -> list[str]:
    return [p["name"] for p in json.loads(proc.stdout)["plugins"]]


def test_unknown_names_are_one_warning_each_listing_the_installed(good_site):
    env = with_plugins(good_site, **{LOAD_PLUGINS_ENV: "nonexistent, good,adma,nonexistent"})
    proc = mnistkit("plugins", "--json", env=env)
    no_traceback(proc)
    assert proc.returncode == 0
    warnings = proc.stderr.splitlines()
    assert len(warnings) == 2, proc.stderr
    for name, line in zip(["nonexistent", "adma"], warnings, strict=True):
        assert line.startswith(f"warning: {LOAD_PLUGINS_ENV} names {name!r}, which matches no "
                               f"installed plugin; installed: "), line
        assert "good (mnistkit-relgood)" in line
    assert "good" in plugin_names(proc)  # the names that do match still load
    failed = json.loads(proc.stdout)["failed"]
    assert [f["name"] for f in failed] == ["nonexistent", "adma"]
    models = mnistkit("models", env=env)  # every command warns, and works
    assert models.returncode == 0 and len(models.stderr.splitlines()) == 2


@pytest.mark.parametrize("value", ["good", "mnistkit-relgood", "mnistkit_relgood",
                                   "MNISTKIT-RelGood", "builtins,good", " good , "])
def test_names_that_match_load_without_a_warning(good_site, value):
    proc = mnistkit("plugins", "--json", env=with_plugins(good_site,
                                                          **{LOAD_PLUGINS_ENV: value}))
    assert proc.returncode == 0 and proc.stderr == ""
    assert plugin_names(proc)[-1] == "good"


def test_the_library_reports_unknown_names_and_never_prints(monkeypatch, capsys):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "nonexistent")
    plugins = load_plugins()
    [problem] = [p for p in plugins.problems if p.plugin == "nonexistent"]
    assert problem.message().startswith(
        f"warning: {LOAD_PLUGINS_ENV} names 'nonexistent', which matches no installed plugin; ")
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    assert load_plugins().problems == []


def test_no_plugins_installed_says_so(monkeypatch):
    from importlib import metadata

    monkeypatch.setenv(LOAD_PLUGINS_ENV, "adam")
    monkeypatch.setattr(metadata, "entry_points", lambda **kwargs: [])
    [problem] = load_plugins().problems
    assert problem.message() == (f"warning: {LOAD_PLUGINS_ENV} names 'adam', which matches no "
                                 "installed plugin; no mnistkit plugins are installed")

