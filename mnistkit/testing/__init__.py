"""The conformance kit: checks a plugin author runs from their own tests.

What scikit-learn's ``check_estimator`` is for estimators. Each function runs every
check for one model, optimizer or dataset and raises ``AssertionError`` at the first
failure, with a message saying what failed and how to fix it::

    from mnistkit.testing import check_model, check_optimizer, check_dataset

    def test_mymodel_conforms():
        check_model(MyModel, MyOptions)

    def test_myopt_conforms():
        check_optimizer(MyOptimizer, MyOptimizerOptions)

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
  ``gradients``, ``seed``, ``checkpoint``, ``overfit``, ``extras``.
- optimizers: ``options``, ``construct``, ``start_epoch``, ``in_place``, ``quadratic``,
  ``state``.
- datasets: ``options``, ``load``, ``deterministic``, ``missing``.
- plugin modules: ``plugin`` (loads and registers without problems) and ``commands``
  (when it adds commands: each has help text and ``--help`` works).
"""

from mnistkit.testing._core import (
    DATASET_CHECKS,
    MODEL_CHECKS,
    OPTIMIZER_CHECKS,
    OVERFIT_EXAMPLES,
    OVERFIT_STEPS,
    QUADRATIC_STEPS,
    Check,
)
from mnistkit.testing.loopback import LoopbackServer, serve_folder
from mnistkit.testing.suites import (
    check_dataset,
    check_model,
    check_optimizer,
    check_plugin,
    collect_checks,
    conformance_cases,
    dataset_checks,
    model_checks,
    optimizer_checks,
    plugin_checks,
)

__all__ = [
    "DATASET_CHECKS", "MODEL_CHECKS", "OPTIMIZER_CHECKS", "OVERFIT_EXAMPLES", "OVERFIT_STEPS",
    "QUADRATIC_STEPS", "Check", "LoopbackServer", "check_dataset", "check_model",
    "check_optimizer", "check_plugin", "collect_checks", "conformance_cases", "dataset_checks",
    "model_checks", "optimizer_checks", "plugin_checks", "serve_folder",
]
