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


def test_augmentations_listing_has_options_with_defaults():
    listing = json.loads(run("augmentations", "--json").stdout)
    items = {i["name"]: i for i in listing["items"]}
    assert {"none", "elastic", "affine"} <= set(items)
    elastic = {o["name"]: o for o in items["elastic"]["options"]}
    assert elastic["sigma"]["type"] == "float" and elastic["sigma"]["default"] == 4.0
    assert elastic["alpha"]["default"] == 34.0
    assert items["none"]["options"] == [] and items["none"]["plugin"] == "builtins"
    out = run("augmentations").stdout
    assert "Augmentations" in out and "sigma: float = 4.0" in out and "rotation" in out


def test_recipes_json_is_a_list_with_settings_and_the_command():
    from mnistkit.recipes import BUILTIN_RECIPES

    records = json.loads(run("recipes", "--json").stdout)
    assert isinstance(records, list)
    by_name = {r["name"]: r for r in records}
    assert set(BUILTIN_RECIPES) <= set(by_name)
    elastic = by_name["simard2003-elastic"]
    assert set(elastic) == {"name", "title", "source", "published_error", "plugin", "notes",
                            "settings", "command"}
    assert elastic["published_error"] == 0.7 and "Simard" in elastic["source"]
    assert elastic["plugin"] == "builtins"
    assert elastic["command"] == "mnistkit train --recipe simard2003-elastic"
    assert elastic["settings"] == json.loads(json.dumps(
        BUILTIN_RECIPES["simard2003-elastic"].settings()))
    assert elastic["settings"]["augment"] == "elastic"
    assert elastic["settings"]["model_options"] == {"hidden_size": 800}
    assert by_name["mnistkit-default"]["published_error"] is None


def test_recipes_table():
    out = run("recipes").stdout
    assert "simard2003-elastic" in out and "0.7%" in out and "ICDAR 2003" in out
    default_row = next(line for line in out.splitlines() if "mnistkit-default" in line)
    assert " - " in default_row
    assert "mnistkit train --recipe NAME" in out


def test_plugins_lists_augmentations_and_recipes():
    builtin = json.loads(run("plugins", "--json").stdout)["plugins"][0]
    assert {"mnistkit_register_augmentations", "mnistkit_register_recipes"} <= set(
        builtin["hooks"])
    assert builtin["registers"]["augmentation"] == ["affine", "elastic", "none"]
    assert "simard2003-elastic" in builtin["registers"]["recipe"]
    out = run("plugins").stdout
    assert "augmentations: affine, elastic, none" in out and "recipes: blog2017" in out


def test_a_plugins_recipe_and_augmentation_are_listed_with_the_plugin():
    import types

    from mnistkit import hookimpl
    from mnistkit.augment import NoAugmentation
    from mnistkit.recipes import Recipe

    module = types.ModuleType("listing_kinds_plugin")
    module.mnistkit_register_augmentations = hookimpl(
        lambda register: register("same", NoAugmentation, help="changes nothing"))
    module.mnistkit_register_recipes = hookimpl(lambda register: register(
        "tiny", Recipe("Tiny", "nowhere", 12.5, epochs=2), help="x"))
    cli = build_cli(load_plugins([module], entry_points=False))
    result = CliRunner().invoke(cli, ["recipes", "--json"], catch_exceptions=False)
    tiny = next(r for r in json.loads(result.stdout) if r["name"] == "tiny")
    assert tiny["plugin"] == "listing_kinds_plugin" and tiny["published_error"] == 12.5
    assert tiny["settings"]["epochs"] == 2
    result = CliRunner().invoke(cli, ["augmentations"], catch_exceptions=False)
    assert "same" in result.stdout and "listing_kinds_plugin" in result.stdout


def test_plugins_lists_the_commands_each_plugin_adds():
    mnistkit_compare = pytest.importorskip("mnistkit_compare")
    cli = build_cli(load_plugins([mnistkit_compare], entry_points=False))
    result = CliRunner().invoke(cli, ["plugins", "--json"], catch_exceptions=False)
    records = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert records["mnistkit_compare"]["registers"] == {"command": ["compare"]}
    assert "command" not in records["builtins"]["registers"]
    table = CliRunner().invoke(cli, ["plugins"], catch_exceptions=False).stdout
    row = next(line for line in table.splitlines() if "mnistkit_compare" in line)
    assert "commands: compare" in row
