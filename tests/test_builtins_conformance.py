"""The built-in models, optimizer, dataset, augmentations and recipes pass the conformance
kit they ship."""

from __future__ import annotations

import pytest

from mnistkit import builtins
from mnistkit.optimizers.sgd import SGD, SGDOptions
from mnistkit.testing import conformance_cases

# Everything mnistkit.builtins registers, checked like any plugin module; the mnist
# dataset loads from its bundled copy (data_dir None); the augmentation 'none' is meant
# to change nothing.
CASES = conformance_cases(builtins, settings={"none": {"identity": True}})


def test_every_builtin_is_covered():
    from mnistkit.recipes import BUILTIN_RECIPES

    ids = {case.id.rsplit(":", 1)[0] for case in CASES}
    assert {"model:twolayer", "model:softmax", "optimizer:sgd", "dataset:mnist",
            "augmentation:none", "augmentation:elastic", "augmentation:affine"} <= ids
    assert {f"recipe:{name}" for name in BUILTIN_RECIPES} <= ids


@pytest.mark.parametrize("check", CASES)
def test_builtins_conform(check):
    check()


@pytest.mark.parametrize("check", conformance_cases(
    SGD, kind="optimizer", options_class=SGDOptions, name="sgd-nesterov-cosine",
    options={"lr": 0.1, "momentum": 0.9, "nesterov": True, "schedule": "cosine"}))
def test_sgd_with_momentum_and_schedule_conforms(check):
    check()
