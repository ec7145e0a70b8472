"""README's quick start and CI run the same test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick)


def test_quick_start_has_two_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "mnistkit train --model twolayer" in commands[0]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci_lines


def test_every_plugin_package_is_installed_by_the_test_command():
    command = quick_start_commands()[1]
    for package in sorted((ROOT / "plugins").iterdir()):
        if (package / "pyproject.toml").exists():
            assert f"-e plugins/{package.name}" in command, package.name
