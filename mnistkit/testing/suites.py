"""Collecting checks: per factory, per plugin module, and as pytest cases."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mnistkit.testing._core import (
    OVERFIT_STEPS,
    Check,
    Subject,
    run_check,
)
from mnistkit.testing.augmentations import AUGMENTATION_FUNCS
from mnistkit.testing.datasets import DATASET_FUNCS
from mnistkit.testing.models import MODEL_FUNCS
from mnistkit.testing.optimizers import OPTIMIZER_FUNCS
from mnistkit.testing.recipes import RECIPE_FUNCS

_FUNCS = {"model": MODEL_FUNCS, "optimizer": OPTIMIZER_FUNCS, "dataset": DATASET_FUNCS,
          "augmentation": AUGMENTATION_FUNCS, "recipe": RECIPE_FUNCS}


def _checks_for(subject: Subject, skip: Iterable[str]) -> list[Check]:
    skipped = set(skip)
    funcs = _FUNCS[subject.kind]
    unknown = skipped - set(funcs)
    if unknown:
        raise ValueError(f"unknown {subject.kind} checks to skip: {sorted(unknown)}; "
                         f"known: {', '.join(funcs)}")
    subject.funcs, subject.skipped = dict(funcs), frozenset(skipped)
    return [Check(subject.kind, subject.name, name,
                  lambda name=name, f=f: run_check(subject, name, f))
            for name, f in funcs.items() if name not in skipped]


def model_checks(factory: Callable[..., Any], options_class: type | None = None, *,
                 name: str | None = None, options: Any = None, n_inputs: int = 784,
                 n_classes: int = 10, overfit_lr: float = 0.1,
                 overfit_steps: int = OVERFIT_STEPS, skip: Iterable[str] = ()) -> list[Check]:
    """The checks of a model factory ``factory(options, rng, n_inputs, n_classes)``
    (the last two passed by keyword).

    ``options`` (an instance or a dict of values) defaults to the class defaults; the
    ``option_gradients`` check varies it one field at a time.
    ``overfit_lr``/``overfit_steps`` tune the ``overfit`` check (sgd, momentum 0.9).
    """
    subject = Subject("model", name or _name_of(factory), factory, options_class, options,
                       n_inputs, n_classes, overfit_steps=overfit_steps, overfit_lr=overfit_lr)
    return _checks_for(subject, skip)


def optimizer_checks(factory: Callable[..., Any], options_class: type | None = None, *,
                     name: str | None = None, options: Any = None,
                     skip: Iterable[str] = ()) -> list[Check]:
    """The checks of an optimizer factory ``factory(params, options)``."""
    subject = Subject("optimizer", name or _name_of(factory), factory, options_class, options)
    return _checks_for(subject, skip)


def dataset_checks(factory: Callable[..., Any], options_class: type | None = None, *,
                   name: str | None = None, options: Any = None,
                   data_dir: str | Path | None = None, skip: Iterable[str] = ()) -> list[Check]:
    """The checks of a dataset factory ``factory(options, data_dir)``.

    ``data_dir`` is passed to the factory for the loading checks (``None``: the dataset's
    default location, which may download). The ``missing`` check always uses an empty
    temporary folder and expects :class:`mnistkit.errors.DataError`.
    """
    folder = Path(data_dir) if data_dir is not None else None
    subject = Subject("dataset", name or _name_of(factory), factory, options_class, options,
                       data_dir=folder)
    return _checks_for(subject, skip)


def augmentation_checks(factory: Callable[..., Any], options_class: type | None = None, *,
                        name: str | None = None, options: Any = None, identity: bool = False,
                        skip: Iterable[str] = ()) -> list[Check]:
    """The checks of an augmentation factory ``factory(options)`` whose result has
    ``distort(images, rng) -> images``.

    ``options`` (an instance or a dict of values) defaults to the class defaults.
    ``identity=True`` declares a distortion that changes nothing (like the built-in
    ``none``): the ``deterministic`` check then requires the images back unchanged
    instead of images that differ from seed to seed.
    """
    subject = Subject("augmentation", name or _name_of(factory), factory, options_class,
                      options, identity=identity)
    return _checks_for(subject, skip)


def recipe_checks(recipe: Any, *, name: str | None = None, registry: Any = None,
                  skip: Iterable[str] = ()) -> list[Check]:
    """The checks of a :class:`mnistkit.recipes.Recipe`: that it is one, and that the model,
    optimizer and augmentation it names are registered in ``registry`` (default: the
    installed plugins', looked up when the check runs), their options build and they can
    be constructed."""
    subject = Subject("recipe", name or "recipe", recipe, None, registry=registry)
    return _checks_for(subject, skip)


def _run(checks: list[Check]) -> None:
    for check in checks:
        check()


def check_model(factory: Callable[..., Any], options_class: type | None = None,
                **kwargs: Any) -> None:
    """Run every model check; ``AssertionError`` at the first failure. See :func:`model_checks`."""
    _run(model_checks(factory, options_class, **kwargs))


def check_optimizer(factory: Callable[..., Any], options_class: type | None = None,
                    **kwargs: Any) -> None:
    """Run every optimizer check. See :func:`optimizer_checks`."""
    _run(optimizer_checks(factory, options_class, **kwargs))


def check_dataset(factory: Callable[..., Any], options_class: type | None = None,
                  **kwargs: Any) -> None:
    """Run every dataset check. See :func:`dataset_checks`."""
    _run(dataset_checks(factory, options_class, **kwargs))


def check_augmentation(target: Any, options_class: type | None = None,
                       **kwargs: Any) -> None:
    """Run every augmentation check of a factory (with ``options_class``), a registered
    name (looked up in the installed plugins, or in ``registry=``) or a registry entry.
    See :func:`augmentation_checks` for ``options``, ``identity`` and ``skip``."""
    _run(collect_checks(target, kind="augmentation", options_class=options_class, **kwargs))


def check_recipe(target: Any, **kwargs: Any) -> None:
    """Run every recipe check of a :class:`~mnistkit.recipes.Recipe`, a registered name or
    a registry entry. See :func:`recipe_checks` for ``registry`` and ``skip``."""
    _run(collect_checks(target, kind="recipe", **kwargs))


def _name_of(factory: Any) -> str:
    return getattr(factory, "__name__", type(factory).__name__)




def _entry_checks(entry: Any, data_dirs: dict[str, Any], skip: dict[str, Iterable[str]],
                  settings: dict[str, dict[str, Any]], registry: Any) -> list[Check]:
    extra = dict(settings.get(entry.name, {}))
    names_to_skip = skip.get(entry.name, ())
    if entry.kind == "augmentation":
        return augmentation_checks(entry.factory, entry.options, name=entry.name,
                                   skip=names_to_skip, **extra)
    if entry.kind == "recipe":
        extra.setdefault("registry", registry)
        return recipe_checks(entry.factory, name=entry.name, skip=names_to_skip, **extra)
    if entry.kind == "model":
        return model_checks(entry.factory, entry.options, name=entry.name, skip=names_to_skip,
                            **extra)
    if entry.kind == "optimizer":
        return optimizer_checks(entry.factory, entry.options, name=entry.name,
                                skip=names_to_skip, **extra)
    return dataset_checks(entry.factory, entry.options, name=entry.name,
                          data_dir=data_dirs.get(entry.name), skip=names_to_skip, **extra)


def plugin_checks(module: Any, *, data_dirs: dict[str, Any] | None = None,
                  skip: dict[str, Iterable[str]] | None = None,
                  settings: dict[str, dict[str, Any]] | None = None) -> list[Check]:
    """The checks of everything the plugin ``module`` registers, plus the plugin itself.

    The module is loaded in-process next to the built-ins only (installed plugins are
    ignored). ``data_dirs`` maps a dataset name to the folder its loading checks use;
    ``skip`` maps a registered name to check names to leave out; ``settings`` maps a
    name to extra keyword arguments of :func:`model_checks` and friends:
    ``{"mlp": {"options": {"layers": "64,32"}}}`` runs the checks of ``mlp`` with those
    option values instead of the defaults, ``{"mlp": {"overfit_lr": 0.01}}`` tunes one,
    ``{"none": {"identity": True}}`` is for :func:`augmentation_checks`.

    A recipe's names are looked up next to the built-ins and the module's own
    registrations; for one that uses another plugin's model, pass
    ``settings={"recipe-name": {"registry": mnistkit.plugins.get_registry()}}``.
    """
    from mnistkit import builtins
    from mnistkit.plugins import BUILTIN_NAME, load_plugins

    if module is builtins:  # already registered first, under its own name
        plugins, plugin_name = load_plugins(entry_points=False), BUILTIN_NAME
    else:
        plugins = load_plugins(extra=[module], entry_points=False)
        plugin_name = getattr(module, "__name__", None) or type(module).__name__
    target = plugin_name.rsplit(".", 1)[-1]

    def plugin_loads() -> None:
        mine = [p for p in plugins.problems if p.plugin == plugin_name]
        if mine:
            raise AssertionError(f"plugin {target!r} failed check 'plugin': {mine[0].error}\n"
                                 "  How to fix: run the hooks by hand; registrations must have"
                                 " lower-case names, callable factories and valid options")
        hooks = [h.name for h in plugins.manager.get_hookcallers(module) or []]
        if not hooks:
            raise AssertionError(f"plugin {target!r} failed check 'plugin': it implements no "
                                 "mnistkit hook\n  How to fix: decorate functions named like "
                                 "the hook specifications with @mnistkit.hookimpl")

    checks = [Check("plugin", target, "plugin", plugin_loads)]
    hooks = {h.name for h in plugins.manager.get_hookcallers(module) or []}
    if "mnistkit_register_commands" in hooks:
        checks.append(Check("plugin", target, "commands",
                            lambda: _check_commands(module, target, plugin_name)))
    for kind in ("model", "optimizer", "dataset", "augmentation", "recipe"):
        for entry in plugins.registry.entries(kind):
            if entry.plugin == plugin_name:
                checks += _entry_checks(entry, data_dirs or {}, skip or {}, settings or {},
                                        plugins.registry)
    return checks


def _check_commands(module: Any, target: str, plugin_name: str) -> None:
    from click.testing import CliRunner

    from mnistkit import builtins
    from mnistkit.cli import build_cli
    from mnistkit.plugins import load_plugins

    base = set(build_cli(load_plugins(entry_points=False)).commands)
    plugins = load_plugins(extra=[] if module is builtins else [module], entry_points=False)
    cli = build_cli(plugins)
    added = plugins.commands_of(plugin_name)  # what its hook added (or replaced)
    if not added:
        raise AssertionError(f"plugin {target!r} failed check 'commands': "
                             "mnistkit_register_commands added no command\n  How to fix: call "
                             "cli.add_command(command)")
    clashes = sorted(set(added) & base)
    if clashes:
        raise AssertionError(f"plugin {target!r} failed check 'commands': it replaces the "
                             f"built-in command {clashes[0]!r}\n  How to fix: give your "
                             "command a name of its own")
    for name in added:
        command = cli.commands[name]
        if not (command.help or "").strip():
            raise AssertionError(f"plugin {target!r} failed check 'commands': command {name!r} "
                                 "has no help text\n  How to fix: give it a docstring with an "
                                 "'Example:' block")
        result = CliRunner().invoke(cli, [name, "--help"])
        if result.exit_code != 0:
            raise AssertionError(f"plugin {target!r} failed check 'commands': "
                                 f"'mnistkit {name} --help' exited {result.exit_code}: "
                                 f"{result.output.strip()[-300:]}")


def check_plugin(module: Any, **kwargs: Any) -> None:
    """Run every check of a plugin module. See :func:`plugin_checks` for the arguments."""
    _run(plugin_checks(module, **kwargs))


def conformance_cases(target: Any, *, kind: str | None = None,
                      options_class: type | None = None, **kwargs: Any) -> list[Any]:
    """``pytest.param`` cases, one per check, for ``pytest.mark.parametrize("check", ...)``.

    ``target`` is a plugin module (see :func:`plugin_checks` for ``data_dirs``, ``skip``,
    ``settings``), a ``mnistkit.registry.Entry``, a registered name (with ``kind``; looked
    up in the installed plugins, or in ``registry=``), a factory (with ``kind`` and
    ``options_class``; other keyword arguments go to :func:`model_checks` and friends), or
    a :class:`mnistkit.recipes.Recipe`. Each case's id is ``kind:name:check``.
    """
    import pytest

    checks = collect_checks(target, kind=kind, options_class=options_class, **kwargs)
    return [pytest.param(c, id=c.id) for c in checks]


def collect_checks(target: Any, *, kind: str | None = None,
                   options_class: type | None = None, **kwargs: Any) -> list[Check]:
    """The :class:`Check` list for ``target`` (see :func:`conformance_cases`)."""
    import inspect

    from mnistkit.recipes import Recipe
    from mnistkit.registry import Entry

    if inspect.ismodule(target):
        return plugin_checks(target, **kwargs)
    registry = kwargs.pop("registry", None)
    if isinstance(target, str):
        if kind is None:
            raise ValueError("give kind='model', 'optimizer', 'dataset', 'augmentation' or "
                             "'recipe' with a name")
        if registry is None:
            from mnistkit.plugins import get_registry

            registry = get_registry()
        target = registry.get(kind, target)
    if isinstance(target, Entry):
        kwargs.setdefault("name", target.name)
        kind, options_class, target = target.kind, target.options, target.factory
    if isinstance(target, Recipe) or kind == "recipe":
        if options_class is not None:
            raise ValueError("a recipe has no options_class")
        return recipe_checks(target, registry=registry, **kwargs)
    builders = {"model": model_checks, "optimizer": optimizer_checks, "dataset": dataset_checks,
                "augmentation": augmentation_checks}
    if kind not in builders:
        raise ValueError(f"kind must be one of {', '.join([*builders, 'recipe'])}; got "
                         f"{kind!r}")
    return builders[kind](target, options_class, **kwargs)


