"""mnistkit plugin: the ``mlp`` model, any number of hidden ReLU layers.

Installed, it is found through the ``mnistkit`` entry-point group::

    pip install mnistkit-mlp
    mnistkit train --model mlp
    mnistkit train --model mlp -m layers=1024,512,256 -m dropout=0.2
    mnistkit gradcheck --model mlp -m layers=64,32
    mnistkit train --recipe lecun1998-500-150   # LeCun et al. 1998's 500+150 network
"""

from __future__ import annotations

from typing import Any

from mnistkit import hookimpl

__version__ = "0.1.0"


@hookimpl
def mnistkit_register_models(register: Any) -> None:
    """Register ``mlp``."""
    from mnistkit_mlp.model import MLP, MLPOptions

    register("mlp", MLP, options=MLPOptions,
             help="784 -> layers... -> 10 ReLU network with optional dropout and L2.")


@hookimpl
def mnistkit_register_recipes(register: Any) -> None:
    """Register ``lecun1998-500-150`` and ``mlp-800-800`` (see :mod:`mnistkit_mlp.recipes`)."""
    from mnistkit_mlp.recipes import RECIPES

    for name, recipe in RECIPES.items():
        register(name, recipe, help=recipe.title)
