"""docs/plugins.md documents every hook, and its example plugin really works."""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from pathlib import Path

import pytest

from mnistkit import hookspecs
from mnistkit.testing import check_plugin, collect_checks

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def hook_specs() -> list[tuple[str, list[str]]]:
    specs = []
    for name, func in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(func, "mnistkit_spec"):
            specs.append((name, list(inspect.signature(func).parameters)))
    return specs


def code_block_after(text: str, marker: str, language: str) -> str:
    start = text.index(marker)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match, f"no {language} block after {marker!r}"
    return match.group(1)


def test_there_are_hook_specs():
    assert {name for name, _ in hook_specs()} >= {
        "mnistkit_register_models", "mnistkit_register_optimizers",
        "mnistkit_register_datasets", "mnistkit_register_augmentations",
        "mnistkit_register_recipes", "mnistkit_register_commands"}


@pytest.mark.parametrize(("name", "args"), hook_specs())
def test_every_hook_spec_has_a_section_with_its_arguments(name, args):
    text = GUIDE.read_text(encoding="utf-8")
    heading = f"### `{name}({', '.join(args)})`"
    assert heading in text, f"docs/plugins.md lacks a section headed {heading}"


def test_the_guides_example_plugin_passes_the_conformance_kit():
    text = GUIDE.read_text(encoding="utf-8")
    source = code_block_after(text, "**3. `mnistkit_tanh.py`**", "python")
    module = types.ModuleType("mnistkit_tanh")
    sys.modules["mnistkit_tanh"] = module
    try:
        exec(compile(source, "docs/plugins.md:mnistkit_tanh.py", "exec"), module.__dict__)
        check_plugin(module)
    finally:
        del sys.modules["mnistkit_tanh"]


def _guide_module(name: str, marker: str) -> types.ModuleType:
    """The module of the guide's python block after ``marker``, importable as ``name``."""
    source = code_block_after(GUIDE.read_text(encoding="utf-8"), marker, "python")
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, f"docs/plugins.md:{name}.py", "exec"), module.__dict__)
    return module


def test_the_guides_augmentation_plugin_passes_the_kit_and_its_tests():
    try:
        module = _guide_module("mnistkit_shift", "**`mnistkit_shift.py`**")
        checks = [c.id for c in collect_checks(module)]
        assert "augmentation:shift:order" in checks and "recipe:twolayer-shift:build" in checks
        check_plugin(module)
        tests = code_block_after(GUIDE.read_text(encoding="utf-8"), "Test it with the kit",
                                 "python")
        namespace: dict = {}
        exec(compile(tests, "docs/plugins.md:test_mnistkit_shift.py", "exec"), namespace)
        namespace["test_shifts_of_zero_pixels_change_nothing"]()
        for case in namespace["test_conformance"].pytestmark[0].args[1]:
            namespace["test_conformance"](case.values[0])
        # what it does: each image moved as a whole, by at most 2 pixels, ink kept
        import numpy as np

        images = np.zeros((4, 28, 28), np.uint8)
        images[:, 10:18, 12:15] = 200
        out = module.Shift(module.ShiftOptions()).distort(images, np.random.default_rng(0))
        assert out.dtype == np.uint8 and out.shape == images.shape
        assert np.all(out.reshape(4, -1).sum(axis=1) == images.reshape(4, -1).sum(axis=1))
        moved = [np.argwhere(o).min(axis=0) - (10, 12) for o in out]
        assert all(np.abs(m).max() <= 2 for m in moved) and len({tuple(m) for m in moved}) > 1
    finally:
        sys.modules.pop("mnistkit_shift", None)


def test_the_guides_recipe_plugin_passes_the_kit_with_the_mlp_plugin():
    mnistkit_mlp = pytest.importorskip("mnistkit_mlp")
    from mnistkit.plugins import load_plugins

    try:
        module = _guide_module("mnistkit_lecun", "**`mnistkit_lecun.py`**")
        with pytest.raises(AssertionError, match="unknown model 'mlp'"):
            check_plugin(module)  # without mnistkit-mlp next to it
        registry = load_plugins([mnistkit_mlp, module], entry_points=False).registry
        check_plugin(module, settings={"lecun1998-300-100": {"registry": registry}})
        recipe = registry.get("recipe", "lecun1998-300-100").factory
        assert recipe.published_error == 3.05 and recipe.model == "mlp"
    finally:
        sys.modules.pop("mnistkit_lecun", None)


