"""The conformance kit's augmentation and recipe checks catch each kind of broken one."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

from mnistkit import hookimpl
from mnistkit.augment import Affine, AffineOptions, Elastic, ElasticOptions, NoAugmentation
from mnistkit.plugins import load_plugins
from mnistkit.recipes import BUILTIN_RECIPES, Recipe
from mnistkit.testing import (
    AUGMENTATION_CHECKS,
    RECIPE_CHECKS,
    augmentation_checks,
    check_augmentation,
    check_plugin,
    check_recipe,
    collect_checks,
    conformance_cases,
    digit_like_images,
    recipe_checks,
)

REGISTRY = load_plugins(entry_points=False).registry

# ------------------------------------------------------------------ augmentations


@dataclasses.dataclass(frozen=True)
class ShiftOptions:
    pixels: int = 2


class Shift:
    """A correct distortion: every image moved by its own random whole-pixel offset."""

    def __init__(self, options):
        self.options = options

    def distort(self, images, rng):
        n, h, w = images.shape
        p = self.options.pixels
        padded = np.zeros((n, h + 2 * p, w + 2 * p), np.uint8)
        padded[:, p:p + h, p:p + w] = images
        dy, dx = rng.integers(-p, p + 1, size=(2, n))
        rows = np.arange(h) + p - dy[:, None]
        cols = np.arange(w) + p - dx[:, None]
        return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


class ReturnsFloat(Shift):
    def distort(self, images, rng):
        return super().distort(images, rng).astype(np.float32)


class Crops(Shift):
    def distort(self, images, rng):
        return super().distort(images, rng)[:, 1:-1, 1:-1]


class ReturnsList(Shift):
    def distort(self, images, rng):
        return list(super().distort(images, rng))


class Crashes(Shift):
    def distort(self, images, rng):
        if len(images) == 1:
            raise IndexError("batch of one")
        return super().distort(images, rng)


class InPlace(Shift):
    def distort(self, images, rng):
        images[...] = super().distort(images, rng)
        return images


class GlobalRandom(Shift):
    def distort(self, images, rng):
        return super().distort(images, np.random.default_rng())


class IgnoresRng(Shift):
    def distort(self, images, rng):
        return super().distort(images, np.random.default_rng(0))


class Identity(Shift):
    def distort(self, images, rng):
        return images.copy()


class Reverses(Shift):
    def distort(self, images, rng):
        return super().distort(images, rng)[::-1].copy()


class Inverts(Shift):
    def distort(self, images, rng):
        return 255 - super().distort(images, rng)


class ForgetsToClear(Shift):
    """Keeps its output buffer between calls and writes only the inked pixels into it."""

    def distort(self, images, rng):
        shifted = super().distort(images, rng)
        n = len(images)
        if getattr(self, "_out", None) is None or len(self._out) < n:
            self._out = np.zeros_like(shifted)
        out = self._out[:n]
        ink = shifted > 0
        out[ink] = shifted[ink]
        return out


class NoDistort:
    def __init__(self, options):
        pass


def only(factory, check, **kwargs):
    """Run the single check ``check`` of ``factory`` (with ShiftOptions)."""
    (found,) = [c for c in augmentation_checks(factory, ShiftOptions, name="broken", **kwargs)
                if c.name == check]
    found()


def failure(func, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "How to fix:" in message
    return message


@pytest.mark.parametrize(("cls", "check", "words"), [
    (ReturnsFloat, "shapes", "returned float32 (3, 28, 28)"),
    (Crops, "shapes", "returned uint8 (3, 26, 26)"),
    (ReturnsList, "shapes", "not a numpy array"),
    (Crashes, "shapes", "batch (1, 28, 28) raised IndexError"),
    (ForgetsToClear, "shapes", "after batches of 1 and 5"),
    (InPlace, "in_place", "changed the images it was given"),
    (GlobalRandom, "deterministic", "same seed gave different images"),
    (IgnoresRng, "deterministic", "gave the same distortion"),
    (Identity, "deterministic", "every image unchanged"),
    (Reverses, "order", "out of order"),
    (Inverts, "order", "out of order"),
])
def test_broken_augmentations_fail_with_what_and_how(cls, check, words):
    message = failure(only, cls, check)
    assert f"augmentation 'broken' failed check '{check}'" in message
    assert words in message


def test_the_first_failure_stops_check_augmentation():
    message = failure(check_augmentation, Reverses, ShiftOptions, name="broken")
    assert "failed check 'order'" in message


def test_a_correct_augmentation_passes_every_check():
    checks = augmentation_checks(Shift, ShiftOptions)
    assert [c.name for c in checks] == list(AUGMENTATION_CHECKS)
    assert checks[0].id == "augmentation:Shift:options"
    for check in checks:
        check()
    check_augmentation(Shift, ShiftOptions, options={"pixels": "3"})


def test_a_factory_without_distort_or_with_bad_options():
    assert "no distort() method" in failure(only, NoDistort, "construct")
    message = failure(check_augmentation, Elastic, ElasticOptions, options={"sigma": "-1"})
    assert "failed check 'options'" in message or "options cannot be built" in message


def test_identity_is_allowed_only_when_declared_and_true():
    check_augmentation(Identity, ShiftOptions, identity=True)
    check_augmentation(NoAugmentation, identity=True)
    check_augmentation(Shift, ShiftOptions, options={"pixels": 0}, identity=True)
    message = failure(check_augmentation, Shift, ShiftOptions, identity=True)
    assert "identity=True, but distort() changed the images" in message
    message = failure(check_augmentation, Shift, ShiftOptions, options={"pixels": 0})
    assert "pass identity=True" in message


@pytest.mark.parametrize(("factory", "options"), [(Elastic, ElasticOptions),
                                                  (Affine, AffineOptions)])
def test_the_builtin_distortions_pass(factory, options):
    check_augmentation(factory, options)


def test_augmentations_by_registered_name_and_entry():
    check_augmentation("elastic", registry=REGISTRY)
    check_augmentation(REGISTRY.get("augmentation", "affine"))
    check_augmentation("none", registry=REGISTRY, identity=True)
    ids = [c.id for c in collect_checks("elastic", kind="augmentation", registry=REGISTRY)]
    assert ids == [f"augmentation:elastic:{name}" for name in AUGMENTATION_CHECKS]
    names = [c.name for c in augmentation_checks(Shift, ShiftOptions, skip=["order"])]
    assert "order" not in names
    with pytest.raises(ValueError, match="unknown augmentation checks"):
        augmentation_checks(Shift, ShiftOptions, skip=["nope"])


def test_digit_like_images_have_ink_in_the_middle_only():
    images = digit_like_images(6)
    assert images.shape == (6, 28, 28) and images.dtype == np.uint8
    assert (images.reshape(6, -1) > 0).sum(axis=1).min() > 60
    assert not images[:, :3].any() and not images[:, -3:].any()
    assert not images[:, :, :3].any() and not images[:, :, -3:].any()
    assert np.array_equal(images, digit_like_images(6))

# ------------------------------------------------------------------ recipes


def recipe(**changes) -> Recipe:
    values = {"title": "A test recipe", "source": "the tests", "published_error": None,
              "model_options": {"hidden_size": 16}, "epochs": 1}
    return Recipe(**{**values, **changes})


@pytest.mark.parametrize("name", sorted(BUILTIN_RECIPES))
def test_the_builtin_recipes_pass(name):
    check_recipe(name, registry=REGISTRY)


def test_a_correct_recipe_passes_every_check():
    checks = recipe_checks(recipe(augment="elastic"), name="mine", registry=REGISTRY)
    assert [c.id for c in checks] == [f"recipe:mine:{n}" for n in RECIPE_CHECKS]
    for check in checks:
        check()


@pytest.mark.parametrize(("changes", "check", "words"), [
    ({"model": "twolayr"}, "names", "unknown model 'twolayr'. Did you mean 'twolayer'?"),
    ({"optimizer": "adamw"}, "names", "unknown optimizer 'adamw'"),
    ({"augment": "elastik"}, "names", "unknown augmentation 'elastik'"),
    ({"model_options": {"hidden_sise": 16}}, "options", "has no option 'hidden_sise'"),
    ({"optimizer_options": {"lr": "fast"}}, "options", "must be a number"),
    ({"augment": "elastic", "augment_options": {"alpha": -1}}, "options", "alpha must be"),
    ({"source": " "}, "recipe", "its source is"),
    ({"val_size": -5}, "recipe", "val_size is -5"),
    ({"model_options": {"hidden_size": "many"}}, "options", "must be an integer"),
    ({"model_options": {"hidden_size": object()}}, "recipe", "not JSON-serialisable"),
])
def test_broken_recipes_fail_with_what_and_how(changes, check, words):
    message = failure(check_recipe, recipe(**changes), name="broken", registry=REGISTRY)
    assert f"recipe 'broken' failed check '{check}'" in message
    assert words in message


def test_a_recipe_whose_model_cannot_be_built():
    def explodes(options, rng, n_inputs, n_classes):
        raise MemoryError("too big")

    module = types.ModuleType("exploding")
    module.mnistkit_register_models = hookimpl(
        lambda register: register("explodes", explodes, help="x"))
    registry = load_plugins([module], entry_points=False).registry
    message = failure(check_recipe, recipe(model="explodes", model_options={}),
                      registry=registry)
    assert "failed check 'build'" in message and "raised MemoryError: too big" in message


def test_something_that_is_not_a_recipe():
    message = failure(check_recipe, {"model": "twolayer"}, name="dict")
    assert "failed check 'recipe'" in message and "not a mnistkit.recipes.Recipe" in message


def test_recipe_names_default_to_the_installed_plugins():
    check_recipe(recipe())  # registry=None: mnistkit.plugins.get_registry() (built-ins at least)
    assert collect_checks(recipe())[0].id == "recipe:recipe:recipe"
    with pytest.raises(ValueError, match="kind="):
        collect_checks("simard2003-elastic")

# ------------------------------------------------------------------ plugin modules


def make_plugin(name="kit_kinds_plugin", **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, func in hooks.items():
        setattr(module, hook, hookimpl(func))
    return module


def test_a_plugin_modules_augmentations_and_recipes_are_checked():
    def mnistkit_register_augmentations(register):
        register("shift", Shift, options=ShiftOptions, help="x")
        register("same", Identity, options=ShiftOptions, help="x")

    def mnistkit_register_recipes(register):
        register("shifted", recipe(augment="shift"), help="x")

    module = make_plugin(mnistkit_register_augmentations=mnistkit_register_augmentations,
                         mnistkit_register_recipes=mnistkit_register_recipes)
    cases = conformance_cases(module, settings={"same": {"identity": True}})
    ids = [case.id for case in cases]
    assert "augmentation:shift:order" in ids and "augmentation:same:deterministic" in ids
    assert "recipe:shifted:build" in ids
    assert not any(i.startswith(("augmentation:elastic", "recipe:simard")) for i in ids)
    for case in cases:
        case.values[0]()
    message = failure(check_plugin, module)  # "same" without identity=True
    assert "augmentation 'same' failed check 'deterministic'" in message


def test_a_recipe_using_another_plugins_model_needs_that_registry():
    def mnistkit_register_models(register):
        from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions

        register("other-net", TwoLayerNet, options=TwoLayerOptions, help="x")

    def mnistkit_register_recipes(register):
        register("borrowed", recipe(model="other-net"), help="x")

    other = make_plugin("kit_other_plugin", mnistkit_register_models=mnistkit_register_models)
    module = make_plugin(mnistkit_register_recipes=mnistkit_register_recipes)
    message = failure(check_plugin, module)
    assert "recipe 'borrowed' failed check 'names'" in message
    assert "unknown model 'other-net'" in message and "registry=" in message
    both = load_plugins([other, module], entry_points=False).registry
    check_plugin(module, settings={"borrowed": {"registry": both}})
