"""Train the recipes and write README's table of published against measured error.

    python benchmarks/recipes.py run [NAME ...]   # train them (default: all), keep run.json
    python benchmarks/recipes.py table            # write the table from the kept run.json

``run`` trains each recipe with exactly the command the table shows
(``mnistkit train --recipe NAME --out ...``), one after another, and copies each run's
``run.json`` and ``history.csv`` to ``benchmarks/results/recipes/`` (the checkpoints stay
in the scratch folder). ``table`` reads only those files: every figure in the table comes
from a run's record, none is typed by hand. It writes
``benchmarks/results/recipes/table.md`` and the part of README.md between the
``recipes-table`` markers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "recipes"
README = ROOT / "README.md"
START, END = "<!-- recipes-table:start -->", "<!-- recipes-table:end -->"


def recipe_names() -> list[str]:
    """The recipes registered by the installed plugins."""
    from mnistkit.plugins import get_registry

    return get_registry().names("recipe")


def run(names: list[str]) -> None:
    """Train each recipe through the CLI and keep its record."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="mnistkit-recipes-"))
    try:
        for name in names:
            out = scratch / name
            command = [sys.executable, "-m", "mnistkit", "train", "--recipe", name,
                       "--out", str(out), "-q"]
            print(f"== {name}: {' '.join(command[2:])}", flush=True)
            subprocess.run(command, check=True, cwd=ROOT)
            for file in ("run.json", "history.csv"):
                shutil.copyfile(out / file, RESULTS / f"{name}.{file}")
            shutil.rmtree(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _row(name: str, record: dict, recipes: dict) -> str:
    recipe = recipes.get(name)
    published = recipe.published_error if recipe is not None else None
    measured = 100 * (1 - record["metrics"]["test_accuracy"])
    t = record["training"]
    seconds = record["wall_seconds"]
    wall = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    difference = "" if published is None else f" ({measured - published:+.2f})"
    shown = "-" if published is None else f"{published:.2f}%"
    source = recipe.title if recipe is not None else name
    return (f"| `{name}` | {source} | {shown} | **{measured:.2f}%**{difference} | "
            f"{t['seed']} | {len(record['history'])} | {wall} | "
            f"`mnistkit train --recipe {name}` |")


def table() -> str:
    """The markdown table of every kept record, in the registry's order."""
    from mnistkit.plugins import get_registry

    registry = get_registry()
    recipes = {e.name: e.factory for e in registry.entries("recipe")}
    lines = ["| recipe | what | published error | mnistkit error (difference) | seed | "
             "epochs | wall time | command |", "|---|---|---|---|---|---|---|---|"]
    kept = sorted(RESULTS.glob("*.run.json"))
    if not kept:
        raise SystemExit("no kept runs: run 'python benchmarks/recipes.py run' first")
    order = {name: i for i, name in enumerate(recipes)}
    for path in sorted(kept, key=lambda p: order.get(p.name[:-len(".run.json")], 99)):
        name = path.name[:-len(".run.json")]
        lines.append(_row(name, json.loads(path.read_text()), recipes))
    return "\n".join(lines) + "\n"


CURVE = ROOT / "docs" / "images" / "simard2003-elastic.png"


def write_curve(name: str = "simard2003-elastic", path: Path = CURVE) -> None:
    """The learning curve of a kept run: validation error and training loss per epoch."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = RESULTS / f"{name}.history.csv"
    if not history.exists():
        return
    rows = list(csv.DictReader(history.open()))
    epochs = [int(r["epoch"]) for r in rows]
    val_error = [100 * (1 - float(r["val_accuracy"])) for r in rows]
    record = json.loads((RESULTS / f"{name}.run.json").read_text())
    test_error = 100 * (1 - record["metrics"]["test_accuracy"])
    fig, left = plt.subplots(figsize=(8, 4), dpi=100)
    left.plot(epochs, val_error, color="tab:blue", lw=1, label="validation error (5,000 images)")
    left.axhline(0.7, color="tab:red", ls="--", lw=1, label="Simard et al. 2003: 0.7%")
    left.axhline(test_error, color="tab:green", ls=":", lw=1,
                 label=f"test error of the best epoch: {test_error:.2f}%")
    left.set(xlabel="epoch", ylabel="error (%)", ylim=(0, 2.5),
             title=f"mnistkit train --recipe {name}")
    right = left.twinx()
    right.plot(epochs, [float(r["train_loss"]) for r in rows], color="tab:gray", lw=0.8,
               label="training loss (distorted images)")
    right.set(ylabel="training loss")
    lines = left.get_lines() + right.get_lines()
    left.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_table() -> None:
    """Write table.md, README's table between the markers and the learning curve."""
    write_curve()
    text = table()
    (RESULTS / "table.md").write_text(text)
    readme = README.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{text}{END}{tail}")
    print(text, end="")


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("run", "table"):
        raise SystemExit(__doc__)
    if argv[0] == "run":
        os.environ.setdefault("PYTHONHASHSEED", "0")
        run(argv[1:] or recipe_names())
    write_table()


if __name__ == "__main__":
    main(sys.argv[1:])