def test_the_guides_pyproject_declares_the_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    text = GUIDE.read_text(encoding="utf-8")
    project = tomllib.loads(code_block_after(text, "**2. `pyproject.toml`**", "toml"))
    assert project["project"]["entry-points"]["mnistkit"] == {"tanh": "mnistkit_tanh"}
    assert "mnistkit" in project["project"]["dependencies"]


def test_the_documented_checks_are_the_real_ones():
    from mnistkit.testing import (
        AUGMENTATION_CHECKS,
        DATASET_CHECKS,
        MODEL_CHECKS,
        OPTIMIZER_CHECKS,
        RECIPE_CHECKS,
    )

    text = GUIDE.read_text(encoding="utf-8")
    for kind, names in (("model", MODEL_CHECKS), ("optimizer", OPTIMIZER_CHECKS),
                        ("dataset", DATASET_CHECKS), ("augmentation", AUGMENTATION_CHECKS),
                        ("recipe", RECIPE_CHECKS)):
        for name in names:
            assert f"| {kind} | {name} |" in text, f"{kind} check {name!r} is not documented"


def test_the_guides_command_reaches_the_registry_of_its_command_line():
    from click.testing import CliRunner

    from mnistkit.cli import build_cli
    from mnistkit.plugins import load_plugins

    try:
        module = _guide_module("mnistkit_names", "**Reaching the registry from a command.**")
        check_plugin(module)
        tanh = _guide_module("mnistkit_tanh", "**3. `mnistkit_tanh.py`**")
        cli = build_cli(load_plugins([module, tanh], entry_points=False))
        result = CliRunner().invoke(cli, ["model-names"], catch_exceptions=False)
        assert result.exit_code == 0
        rows = dict(line.split("\t") for line in result.stdout.splitlines())
        assert rows["tanhnet"] == "mnistkit_tanh" and rows["twolayer"] == "builtins"
        listing = CliRunner().invoke(cli, ["plugins", "--json"], catch_exceptions=False)
        registers = {p["name"]: p["registers"] for p in json.loads(listing.stdout)["plugins"]}
        assert registers["mnistkit_names"] == {"command": ["model-names"]}
    finally:
        sys.modules.pop("mnistkit_names", None)
        sys.modules.pop("mnistkit_tanh", None)


def test_the_guides_optimizer_passes_the_kit():
    try:
        module = _guide_module("mnistkit_adagrad", "**`mnistkit_adagrad.py`**")
        checks = [c.id for c in collect_checks(module)]
        assert {"optimizer:adagrad:lr_scale", "optimizer:adagrad:state_changes"} <= set(checks)
        check_plugin(module)
    finally:
        sys.modules.pop("mnistkit_adagrad", None)


def test_the_guides_settings_options_example_runs():
    text = GUIDE.read_text(encoding="utf-8")
    source = code_block_after(text, "passes keyword arguments to the checks", "python")
    try:
        tanh = _guide_module("mnistkit_tanh", "**3. `mnistkit_tanh.py`**")
        from mnistkit.testing import conformance_cases

        namespace = {"pytest": pytest, "mnistkit_tanh": tanh,
                     "conformance_cases": conformance_cases}
        exec(compile(source, "docs/plugins.md:settings-example", "exec"), namespace)
        test = namespace["test_conformance_of_a_small_tanhnet"]
        cases = test.pytestmark[0].args[1]
        assert "model:tanhnet:option_gradients" in [case.id for case in cases]
        assert "model:tanhnet:overfit" not in [case.id for case in cases]
        for case in cases:
            test(case.values[0])
    finally:
        sys.modules.pop("mnistkit_tanh", None)
