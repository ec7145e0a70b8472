"""The conformance kit: checks a plugin author runs from their own tests.

What scikit-learn's ``check_estimator`` is for estimators. Each function runs every
check for one model, optimizer, dataset, augmentation or recipe and raises
``AssertionError`` at the first failure, with a message saying what failed and how to
fix it::

    from mnistkit.testing import check_augmentation, check_model, check_optimizer, check_recipe

    def test_mymodel_conforms():
        check_model(MyModel, MyOptions)

    def test_myopt_conforms():
        check_optimizer(MyOptimizer, MyOptimizerOptions)

    def test_my_distortion_conforms():
        check_augmentation(MyShift, MyShiftOptions)   # or a registered name: "shift"

    def test_my_recipe_conforms():
        check_recipe("my-recipe")     # a Recipe, or a name the installed plugins register

For one pytest test per check, parametrise with :func:`conformance_cases`, which takes a
plugin module (everything it registers), a registered name, a registry entry or a
factory::

    import pytest
    import mnistkit_mymodel
    from mnistkit.testing import conformance_cases

    @pytest.mark.parametrize("check", conformance_cases(mnistkit_mymodel))
    def test_conformance(check):
        check()

Checks (names as used by ``skip=`` and in test ids):

- models: ``options``, ``construct``, ``params``, ``shapes``, ``deterministic``,
  ``gradients``, ``option_gradients`` (at a strong regularisation and other declared
  option values), ``seed``, ``checkpoint``, ``overfit``, ``extras``.
- optimizers: ``options``, ``construct``, ``start_epoch``, ``in_place``, ``lr_scale``
  (the first step scales with ``lr``), ``quadratic``, ``state``, ``state_changes``
  (a stateful optimizer's state changes from step to step).
- datasets: ``options``, ``load``, ``deterministic``, ``missing``.
- augmentations: ``options``, ``construct``, ``shapes``, ``in_place``, ``deterministic``,
  ``order``.
- recipes: ``recipe``, ``names``, ``options``, ``build``.
- plugin modules: ``plugin`` (loads and registers without problems) and ``commands``
  (when it adds commands: each has help text and ``--help`` works).

The first checks of a model (``options``, ``construct``, ``params``, ``shapes``) and of an
optimizer (``options``, ``construct``) are its contract (:data:`CONTRACT_CHECKS`,
:mod:`mnistkit.contracts`): after the first of them that fails, the object's other
checks are not run (skipped under pytest, naming it) instead of failing again.
"""

from mnistkit.testing._core import (
    AUGMENTATION_CHECKS,
    CONTRACT_CHECKS,
    DATASET_CHECKS,
    MODEL_CHECKS,
    OPTIMIZER_CHECKS,
    OVERFIT_EXAMPLES,
    OVERFIT_STEPS,
    QUADRATIC_EARLY_STEPS,
    QUADRATIC_STEPS,
    RECIPE_CHECKS,
    Check,
)
from mnistkit.testing.augmentations import digit_like_images
from mnistkit.testing.loopback import LoopbackServer, serve_folder
from mnistkit.testing.suites import (
    augmentation_checks,
    check_augmentation,
    check_dataset,
    check_model,
    check_optimizer,
    check_plugin,
    check_recipe,
    collect_checks,
    conformance_cases,
    dataset_checks,
    model_checks,
    optimizer_checks,
    plugin_checks,
    recipe_checks,
)

__all__ = [
    "AUGMENTATION_CHECKS", "CONTRACT_CHECKS", "DATASET_CHECKS", "MODEL_CHECKS",
    "OPTIMIZER_CHECKS", "OVERFIT_EXAMPLES", "OVERFIT_STEPS", "QUADRATIC_EARLY_STEPS",
    "QUADRATIC_STEPS", "RECIPE_CHECKS", "Check",
    "LoopbackServer", "augmentation_checks", "check_augmentation", "check_dataset",
    "check_model", "check_optimizer", "check_plugin", "check_recipe", "collect_checks",
    "conformance_cases", "dataset_checks", "digit_like_images", "model_checks",
    "optimizer_checks", "plugin_checks", "recipe_checks", "serve_folder",
]
