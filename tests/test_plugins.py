"""The plugin manager: in-process plugins, failure isolation, conflicts, entry points."""

import dataclasses
import inspect
import json
import types
from importlib import metadata

import click
import pytest
from click.testing import CliRunner

from mnistkit import hookimpl, hookspecs
from mnistkit.cli import build_cli
from mnistkit.errors import PluginError, UnknownNameError
from mnistkit.plugins import load_plugins


@dataclasses.dataclass
class TinyOptions:
    width: int = 3


class TinyModel:
    def __init__(self, options, rng, n_inputs, n_classes):
        self.params = {}


def make_plugin(name, models=(), raise_in=None, commands=()):
    """A plugin module registering ``models``; raising in hook ``raise_in``."""
    module = types.ModuleType(name)

    @hookimpl
    def mnistkit_register_models(register):
        for model in models:
            register(model, TinyModel, options=TinyOptions, help=f"{model} from {name}")
        if raise_in == "models":
            raise RuntimeError(f"{name} exploded\nsecond line")

    @hookimpl
    def mnistkit_register_commands(cli):
        for command in commands:
            cli.add_command(command)
        if raise_in == "commands":
            raise ValueError("no commands today")

    module.mnistkit_register_models = mnistkit_register_models
    module.mnistkit_register_commands = mnistkit_register_commands
    return module


