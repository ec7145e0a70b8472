"""The plugin manager: built-ins first, then the ``mnistkit`` entry-point group.

Built-in models, optimizers and datasets are registered through the very same hooks
as third-party ones (``mnistkit.builtins``). A plugin that fails to import, or raises
inside a hook, is skipped and recorded as a :class:`PluginProblem`; everything else
keeps working. ``MNISTKIT_LOAD_PLUGINS`` (comma-separated entry-point or
distribution names, compared as pip compares them) limits which external plugins load;
set it empty for none. A name there that matches no installed plugin is a problem too.

The public ways to reach the plugins and their registry (stable for plugin authors):
:func:`current_registry` / :func:`current_plugins` inside a command (the plugins the
command line was built with), :func:`get_registry` / :func:`get_plugins` anywhere else
(the installed plugins, loaded once), :func:`load_plugins` for a fresh set (tests).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable
from importlib import metadata
from typing import Any

import pluggy

from mnistkit import hookspecs
from mnistkit.registry import KINDS, Registry

ENTRY_POINT_GROUP = "mnistkit"
LOAD_PLUGINS_ENV = "MNISTKIT_LOAD_PLUGINS"
BUILTIN_NAME = "builtins"

_HOOK_OF_KIND = {
    "model": "mnistkit_register_models",
    "optimizer": "mnistkit_register_optimizers",
    "dataset": "mnistkit_register_datasets",
    "augmentation": "mnistkit_register_augmentations",
    "recipe": "mnistkit_register_recipes",
}


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its name, distribution, version and implemented hooks."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be loaded or failed in a hook."""

    plugin: str
    distribution: str
    error: str
    hook: str | None = None  # the hook that raised; None when the plugin did not load

    def message(self) -> str:
        """One line for stderr naming the distribution, the failed hook and the error."""
        if self.distribution == LOAD_PLUGINS_ENV:  # a name that matches nothing installed
            return f"warning: {LOAD_PLUGINS_ENV} names {self.plugin!r}, which {self.error}"
        if self.hook is not None:
            return (f"warning: plugin {self.plugin!r} from {self.distribution}: its hook "
                    f"{self.hook} failed and was skipped ({self.error}); its other hooks "
                    "are loaded")
        return (
            f"warning: plugin {self.plugin!r} from {self.distribution} was skipped: {self.error}"
        )


class Plugins:
    """Loaded plugins, their registrations and the problems met while loading them."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.registry = Registry()
        self.problems: list[PluginProblem] = []
        self._dists: dict[str, tuple[str, str]] = {}
        self._commands: dict[str, list[str]] = {}  # plugin -> commands its hook added

    def info(self) -> list[PluginInfo]:
        """The loaded plugins (built-ins first), with the hooks each implements."""
        result = []
        for name, plugin in self.manager.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted(h.name for h in self.manager.get_hookcallers(plugin) or []))
            dist, version = self._dists.get(name, ("mnistkit", _version("mnistkit")))
            result.append(PluginInfo(name, dist, version, hooks))
        return result

    def registrations(self, plugin: str) -> dict[str, list[str]]:
        """``{"model": [...], "optimizer": [...], ..., "command": [...]}`` registered by
        ``plugin``: the names of each kind, and the commands its
        ``mnistkit_register_commands`` added (known once the command line is built,
        :meth:`call_register_commands`)."""
        result: dict[str, list[str]] = {}
        for kind in KINDS:
            names = [e.name for e in self.registry.entries(kind) if e.plugin == plugin]
            names += [n for (k, n), owners in self.registry.conflicts().items()
                      if k == kind and plugin in owners and n not in names]
            if names:
                result[kind] = sorted(names)
        if self._commands.get(plugin):
            result["command"] = list(self._commands[plugin])
        return result

    def commands_of(self, plugin: str) -> list[str]:
        """The commands ``plugin`` added to the command line last built (sorted)."""
        return list(self._commands.get(plugin, []))

    def distribution_of(self, plugin: str) -> str:
        """The distribution that provides ``plugin`` (``mnistkit`` for the built-ins)."""
        return self._dists.get(plugin, ("mnistkit", ""))[0]

    def call_register_commands(self, cli: Any) -> None:
        """Let every plugin add its commands to ``cli``; failures become problems.

        Each plugin's commands are those its hook added or replaced in ``cli`` (compared
        before and after the call, so a hook that fails half-way keeps what it added):
        :meth:`registrations` lists them."""
        self._commands = {}

        def watched(name: str, call: Callable[[], Any]) -> None:
            before = dict(cli.commands)
            try:
                call()
            finally:
                added = sorted(n for n, c in cli.commands.items() if before.get(n) is not c)
                if added:
                    self._commands[name] = added

        self._call_each("mnistkit_register_commands", lambda _name: {"cli": cli},
                        around=watched)

    def _call_each(self, hook_name: str, kwargs_for: Any,
                   around: Callable[[str, Callable[[], Any]], None] | None = None) -> None:
        caller = getattr(self.manager.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            name = impl.plugin_name

            def call(impl: Any = impl, name: str = name) -> Any:
                return impl.function(**kwargs_for(name))

            try:
                if around is None:
                    call()
                else:
                    around(name, call)
            except Exception as exc:  # a broken plugin must not break mnistkit
                self._problem(name, exc, hook=hook_name)

    def _problem(self, name: str, exc: BaseException, hook: str | None = None) -> None:
        from mnistkit.contracts import exception_line  # imports NumPy: only on failure

        dist = self._dists.get(name, ("mnistkit", ""))[0]
        problem = PluginProblem(name, dist, exception_line(exc), hook)
        if problem not in self.problems:  # build_cli may call the command hook again
            self.problems.append(problem)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        from mnistkit import __version__

        return __version__ if dist == "mnistkit" else "unknown"


def _allowed_plugins() -> list[str] | None:
    """The names in ``MNISTKIT_LOAD_PLUGINS``, in order (``None`` when it is not set)."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    names = [part.strip() for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(names))


