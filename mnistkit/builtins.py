"""The built-in plugin: registered through the same hooks as any third-party package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistkit.hookspecs import hookimpl


@hookimpl
def mnistkit_register_models(register: Any) -> None:
    """Register ``twolayer`` and ``softmax``."""
    from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
    from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions

    register("twolayer", TwoLayerNet, options=TwoLayerOptions,
             help="784 -> hidden -> 10 ReLU network with softmax cross-entropy and L2.")
    register("softmax", SoftmaxClassifier, options=SoftmaxOptions,
             help="Linear softmax classifier 784 -> 10 (the original blog post's model).")


@hookimpl
def mnistkit_register_optimizers(register: Any) -> None:
    """Register ``sgd``."""
    from mnistkit.optimizers.sgd import SGD, SGDOptions

    register("sgd", SGD, options=SGDOptions,
             help="Minibatch SGD with optional (Nesterov) momentum and an lr schedule.")


def _load_bundled_mnist(options: Any, data_dir: Path | None) -> Any:
    from mnistkit.data.mnist import load_mnist

    return load_mnist(data_dir)


@hookimpl
def mnistkit_register_datasets(register: Any) -> None:
    """Register ``mnist`` (bundled with mnistkit, or any copy given with --data-dir)."""
    register("mnist", _load_bundled_mnist,
             help="MNIST handwritten digits, 60k train / 10k test, bundled (offline).")


@hookimpl
def mnistkit_register_augmentations(register: Any) -> None:
    """Register ``none``, ``elastic`` and ``affine``."""
    from mnistkit.augment import (
        Affine,
        AffineOptions,
        Elastic,
        ElasticOptions,
        NoAugmentation,
    )

    register("none", NoAugmentation, help="Train on the images as they are (the default).")
    register("elastic", Elastic, options=ElasticOptions,
             help="Simard's elastic distortion: a random field smoothed by a Gaussian.")
    register("affine", Affine, options=AffineOptions,
             help="Small random rotations, scalings, shears and shifts.")


@hookimpl
def mnistkit_register_recipes(register: Any) -> None:
    """Register the published results of :data:`mnistkit.recipes.BUILTIN_RECIPES`."""
    from mnistkit.recipes import BUILTIN_RECIPES

    for name, recipe in BUILTIN_RECIPES.items():
        register(name, recipe, help=recipe.title)