def run(cli, *args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_builtins_register_through_the_hooks():
    plugins = load_plugins(entry_points=False)
    assert {"twolayer", "softmax"} <= set(plugins.registry.names("model"))
    assert "sgd" in plugins.registry.names("optimizer")
    assert "mnist" in plugins.registry.names("dataset")
    assert plugins.problems == []
    builtin = plugins.info()[0]
    assert builtin.name == "builtins" and builtin.distribution == "mnistkit"
    assert "mnistkit_register_models" in builtin.hooks


def test_in_process_plugin_registers_models():
    plugins = load_plugins(extra=[make_plugin("extra_one", models=["tiny"])],
                           entry_points=False)
    entry = plugins.registry.get("model", "tiny")
    assert entry.plugin == "extra_one" and entry.help == "tiny from extra_one"
    assert entry.make_options({"width": "5"}) == TinyOptions(5)
    assert plugins.registrations("extra_one") == {"model": ["tiny"]}


def test_a_plugin_raising_in_a_hook_is_isolated_and_named():
    broken = make_plugin("broken_one", models=["halfway"], raise_in="models")
    good = make_plugin("good_one", models=["fine"])
    plugins = load_plugins(extra=[broken, good], entry_points=False)
    assert plugins.registry.get("model", "fine").plugin == "good_one"
    assert "twolayer" in plugins.registry.names("model")
    [problem] = plugins.problems
    assert problem.plugin == "broken_one"
    assert problem.hook == "mnistkit_register_models"
    assert problem.message() == (
        "warning: plugin 'broken_one' from mnistkit: its hook mnistkit_register_models failed "
        "and was skipped (RuntimeError: broken_one exploded); its other hooks are loaded")


def test_a_plugin_raising_in_register_commands_is_isolated():
    @click.command("hello")
    def hello():
        """Say hello.

        \b
        Example:
          mnistkit hello
        """
        click.echo("hello there")

    plugins = load_plugins(extra=[make_plugin("cmds_bad", raise_in="commands"),
                                  make_plugin("cmds_good", commands=[hello])],
                           entry_points=False)
    cli = build_cli(plugins)
    result = run(cli, "hello")
    assert result.exit_code == 0 and result.stdout == "hello there\n"
    assert result.stderr.strip() == (
        "warning: plugin 'cmds_bad' from mnistkit: its hook mnistkit_register_commands failed "
        "and was skipped (ValueError: no commands today); its other hooks are loaded")


def test_two_plugins_registering_one_name_conflict_clearly():
    plugins = load_plugins(extra=[make_plugin("first_pkg", models=["same", "a"]),
                                  make_plugin("second_pkg", models=["same", "b"])],
                           entry_points=False)
    with pytest.raises(PluginError, match="model 'same' is registered by more than one "
                                          "plugin: first_pkg and second_pkg"):
        plugins.registry.get("model", "same")
    assert plugins.registry.get("model", "a").plugin == "first_pkg"
    assert plugins.registry.get("model", "b").plugin == "second_pkg"
    cli = build_cli(plugins)
    listing = run(cli, "models", "--json")
    assert listing.exit_code == 0
    assert json.loads(listing.stdout)["conflicts"] == {"same": ["first_pkg", "second_pkg"]}
    table = run(cli, "models")
    assert table.exit_code == 0 and "registered by first_pkg and second_pkg" in table.stdout
    assert plugins.registrations("second_pkg") == {"model": ["b", "same"]}


def test_a_plugin_shadowing_a_builtin_is_a_conflict_too():
    plugins = load_plugins(extra=[make_plugin("shadow", models=["twolayer"])],
                           entry_points=False)
    with pytest.raises(PluginError, match="builtins and shadow"):
        plugins.registry.get("model", "twolayer")


def test_a_malformed_registration_is_reported_as_a_problem():
    plugins = load_plugins(extra=[make_plugin("badname", models=["Bad Name"])],
                           entry_points=False)
    [problem] = plugins.problems
    assert problem.plugin == "badname" and "use lower case letters" in problem.error


def test_unknown_name_suggests_the_closest():
    plugins = load_plugins(entry_points=False)
    with pytest.raises(UnknownNameError, match="Did you mean 'twolayer'"):
        plugins.registry.get("model", "twolayr")


# -- entry points -------------------------------------------------------------------------

class FakeDist:
    def __init__(self, name, version):
        self.name, self.version = name, version


class FakeEntryPoint:
    def __init__(self, name, dist, target=None, error=None):
        self.name, self.dist, self._target, self._error = name, dist, target, error
        self.group = "mnistkit"

    def load(self):
        if self._error is not None:
            raise self._error
        return self._target


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Installed 'distributions': one that loads fine and one whose import fails."""
    points = [
        FakeEntryPoint("good", FakeDist("mnistkit-good", "1.2.3"),
                       target=make_plugin("good_module", models=["goodnet"])),
        FakeEntryPoint("broken", FakeDist("mnistkit-broken", "0.0.1"),
                       error=ImportError("No module named 'numpyy'")),
    ]

    def entry_points(**params):
        assert params == {"group": "mnistkit"}
        return points

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    monkeypatch.delenv("MNISTKIT_LOAD_PLUGINS", raising=False)
    return points


def test_a_broken_entry_point_is_a_warning_and_everything_else_works(fake_entry_points):
    plugins = load_plugins()
    assert plugins.registry.get("model", "goodnet").plugin == "good"
    [problem] = plugins.problems
    assert (problem.plugin, problem.distribution) == ("broken", "mnistkit-broken")
    cli = build_cli(plugins)
    for args in (["models"], ["optimizers"], ["datasets", "--json"], ["plugins"]):
        result = run(cli, *args)
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines() == [
            "warning: plugin 'broken' from mnistkit-broken was skipped: "
            "ImportError: No module named 'numpyy'"]
    inspected = run(cli, "inspect", "--json")
    assert inspected.exit_code == 0 and json.loads(inspected.stdout)["splits"]["test"]["count"]
    listing = json.loads(run(cli, "plugins", "--json").stdout)
    good = next(p for p in listing["plugins"] if p["name"] == "good")
    assert (good["distribution"], good["version"]) == ("mnistkit-good", "1.2.3")
    assert good["registers"] == {"model": ["goodnet"]}
    assert listing["failed"] == [{"name": "broken", "distribution": "mnistkit-broken",
                                  "error": "ImportError: No module named 'numpyy'"}]


def test_load_plugins_env_empty_loads_no_external_plugins(fake_entry_points, monkeypatch):
    monkeypatch.setenv("MNISTKIT_LOAD_PLUGINS", "")
    plugins = load_plugins()
    assert [p.name for p in plugins.info()] == ["builtins"]
    assert plugins.problems == [] and "goodnet" not in plugins.registry.names("model")


@pytest.mark.parametrize("allowed", ["good", "mnistkit-good", " good , other "])
def test_load_plugins_env_selects_by_entry_point_or_distribution(fake_entry_points,
                                                                 monkeypatch, allowed):
    monkeypatch.setenv("MNISTKIT_LOAD_PLUGINS", allowed)
    plugins = load_plugins()
    assert [p.name for p in plugins.info()] == ["builtins", "good"]
    # a name that matches nothing installed is reported (tests/reliability/test_rel_defects.py)
    assert [p.plugin for p in plugins.problems] == (["other"] if "other" in allowed else [])


def test_entry_points_false_skips_installed_plugins(fake_entry_points):
    plugins = load_plugins(entry_points=False)
    assert [p.name for p in plugins.info()] == ["builtins"]


# -- hook specifications -------------------------------------------------------------------

def test_every_hookspec_has_a_docstring():
    specs = [obj for name, obj in vars(hookspecs).items()
             if callable(obj) and hasattr(obj, "mnistkit_spec")]
    assert {s.__name__ for s in specs} >= {
        "mnistkit_register_models", "mnistkit_register_optimizers",
        "mnistkit_register_datasets", "mnistkit_register_commands"}
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert len(doc) > 40, f"{spec.__name__} needs a docstring"


def test_hookimpl_is_exported_for_plugin_authors():
    import mnistkit

    assert mnistkit.hookimpl is hookspecs.hookimpl


def test_hooks_run_in_registration_order_builtins_first():
    plugins = load_plugins(extra=[make_plugin("later_one", models=["zz"])], entry_points=False)
    calls = [i.plugin_name for i in plugins.manager.hook.mnistkit_register_models.get_hookimpls()]
    assert calls[0] == "builtins" and calls[-1] == "later_one"


def test_building_the_cli_twice_reports_a_problem_once():
    plugins = load_plugins(extra=[make_plugin("cmds_bad", raise_in="commands")],
                           entry_points=False)
    build_cli(plugins)
    result = run(build_cli(plugins), "models")
    assert len(result.stderr.splitlines()) == 1 and len(plugins.problems) == 1


def test_an_unknown_command_names_the_plugins_that_failed_to_load():
    plugins = load_plugins(extra=[make_plugin("cmds_bad", raise_in="commands")],
                           entry_points=False)
    result = run(build_cli(plugins), "hello")
    assert result.exit_code == 2
    assert "No such command 'hello'" in result.stderr
    assert "plugin 'cmds_bad' from mnistkit: ValueError: no commands today" in result.stderr
    clean = run(build_cli(load_plugins(entry_points=False)), "hello")
    assert clean.exit_code == 2 and "plugin" not in clean.stderr


def test_the_commands_a_plugin_adds_are_attributed_to_it():
    @click.command("hello")
    def hello():
        """Say hello."""

    @click.command("bye")
    def bye():
        """Say bye."""

    @click.command("models")
    def my_models():
        """Replace the built-in listing."""

    plugins = load_plugins(extra=[make_plugin("cmds_good", models=["tiny"], commands=[hello]),
                                  make_plugin("cmds_half", commands=[bye], raise_in="commands"),
                                  make_plugin("cmds_shadow", commands=[my_models])],
                           entry_points=False)
    assert plugins.registrations("cmds_good") == {"model": ["tiny"]}  # no command line yet
    build_cli(plugins)
    assert plugins.registrations("cmds_good") == {"model": ["tiny"], "command": ["hello"]}
    assert plugins.commands_of("cmds_half") == ["bye"]  # added before its hook failed
    assert plugins.commands_of("cmds_shadow") == ["models"]  # replaced a built-in one
    assert "command" not in plugins.registrations("builtins")
    build_cli(plugins)  # built again: the same, not doubled
    assert plugins.commands_of("cmds_good") == ["hello"]


def test_current_registry_is_the_command_lines_inside_a_command():
    from mnistkit.plugins import current_registry, get_registry

    @click.command("names")
    def names():
        """List the models of the running command line."""
        click.echo(",".join(current_registry().names("model")))

    plugins = load_plugins(extra=[make_plugin("with_names", models=["only-here"],
                                              commands=[names])], entry_points=False)
    result = run(build_cli(plugins), "names")
    assert result.exit_code == 0 and "only-here" in result.stdout.split(",")
    assert current_registry() is get_registry()  # outside a command
