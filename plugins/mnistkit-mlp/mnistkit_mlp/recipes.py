"""The recipes of the ``mlp`` model: ``mnistkit train --recipe NAME``."""

from __future__ import annotations

from mnistkit.recipes import Recipe

_LECUN = ("Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, 'Gradient-Based Learning Applied to "
          "Document Recognition', Proc. IEEE 1998, and the MNIST page's table "
          "('3-layer NN, 500+150 hidden units', no preprocessing)")

#: The recipes this plugin registers, by name.
RECIPES: dict[str, Recipe] = {
    "lecun1998-500-150": Recipe(
        title="LeCun et al. 1998: 3-layer NN, 500+150 hidden units",
        source=_LECUN, published_error=2.95,
        model="mlp", model_options={"layers": (500, 150), "dropout": 0.0},
        notes="The paper's network had sigmoid units and a mean-square-error loss; mlp has "
              "ReLU units, cross-entropy and its default L2 (reg 1e-4), without dropout, "
              "trained with mnistkit's default SGD (lr 0.8, cosine decay, 20 epochs)."),
    "mlp-800-800": Recipe(
        title="mlp 784-800-800-10 with dropout 0.3",
        source="mnistkit-mlp's own configuration (two hidden layers as wide as Simard et "
               "al. 2003's 784-800-10 network); no published figure",
        published_error=None,
        model="mlp", model_options={"layers": (800, 800)}, epochs=30,
        notes="Not from a paper: a bigger mlp to compare with the published recipes. "
              "mlp's defaults otherwise (dropout 0.3, reg 1e-4)."),
}
