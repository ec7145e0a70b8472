"""docs/plugins.md documents every hook, and its example plugin really works."""

from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path

import pytest

from mnistkit import hookspecs
from mnistkit.testing import check_plugin

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
        "mnistkit_register_datasets", "mnistkit_register_commands"}


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


def test_the_guides_pyproject_declares_the_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    text = GUIDE.read_text(encoding="utf-8")
    project = tomllib.loads(code_block_after(text, "**2. `pyproject.toml`**", "toml"))
    assert project["project"]["entry-points"]["mnistkit"] == {"tanh": "mnistkit_tanh"}
    assert "mnistkit" in project["project"]["dependencies"]


def test_the_documented_checks_are_the_real_ones():
    from mnistkit.testing import DATASET_CHECKS, MODEL_CHECKS, OPTIMIZER_CHECKS

    text = GUIDE.read_text(encoding="utf-8")
    for kind, names in (("model", MODEL_CHECKS), ("optimizer", OPTIMIZER_CHECKS),
                        ("dataset", DATASET_CHECKS)):
        for name in names:
            assert f"| {kind} | {name} |" in text, f"{kind} check {name!r} is not documented"