def _normalise(name: str) -> str:
    """A distribution or entry-point name compared as pip does: case, ``-``, ``_`` and ``.``
    do not matter (``mnistkit_adam`` is ``mnistkit-adam``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_plugins(extra: list[Any] | None = None, *, entry_points: bool = True) -> Plugins:
    """Build a fresh :class:`Plugins`: built-ins, ``extra`` objects, then entry points.

    ``extra`` registers plugin modules or objects in-process (for tests);
    ``entry_points=False`` skips the installed third-party plugins.
    """
    from mnistkit import builtins

    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager)
    manager.register(builtins, name=BUILTIN_NAME)
    for index, obj in enumerate(extra or []):
        name = getattr(obj, "__name__", None) or f"{type(obj).__name__}-{index}"
        manager.register(obj, name=name)
    if entry_points:
        _load_entry_points(plugins)
    for kind, hook_name in _HOOK_OF_KIND.items():
        plugins._call_each(hook_name, lambda name, kind=kind: {
            "register": plugins.registry.register_callback(kind, name)})
    return plugins


def _load_entry_points(plugins: Plugins) -> None:
    allowed = _allowed_plugins()
    wanted = None if allowed is None else {_normalise(name) for name in allowed}
    installed = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    if allowed is not None:
        _report_unknown_names(plugins, allowed, installed)
    for ep in installed:
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        version = ep.dist.version if ep.dist is not None else "unknown"
        if wanted is not None and not {_normalise(ep.name), _normalise(dist)} & wanted:
            continue
        if plugins.manager.has_plugin(ep.name):
            continue
        plugins._dists[ep.name] = (dist, version)
        try:
            obj = ep.load()
            plugins.manager.register(obj, name=ep.name)
        except Exception as exc:  # ImportError, SyntaxError, pluggy validation errors...
            plugins._problem(ep.name, exc)


def _report_unknown_names(plugins: Plugins, names: list[str], installed: list[Any]) -> None:
    """One problem per name of ``MNISTKIT_LOAD_PLUGINS`` that matches no installed plugin
    (neither an entry-point name nor a distribution), listing the installed ones."""
    known = {BUILTIN_NAME, "mnistkit"}  # always loaded: naming them is harmless
    listed: list[str] = []
    for ep in installed:
        dist = ep.dist.name if ep.dist is not None else None
        known.update(_normalise(n) for n in (ep.name, dist) if n)
        entry = f"{ep.name} ({dist})" if dist else ep.name
        if entry not in listed:
            listed.append(entry)
    choices = (f"installed: {', '.join(sorted(listed))}" if listed
               else "no mnistkit plugins are installed")
    for name in names:
        if _normalise(name) not in known:
            plugins.problems.append(PluginProblem(
                name, LOAD_PLUGINS_ENV, f"matches no installed plugin; {choices}"))


@functools.lru_cache(maxsize=1)
def get_plugins() -> Plugins:
    """The process-wide plugins (built-ins and the installed ones), loaded once on first
    use. Stable API."""
    return load_plugins()


def get_registry() -> Registry:
    """The process-wide registry of models, optimizers, datasets, augmentations and
    recipes: ``get_plugins().registry``. Stable API."""
    return get_plugins().registry


def current_plugins() -> Plugins:
    """The plugins of the running ``mnistkit`` command: the :class:`Plugins` the command
    line was built with (``mnistkit.cli.build_cli(plugins)``, kept as the ``obj`` of the
    top-level Click context), else, outside a command, :func:`get_plugins`. Stable API:
    what a plugin's command uses."""
    import click  # a dependency of mnistkit; imported here, plugins.py stays light

    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if isinstance(ctx.obj, Plugins):
            return ctx.obj
        ctx = ctx.parent
    return get_plugins()


def current_registry() -> Registry:
    """The registry of the running command (``current_plugins().registry``): inside a
    command, the names it may look up with ``current_registry().get("model", name)``.
    Stable API."""
    return current_plugins().registry
