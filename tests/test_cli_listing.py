"""``plugins``, ``models``, ``optimizers``, ``datasets``, ``--help`` and ``--version``."""

import json
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mnistkit import __version__
from mnistkit.cli import build_cli
from mnistkit.plugins import load_plugins

CLI = build_cli(load_plugins(entry_points=False))


def run(*args):
    result = CliRunner().invoke(CLI, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_plugins_json_lists_the_builtins():
    listing = json.loads(run("plugins", "--json").stdout)
    builtin = listing["plugins"][0]
    assert builtin["name"] == "builtins" and builtin["distribution"] == "mnistkit"
    assert builtin["version"] == __version__
    assert {"mnistkit_register_models", "mnistkit_register_optimizers",
            "mnistkit_register_datasets"} <= set(builtin["hooks"])
    assert {"twolayer", "softmax"} <= set(builtin["registers"]["model"])
    assert "sgd" in builtin["registers"]["optimizer"]
    assert "mnist" in builtin["registers"]["dataset"]
    assert listing["failed"] == []


def test_plugins_table():
    out = run("plugins").stdout
    assert "builtins" in out and "mnistkit" in out and "register_models" in out


def test_models_json_has_options_with_defaults():
    items = {i["name"]: i for i in json.loads(run("models", "--json").stdout)["items"]}
    twolayer = items["twolayer"]
    assert twolayer["plugin"] == "builtins" and twolayer["distribution"] == "mnistkit"
    assert twolayer["help"]
    options = {o["name"]: o for o in twolayer["options"]}
    assert options["hidden_size"]["type"] == "int" and options["hidden_size"]["default"] == 256
    assert "softmax" in items


def test_models_table():
    out = run("models").stdout
    assert "twolayer" in out and "hidden_size: int = 256" in out and "builtins" in out


def test_optimizers_listing():
    items = {i["name"]: i for i in json.loads(run("optimizers", "--json").stdout)["items"]}
    assert "lr" in {o["name"] for o in items["sgd"]["options"]}
    assert "sgd" in run("optimizers").stdout


def test_datasets_listing():
    listing = json.loads(run("datasets", "--json").stdout)
    mnist = next(i for i in listing["items"] if i["name"] == "mnist")
    assert mnist["plugin"] == "builtins" and "MNIST" in mnist["help"]
    assert listing["conflicts"] == {}
    assert "mnist" in run("datasets").stdout


@pytest.mark.parametrize("name", sorted(CLI.commands))
def test_every_command_help_has_an_example(name):
    out = run(name, "--help").stdout
    assert "Example" in out and f"mnistkit {name}" in out
    short = CLI.commands[name].get_short_help_str(limit=80)
    assert short and not short.endswith("..."), f"{name}: first help line too long"


def test_top_level_help_and_version():
    assert "inspect" in run("--help").stdout
    assert run("--version").stdout.strip() == f"mnistkit, version {__version__}"


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from mnistkit.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('matplotlib', 'rich.table', 'mnistkit.data.idx') "
            "if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"MNISTKIT_LOAD_PLUGINS": "", "PATH": ""},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)).stdout
    assert out.strip().endswith("HEAVY []")
