"""Name -> factory tables for models, optimizers, datasets, augmentations and recipes.

Plugins fill a :class:`Registry` through their ``register`` callbacks; the CLI and
the library look names up here. A name registered by two plugins is kept as a
conflict: listing it works, using it raises a :class:`PluginError` naming both.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from typing import Any, Literal

from mnistkit.errors import PluginError, UnknownNameError
from mnistkit.options import build_options, check_options_class, describe_options

Kind = Literal["model", "optimizer", "dataset", "augmentation", "recipe"]
KINDS: tuple[Kind, ...] = ("model", "optimizer", "dataset", "augmentation", "recipe")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered model, optimizer, dataset, augmentation or recipe (whose
    ``factory`` is the :class:`mnistkit.recipes.Recipe` itself)."""

    kind: Kind
    name: str
    factory: Callable[..., Any]
    options: type | None
    help: str
    plugin: str

    def make_options(self, values: dict[str, Any] | None = None) -> Any:
        """Build this entry's options from ``values`` (text or typed), validating them."""
        return build_options(self.options, values or {}, f"{self.kind} {self.name!r}")

    def describe_options(self) -> list:
        """The declared options (name, type, default, help) of this entry."""
        return describe_options(self.options)


class Registry:
    """The models, optimizers, datasets, augmentations and recipes that the loaded plugins
    registered."""

    def __init__(self) -> None:
        self._entries: dict[Kind, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._conflicts: dict[tuple[Kind, str], list[str]] = {}

    def register_callback(self, kind: Kind, plugin: str) -> Callable[..., None]:
        """The ``register(name, factory, *, options=None, help="")`` given to ``plugin``."""

        def register(
            name: str, factory: Callable[..., Any], *, options: type | None = None, help: str = ""
        ) -> None:
            self.add(Entry(kind, name, factory, options, help, plugin))

        return register

    def add(self, entry: Entry) -> None:
        """Add ``entry``; raises ``PluginError`` for a malformed one, records name conflicts."""
        where = f"plugin {entry.plugin!r} registering {entry.kind} {entry.name!r}"
        if not isinstance(entry.name, str) or not _NAME.match(entry.name):
            raise PluginError(f"{where}: use lower case letters, digits, '-', '_' and '.'")
        if entry.kind == "recipe":
            from mnistkit.recipes import Recipe

            if not isinstance(entry.factory, Recipe):
                raise PluginError(f"{where}: register a mnistkit.recipes.Recipe; got "
                                  f"{type(entry.factory).__name__}")
        elif not callable(entry.factory):
            raise PluginError(f"{where}: the factory {entry.factory!r} is not callable")
        if entry.options is not None:
            try:
                check_options_class(entry.options)
            except TypeError as exc:
                raise PluginError(f"{where}: {exc}") from None
        table = self._entries[entry.kind]
        existing = table.get(entry.name)
        if existing is not None and existing.plugin != entry.plugin:
            owners = self._conflicts.setdefault((entry.kind, entry.name), [existing.plugin])
            owners.append(entry.plugin)
            return
        table[entry.name] = entry

    def names(self, kind: Kind) -> list[str]:
        """Registered names of ``kind``, sorted."""
        return sorted(self._entries[kind])

    def entries(self, kind: Kind) -> list[Entry]:
        """Registered entries of ``kind``, sorted by name."""
        return [self._entries[kind][n] for n in self.names(kind)]

    def conflicts(self) -> dict[tuple[Kind, str], list[str]]:
        """``(kind, name) -> [plugin, plugin, ...]`` for names registered more than once."""
        return dict(self._conflicts)

    def get(self, kind: Kind, name: str) -> Entry:
        """The entry called ``name``; an unknown or conflicting name raises a clear error."""
        owners = self._conflicts.get((kind, name))
        if owners:
            raise PluginError(
                f"{kind} {name!r} is registered by more than one plugin: {' and '.join(owners)}. "
                "Uninstall one of them, or choose plugins with MNISTKIT_LOAD_PLUGINS"
            )
        entry = self._entries[kind].get(name)
        if entry is None:
            raise UnknownNameError(unknown_name_message(kind, name, self.names(kind)))
        return entry


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """``unknown model 'twolayr'. Did you mean 'twolayer'? Known: ...``."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "none installed"
    return f"unknown {kind} {name!r}.{hint} Known {kind}s: {listing}"
