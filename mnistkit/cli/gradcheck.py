"""``mnistkit gradcheck``: compare a model's analytic gradients with numerical ones."""

from __future__ import annotations

from pathlib import Path

import click

from mnistkit.cli.common import (
    console,
    current_plugins,
    dataset_options,
    json_option,
    load_dataset_for_cli,
    print_json,
)
from mnistkit.cli.completion import complete_model_options, complete_models


@click.command("gradcheck")
@click.option("--model", "model_name", required=True, metavar="NAME",
              shell_complete=complete_models, help="Model to check (see 'mnistkit models').")
@click.option("-m", "--model-option", "model_options", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete_model_options,
              help="Set a model option, e.g. -m hidden_size=64 (repeatable).")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1, 1000),
              help="Number of examples in the batch.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed for the model's initial parameters, the batch and the entries checked.")
@click.option("--entries", default=12, show_default=True, type=click.IntRange(1, 10_000),
              help="Entries perturbed per parameter (two loss evaluations each).")
@click.option("--real", is_flag=True,
              help="Use the first --batch training images of --dataset instead of random ones.")
@dataset_options
@json_option
def gradcheck_command(model_name: str, model_options: tuple[str, ...], batch: int, seed: int,
                      entries: int, real: bool, dataset_name: str, data_dir: Path | None,
                      as_json: bool) -> None:
    """Check a model's gradients against central differences, in float64.

    Builds the model with its options, casts its parameters to float64 and compares
    loss_and_grads with (L(p+h) - L(p-h)) / 2h on a sample of entries of every
    parameter. Prints, per parameter, the relative error
    max|a-n| / max(|a|+|n|) and PASS below 1e-6. Exits with status 1 if any fails.
    This is the first thing to run on a model you are writing.

    The model gets the input size and the number of classes of --dataset (MNIST's
    784 and 10 by default); the batch is random unless --real. A model that cannot be
    built, breaks the model contract or raises is one line naming it (exit status 1).

    \b
    Example:
      mnistkit gradcheck --model twolayer
      mnistkit gradcheck --model mlp -m layers=64,32 --batch 4 --json
      mnistkit gradcheck --model softmax --real
      mnistkit gradcheck --model mlp --dataset emnist-letters --data-dir ~/emnist
    """
    import numpy as np

    from mnistkit.gradcheck import (
        DEFAULT_THRESHOLD,
        build_for_gradcheck,
        check_entry_gradients,
        random_batch,
    )
    from mnistkit.options import options_to_dict, parse_assignments

    entry = current_plugins().registry.get("model", model_name)
    options = entry.make_options(parse_assignments(model_options))
    dataset = load_dataset_for_cli(dataset_name, data_dir)  # its input size and classes
    n_inputs = int(np.prod(dataset.train.images.shape[1:]))
    n_classes = dataset.n_classes
    if real:
        split = dataset.train.subset(slice(0, batch))
        x = split.images.reshape(len(split), -1).astype(np.float64) / 255.0
        y = split.labels.astype(np.int64)
        source = f"{dataset.name}: first {len(split)} training images"
    else:
        x, y = random_batch(batch, n_inputs, n_classes, seed=seed)
        source = f"random batch of {batch}"
    model = build_for_gradcheck(entry, options, np.random.default_rng(seed), n_inputs,
                                n_classes, len(y))
    results = check_entry_gradients(entry, model, x, y, entries=entries, seed=seed)
    passed = all(r.passed for r in results)
    if as_json:
        print_json({"model": model_name, "options": options_to_dict(options), "batch": len(y),
                    "seed": seed, "inputs": source, "dataset": dataset.name,
                    "classes": n_classes, "threshold": DEFAULT_THRESHOLD,
                    "passed": passed, "params": [r.as_dict() for r in results]})
    else:
        _print_table(model_name, source, results, passed)
    if not passed:
        raise SystemExit(1)


def _print_table(model_name: str, source: str, results: list, passed: bool) -> None:
    from rich.table import Table

    table = Table(title=f"Gradient check of {model_name} ({source}, float64)",
                  title_justify="left")
    table.add_column("parameter", style="bold")
    table.add_column("shape")
    table.add_column("entries", justify="right")
    table.add_column("max |a-n|", justify="right")
    table.add_column("relative error", justify="right")
    table.add_column("result")
    for r in results:
        verdict = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
        table.add_row(r.name, "x".join(map(str, r.shape)) or "scalar", str(r.entries),
                      f"{r.max_abs_error:.2e}", f"{r.relative_error:.2e}", verdict)
    out = console()
    out.print(table)
    if passed:
        limit = results[0].threshold if results else 0.0
        out.print(f"All {len(results)} parameters pass (relative error < {limit:g}).")
    else:
        failed = ", ".join(r.name for r in results if not r.passed)
        out.print(f"[red]FAILED:[/] {failed}. The backward pass of these parameters does not "
                  "match the loss; see docs/plugins.md, 'Checking gradients'.")


COMMANDS = [gradcheck_command]
