"""``mnistkit export``: a trained run as an ONNX model or plain NumPy arrays."""

from __future__ import annotations

from pathlib import Path

import click

from mnistkit.cli.common import load_run_for_cli, print_json, run_options
from mnistkit.cli.completion import complete_run_folders


@click.command("export", short_help="Export a trained run to ONNX (or .npz + JSON).")
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path),
                shell_complete=complete_run_folders)
@click.option("--format", "fmt", type=click.Choice(["onnx", "npz"]), default="onnx",
              show_default=True, help="onnx (needs pip install 'mnistkit[onnx]') or npz "
                                      "(the arrays, with a .json description beside them).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="File to write (default: RUN/model.onnx or RUN/model.npz).")
@click.option("--input", "input_kind", type=click.Choice(["uint8", "float"]), default="uint8",
              show_default=True, help="ONNX input: uint8 images (N, 28, 28), scaled inside the "
                                      "graph as in training, or float32 (N, 784) already scaled.")
@run_options
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_command(run_path: Path, fmt: str, output: Path | None, input_kind: str, which: str,
                   data_dir: Path | None, as_json: bool) -> None:
    """Export a trained run's model for use outside mnistkit.

    ONNX: Gemm/Relu/Softmax built from the parameters (opset 13, IR version 7),
    outputs 'probabilities' (and 'hidden' where the model has a hidden layer).
    npz: the layers' arrays in RUN/model.npz, their description in model.json.

    \b
    Example:
      mnistkit export runs/my-run -o model.onnx
      mnistkit export runs/my-run --format npz -o model.npz
    """
    from mnistkit.export import export_run

    loaded = load_run_for_cli(run_path, data_dir, which)
    dataset, record = loaded.dataset, loaded.record
    target = output if output is not None else run_path / f"model.{fmt}"
    written = export_run(loaded, dataset.class_names, target, fmt, input_kind)  # type: ignore[arg-type]
    if as_json:
        print_json({"run": str(run_path), "format": fmt, "model": record["model"],
                    "files": [str(p) for p in written]})
        return
    for path in written:
        click.echo(str(path))


COMMANDS = [export_command]
