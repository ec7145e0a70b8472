"""Conformance checks of a recipe: a :class:`mnistkit.recipes.Recipe` that can be trained."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from mnistkit.contracts import (
    augmentation_problems,
    exception_line,
    model_problems,
    new_model,
    new_optimizer,
    optimizer_problems,
)
from mnistkit.errors import MnistkitError
from mnistkit.testing._core import Subject

#: The registry kind of each name a recipe uses, and the recipe's fields for it.
_PARTS = (("model", "model", "model_options"),
          ("optimizer", "optimizer", "optimizer_options"),
          ("augmentation", "augment", "augment_options"))


def _registry(s: Subject) -> Any:
    if s.registry is not None:
        return s.registry
    from mnistkit.plugins import get_registry

    return get_registry()


def _recipe(s: Subject, check: str) -> Any:
    from mnistkit.recipes import Recipe

    if not isinstance(s.factory, Recipe):
        s.fail(check, f"it is a {type(s.factory).__name__}, not a mnistkit.recipes.Recipe",
               "register Recipe(title=..., source=..., published_error=..., model=..., ...)")
    return s.factory


def _entries(s: Subject, check: str) -> list[tuple[Any, Mapping[str, Any]]]:
    """The registry entry of the model, optimizer and augmentation, with their options."""
    recipe, registry = _recipe(s, check), _registry(s)
    found = []
    for kind, field, options_field in _PARTS:
        name = getattr(recipe, field)
        try:
            entry = registry.get(kind, name)
        except MnistkitError as exc:
            s.fail(check, f"its {field} {name!r} cannot be used: {exc}",
                   f"register the {kind} (in this plugin, or install the plugin that does); "
                   "for another plugin's names check against the installed plugins: "
                   "registry=mnistkit.plugins.get_registry(), or settings={name: {'registry': "
                   "...}} for a plugin module")
        found.append((entry, getattr(recipe, options_field)))
    return found


def _recipe_recipe(s: Subject) -> None:
    recipe = _recipe(s, "recipe")
    for field in ("title", "source"):
        value = getattr(recipe, field)
        if not isinstance(value, str) or not value.strip():
            s.fail("recipe", f"its {field} is {value!r}", f"give the recipe a {field}: "
                   "what it is, and the paper, page or person whose result it reproduces")
    error = recipe.published_error
    if error is not None and (isinstance(error, bool) or not isinstance(error, (int, float))):
        s.fail("recipe", f"published_error is {error!r}", "give the test error in percent as "
               "a number (2.95 for 2.95%), or None when the source reports none")
    if not isinstance(recipe.val_size, int) or recipe.val_size < 0:
        s.fail("recipe", f"val_size is {recipe.val_size!r}", "use a count of images >= 0")
    steps = recipe.steps_per_epoch
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        s.fail("recipe", f"steps_per_epoch is {steps!r}", "use None (one pass over the "
               "training images) or a positive integer")
    if not isinstance(recipe.raw_pixels, bool):
        s.fail("recipe", f"raw_pixels is {recipe.raw_pixels!r}", "use True or False")
    for _, _, options_field in _PARTS:
        values = getattr(recipe, options_field)
        if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
            s.fail("recipe", f"{options_field} is {values!r}", "use a dict of option name -> "
                   "value, e.g. {'hidden_size': 800}")
    try:
        json.dumps(recipe.settings())
    except (TypeError, ValueError) as exc:
        s.fail("recipe", f"its settings are not JSON-serialisable: {exc}",
               "use plain option values (numbers, strings, booleans, tuples of ints)")


def _recipe_names(s: Subject) -> None:
    _entries(s, "names")


def _built_options(s: Subject, check: str) -> list[tuple[Any, Any]]:
    built = []
    for entry, values in _entries(s, check):
        try:
            built.append((entry, entry.make_options(dict(values))))
        except MnistkitError as exc:
            s.fail(check, f"the {entry.kind} options {dict(values)!r} do not build: {exc}",
                   f"use the options 'mnistkit {entry.kind}s' lists for {entry.name!r}")
    return built


def _recipe_options(s: Subject) -> None:
    _built_options(s, "options")


def _recipe_build(s: Subject) -> None:
    from mnistkit.testing.augmentations import digit_like_images

    (model_entry, model_options), (opt_entry, opt_options), (aug_entry, aug_options) = (
        _built_options(s, "build"))
    model = _call(s, model_entry, "factory(options, rng, n_inputs=784, n_classes=10)",
                  lambda: new_model(model_entry.factory, model_options,
                                    np.random.default_rng(0), 784, 10))
    _built(s, model_entry, model_problems(model))
    optimizer = _call(s, opt_entry, "factory(model.params, options)",
                      lambda: new_optimizer(opt_entry.factory, model.params, opt_options))
    _built(s, opt_entry, optimizer_problems(optimizer))
    augmentation = _call(s, aug_entry, "factory(options)", lambda: aug_entry.factory(aug_options))
    _built(s, aug_entry, augmentation_problems(augmentation))
    images = digit_like_images(2)
    out = _call(s, aug_entry, "distort(images, rng)",
                lambda: augmentation.distort(images, np.random.default_rng(0)))
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != images.shape:
        s.fail("build", f"augmentation {aug_entry.name!r} returned "
               f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}",
               "run the augmentation's own conformance checks")


def _call(s: Subject, entry: Any, what: str, func: Any) -> Any:
    try:
        return func()
    except Exception as exc:
        s.fail("build", f"{entry.kind} {entry.name!r}: {what} raised {exception_line(exc)}",
               f"run the conformance checks of {entry.kind} {entry.name!r}; check the "
               "recipe's options for it")


def _built(s: Subject, entry: Any, problems: list) -> None:
    """Fail ``build`` with the first contract problem of what ``entry`` built."""
    if problems:
        s.fail("build", f"{entry.kind} {entry.name!r}: {problems[0]}",
               f"run the conformance checks of {entry.kind} {entry.name!r}")


RECIPE_FUNCS = {"recipe": _recipe_recipe, "names": _recipe_names, "options": _recipe_options,
                "build": _recipe_build}
