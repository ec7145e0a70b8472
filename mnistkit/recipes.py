"""Recipes: published results as named training configurations (``train --recipe NAME``).

A :class:`Recipe` holds everything ``mnistkit train`` needs (model, optimizer, their
options, augmentation, epochs, batches, validation size) with the source it reproduces
and the test error published there. Plugins register recipes through the
``mnistkit_register_recipes`` hook; the built-in ones are :data:`BUILTIN_RECIPES`. A recipe
names a model, an optimizer and an augmentation, looked up only when it is trained, so a
plugin's recipe may use another plugin's model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mnistkit.errors import OptionsError


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named training configuration and the published figure it reproduces.

    ``published_error`` is the test error in percent reported by ``source`` (``None``
    when the source gives none); ``notes`` says where the recipe departs from the source.
    The other fields are ``mnistkit train``'s options of the same names.
    """

    title: str
    source: str
    published_error: float | None
    model: str = "twolayer"
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    optimizer: str = "sgd"
    optimizer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    augment: str = "none"
    augment_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 128
    val_size: int = 10_000
    sampling: str = "shuffle"
    steps_per_epoch: int | None = None
    raw_pixels: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        if self.published_error is not None and not 0 <= self.published_error <= 100:
            raise OptionsError(f"recipe {self.title!r}: published_error is a percentage; got "
                               f"{self.published_error}")
        if self.sampling not in ("shuffle", "replacement"):
            raise OptionsError(f"recipe {self.title!r}: sampling must be 'shuffle' or "
                               f"'replacement'; got {self.sampling!r}")
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise OptionsError(f"recipe {self.title!r}: {name} must be a positive integer")

    def settings(self) -> dict[str, Any]:
        """The training settings as plain data (what ``recipes --json`` shows)."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in dataclasses.fields(self)
                if f.name not in ("title", "source", "published_error", "notes")}

    def command(self, name: str) -> str:
        """The ``mnistkit train`` command line this recipe stands for."""
        return f"mnistkit train --recipe {name}"


_SIMARD = ("P. Y. Simard, D. Steinkraus, J. C. Platt, 'Best Practices for Convolutional "
           "Neural Networks Applied to Visual Document Analysis', ICDAR 2003, table 1")
_LECUN = ("Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, 'Gradient-Based Learning Applied to "
          "Document Recognition', Proc. IEEE 1998, and the MNIST page's table")
_SIMARD_NET = {"hidden_size": 800}
_SIMARD_NOTES = ("ReLU hidden units instead of the paper's sigmoid; minibatches of 128 with a "
                 "cosine learning rate instead of online SGD; 55,000 training images (5,000 "
                 "held out to choose the best epoch) instead of 60,000.")

#: The recipes that come with mnistkit, by name.
BUILTIN_RECIPES: dict[str, Recipe] = {
    "blog2017-softmax": Recipe(
        title="The 2017 blog post's softmax classifier on raw pixels",
        source="'Two layer NN - Numpy Implementation' (blog post, 2017): softmax on raw "
               "0..255 pixels, 'about 90%'",
        published_error=10.0,
        model="softmax", model_options={"reg": 5e-6},
        optimizer_options={"lr": 1e-6, "schedule": "constant"},
        epochs=1, batch_size=300, val_size=0, sampling="replacement", steps_per_epoch=500,
        raw_pixels=True,
        notes="The post's own setup: 500 batches of 300 drawn with replacement, lr 1e-6."),
    "lecun1998-300": Recipe(
        title="LeCun et al. 1998: 2-layer NN, 300 hidden units",
        source=_LECUN, published_error=4.7,
        model_options={"hidden_size": 300},
        notes="The paper used a mean-square-error loss and sigmoid units, which mnistkit's "
              "twolayer does not: cross-entropy and ReLU do much better than its 4.7%."),
    "lecun1998-1000": Recipe(
        title="LeCun et al. 1998: 2-layer NN, 1000 hidden units",
        source=_LECUN, published_error=4.5,
        model_options={"hidden_size": 1000},
        notes="As lecun1998-300: cross-entropy and ReLU instead of MSE and sigmoid units."),
    "simard2003-plain": Recipe(
        title="Simard et al. 2003: 784-800-10, cross-entropy, no distortion",
        source=_SIMARD, published_error=1.6,
        model_options={**_SIMARD_NET, "reg": 1e-4}, epochs=30, val_size=5_000,
        notes=_SIMARD_NOTES + " L2 1e-4 (twolayer's default 1e-5 overfits without "
              "distortions: 1.89% error)."),
    "simard2003-affine": Recipe(
        title="Simard et al. 2003: 784-800-10, cross-entropy, affine distortions",
        source=_SIMARD, published_error=1.1,
        model_options=_SIMARD_NET, augment="affine", epochs=100, val_size=5_000,
        notes=_SIMARD_NOTES),
    "simard2003-elastic": Recipe(
        title="Simard et al. 2003: 784-800-10, cross-entropy, elastic distortions",
        source=_SIMARD, published_error=0.7,
        model_options=_SIMARD_NET, augment="elastic",
        augment_options={"sigma": 4.0, "alpha": 34.0}, epochs=500, val_size=5_000,
        notes=_SIMARD_NOTES + " Elastic sigma 4, alpha 34: the paper's best."),
    "mnistkit-default": Recipe(
        title="mnistkit's fast default: 784-256-10, 20 epochs",
        source="mnistkit (this toolkit's own default, 'mnistkit train')",
        published_error=None,
        notes="What 'mnistkit train' does with no options."),
}
