"""Shell completion, through real ``mnistkit`` processes as the shell calls them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnistkit.cli.completion import run_folders
from tests.reliability.conftest import subprocess_env

BIN = Path(sys.executable).parent


def mnistkit_cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnistkit", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=subprocess_env(MNISTKIT_LOAD_PLUGINS="", **env))


def complete(words: str, cwd: Path | None = None, shell: str = "bash") -> list[str]:
    """What Click answers the shell for the command line ``words`` (the last word being
    typed; a trailing space starts a new one): the offered values."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    done = mnistkit_cli(cwd=cwd, _MNISTKIT_COMPLETE=f"{shell}_complete", COMP_WORDS=words,
                        COMP_CWORD=str(cword))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if "," in line]


@pytest.mark.parametrize("shell, marker", [
    ("bash", "complete -o nosort -F _mnistkit_completion mnistkit"),
    ("zsh", "#compdef mnistkit"),
    ("fish", "complete --no-files --command mnistkit"),
])
def test_completion_prints_clicks_script(shell, marker):
    done = mnistkit_cli("completion", shell)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    assert f"_MNISTKIT_COMPLETE={shell}_complete" in done.stdout


def test_an_unknown_shell_is_a_usage_error():
    done = mnistkit_cli("completion", "tcsh")
    assert done.returncode == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in done.stderr


def test_model_optimizer_and_dataset_names_come_from_the_registry():
    assert complete("mnistkit train --model tw") == ["twolayer"]
    assert complete("mnistkit train --model ") == ["softmax", "twolayer"]
    assert complete("mnistkit train --optimizer ") == ["sgd"]
    assert complete("mnistkit gradcheck --model so") == ["softmax"]
    assert complete("mnistkit inspect --dataset ") == ["mnist"]
    assert complete("mnistkit sweep --model softmax,t") == ["softmax,twolayer"]


def test_option_names_follow_the_chosen_model_and_optimizer():
    assert complete("mnistkit train -m ") == ["hidden_size=", "reg=", "init_scale="]
    assert complete("mnistkit train --model softmax -m ") == ["reg=", "init_std="]
    assert complete("mnistkit train -o mom") == ["momentum="]
    assert complete("mnistkit train -o schedule=") == [
        "schedule=constant", "schedule=step", "schedule=cosine"]
    assert complete("mnistkit train -o nesterov=") == ["nesterov=true", "nesterov=false"]
    assert complete("mnistkit train --model nosuchmodel -m ") == []


@pytest.fixture
def run_tree(tmp_path):
    """runs/a and runs/b (run.json), runs/empty (none), sweeps/s/trials/t1 (a trial)."""
    for folder in ("runs/a", "runs/b", "sweeps/s/trials/t1"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "run.json").write_text(json.dumps({"format_version": 1}))
    (tmp_path / "runs/empty").mkdir()
    (tmp_path / ".hidden/run").mkdir(parents=True)
    (tmp_path / ".hidden/run/run.json").write_text("{}")
    return tmp_path


def test_commands_taking_a_run_offer_run_folders(run_tree):
    everything = ["runs/a", "runs/b", "sweeps/s/trials/t1"]
    assert complete("mnistkit test ", cwd=run_tree) == everything
    assert complete("mnistkit export runs/", cwd=run_tree) == ["runs/a", "runs/b"]
    assert complete("mnistkit visualise history runs/a ", cwd=run_tree) == everything
    assert complete("mnistkit train --resume sw", cwd=run_tree) == ["sweeps/s/trials/t1"]
    assert complete("mnistkit predict r", cwd=run_tree) == ["runs/a", "runs/b"]


def test_run_folder_search_is_bounded(run_tree, monkeypatch):
    monkeypatch.chdir(run_tree)
    assert run_folders("", depth=2) == ["runs/a", "runs/b"]
    assert len(run_folders("", budget=3)) < 3
    assert run_folders(str(run_tree) + "/runs/") == [str(run_tree / "runs/a"),
                                                     str(run_tree / "runs/b")]


def test_completion_in_bash_itself_offers_twolayer(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    script = mnistkit_cli("completion", "bash").stdout
    (tmp_path / "complete.bash").write_text(script)
    line = ('source complete.bash; COMP_WORDS=(mnistkit train --model tw); COMP_CWORD=3; '
            '_mnistkit_completion mnistkit; printf "%s\\n" "${COMPREPLY[@]}"')
    env = subprocess_env(MNISTKIT_LOAD_PLUGINS="", PATH=f"{BIN}:/usr/bin:/bin")
    done = subprocess.run([bash, "-c", line], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["twolayer"]


def test_completion_stays_light_and_fast():
    """No heavy import (plots, tables, data readers, onnx) while completing: what keeps it
    fast (~0.2 s on a quiet machine, README). The time bound only catches a hang: the
    test machine is shared and a loaded one takes seconds to start any Python."""
    code = ("import sys; from mnistkit.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('matplotlib', 'rich.table', 'rich.progress', "
            "'mnistkit.data.idx', 'mnistkit.export', 'onnx') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    env = subprocess_env(MNISTKIT_LOAD_PLUGINS="", _MNISTKIT_COMPLETE="bash_complete",
                         COMP_WORDS="mnistkit train --model tw", COMP_CWORD="3")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)
    seconds = time.perf_counter() - started
    assert done.stdout.splitlines() == ["plain,twolayer", "HEAVY []"], done.stdout + done.stderr
    assert seconds < 20.0


def test_augmentation_names_and_their_options():
    assert complete("mnistkit visualise augment --augment ") == ["affine", "elastic", "none"]
    assert complete("mnistkit visualise augment -a ") == ["sigma=", "alpha="]  # elastic
    assert complete("mnistkit visualise augment --augment affine -a s") == [
        "scale=", "shear=", "shift="]


def test_augmentation_and_recipe_completers_for_other_commands():
    import click

    from mnistkit.cli.completion import (
        complete_augmentation_options,
        complete_augmentations,
        complete_recipes,
    )
    from mnistkit.plugins import load_plugins
    from mnistkit.recipes import BUILTIN_RECIPES

    command = click.Command("x", params=[click.Option(["--augment"], default="none")])
    with click.Context(command, obj=load_plugins(entry_points=False)) as ctx:
        items = complete_recipes(ctx, None, "simard2003-")
        assert [i.value for i in items] == ["simard2003-affine", "simard2003-elastic",
                                            "simard2003-plain"]
        assert items[1].help == BUILTIN_RECIPES["simard2003-elastic"].title
        assert [i.value for i in complete_recipes(ctx, None, "")] == sorted(BUILTIN_RECIPES)
        assert [i.value for i in complete_augmentations(ctx, None, "a")] == ["affine"]
        ctx.params["augment"] = "elastic"
        assert [i.value for i in complete_augmentation_options(ctx, None, "al")] == ["alpha="]
        ctx.params["augment"] = "none"
        assert complete_augmentation_options(ctx, None, "") == []
