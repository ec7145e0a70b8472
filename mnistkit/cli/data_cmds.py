"""Commands about the data: ``inspect`` and ``show-samples``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mnistkit.cli.common import (
    console,
    dataset_options,
    json_option,
    load_dataset_for_cli,
    print_json,
)
from mnistkit.errors import DataError

_STATUS_STYLE = {"ok": "green", "mismatch": "bold red", "unknown": "yellow",
                 "not checked": "yellow"}


@click.command("inspect")
@dataset_options
@click.option("--verify", is_flag=True,
              help="Re-read the files (bypassing the cache) and check the MD5 of their "
                   "uncompressed content against the published sums; exit 1 unless all match.")
@json_option
def inspect_command(dataset_name: str, data_dir: Path | None, verify: bool,
                    as_json: bool) -> None:
    """Check a dataset: counts, classes, checksums.

    Per split: the number of images, image shape and dtype, images per class, pixel
    mean and standard deviation (0..1 scale) and checksum status. The sanity check to
    run first. Checksums are always checked in this process: arrays served from the
    cache are hashed again (SHA-256 against mnistkit's own sums of the published
    files); --verify re-reads and re-hashes the files themselves.

    \b
    Example:
      mnistkit inspect
      mnistkit inspect --verify --json
      mnistkit inspect --data-dir ~/data/mnist     # any copy: plain, .gz, torchvision
    """
    from mnistkit.data.cache import fresh_reads
    from mnistkit.data.summary import summarize_dataset

    if verify:
        with fresh_reads():
            dataset = load_dataset_for_cli(dataset_name, data_dir)
    else:
        dataset = load_dataset_for_cli(dataset_name, data_dir)
    summary = summarize_dataset(dataset)
    summary["checksums_checked"] = _when_checked(summary, verify)
    if as_json:
        print_json(summary)
    else:
        _render_inspect(summary)
    if verify:
        _fail_unless_verified(summary)


def _when_checked(summary: dict[str, Any], verify: bool) -> str:
    """What the checksums shown are: always established in this process, except for
    arrays served from the cache that have no published sum (nothing to check them by)."""
    if verify:
        return "now, re-reading the files"
    if all(f["md5"] for f in summary["files"]):
        return "now"
    return "now, except files served from the cache without a published sum (not hashed)"


def _fail_unless_verified(summary: dict[str, Any]) -> None:
    files = summary["files"]
    bad = [f for f in files if f["status"] == "mismatch"]
    unknown = [f["file"] for f in files if f["status"] in ("unknown", "not checked")]
    if bad:
        detail = "; ".join(f"{f['file']} has {f['md5']}, published {f['expected']}" for f in bad)
        raise DataError(f"checksum mismatch in dataset {summary['dataset']!r}: {detail}")
    if not files:
        raise DataError(f"dataset {summary['dataset']!r} has no checksums to verify")
    if unknown:
        raise DataError(f"dataset {summary['dataset']!r}: no published checksum for "
                        f"{', '.join(unknown)}")


def _render_inspect(summary: dict[str, Any]) -> None:
    from rich.table import Table

    from mnistkit.terminal import bar

    out = console()
    out.print(f"[bold]{summary['dataset']}[/]  {summary['source']}", markup=True)
    names = summary["class_names"]
    for split, rec in summary["splits"].items():
        shape = "x".join(str(d) for d in rec["image_shape"])
        status = rec["checksum"]
        table = Table(
            title=f"[bold]{split}[/]: {rec['count']:,} images, {shape} {rec['dtype']}",
            caption=(f"pixels (0..1): mean {rec['pixel_mean']:.4f}, std {rec['pixel_std']:.4f}"
                     f"   checksums: [{_STATUS_STYLE[status]}]{status}[/]"),
            title_justify="left", caption_justify="left")
        table.add_column("class")
        table.add_column("images", justify="right")
        table.add_column("share", justify="right")
        table.add_column("", no_wrap=True)
        counts = rec["class_counts"]
        top = max(counts) if counts and max(counts) else 1
        for name, count in zip(names, counts, strict=True):
            share = count / rec["count"] if rec["count"] else 0.0
            table.add_row(name, f"{count:,}", f"{share:.1%}",
                          f"[cyan]{bar(count / top, 20)}[/]")
        out.print(table)
    files = Table(title=f"files (MD5 of the uncompressed content, checked "
                        f"{summary['checksums_checked']})", title_justify="left")
    for column in ("file", "md5", "status"):
        files.add_column(column)
    for rec in summary["files"]:
        style = _STATUS_STYLE[rec["status"]]
        shown = rec["status"] if rec["status"] != "mismatch" else \
            f"mismatch (published {rec['expected']})"
        files.add_row(rec["file"], rec["md5"] or "-", f"[{style}]{shown}[/]")
    out.print(files)


@click.command("show-samples")
@dataset_options
@click.option("-n", "count", type=click.IntRange(1, 400), default=16, show_default=True,
              help="Number of samples.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train",
              show_default=True, help="Split to draw from.")
@click.option("--digit", type=click.IntRange(min=0), default=None, metavar="D",
              help="Only samples of class D (a digit for MNIST).")
@click.option("--seed", type=int, default=None, metavar="S",
              help="Random seed; default a fresh one, printed so the grid can be redrawn.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("samples.png"), show_default=True,
              help="Image file to write (.png, .svg or .pdf).")
@click.option("--terminal", is_flag=True,
              help="Preview the digits in the terminal with block characters; write no file.")
def show_samples_command(dataset_name: str, data_dir: Path | None, count: int, split: str,
                         digit: int | None, seed: int | None, output: Path,
                         terminal: bool) -> None:
    """Draw random samples with their labels.

    A grid of random samples, each titled with its label, drawn into a PNG (its path is
    printed), or previewed in the terminal with --terminal.

    \b
    Example:
      mnistkit show-samples -o samples.png
      mnistkit show-samples -n 25 --split test --digit 7 --seed 1
      mnistkit show-samples -n 8 --terminal
    """
    from mnistkit.cli.common import pick_samples

    dataset = load_dataset_for_cli(dataset_name, data_dir)
    data = dataset.split(split)
    picked, seed = pick_samples(dataset, data.labels, count, seed, digit)
    images, labels = data.images[picked], data.labels[picked]
    what = f"{len(picked)} {split} samples of {dataset.name}"
    what += f" (class {dataset.class_names[digit]})" if digit is not None else ""
    if terminal:
        _print_digits(images, [dataset.class_names[int(y)] for y in labels],
                      f"{what}, seed {seed}")
        return
    import matplotlib

    matplotlib.use("Agg")
    from mnistkit.plots import sample_grid, save_figure

    fig = sample_grid(images, labels, dataset.class_names, title=f"{what}, seed {seed}")
    path = save_figure(fig, output)
    click.echo(f"wrote {path} ({what}, seed {seed})")


def _print_digits(images: Any, titles: list[str], heading: str) -> None:
    from rich.text import Text

    from mnistkit.terminal import digits_grid

    out = console()
    out.print(Text(heading, style="bold"))
    for line in digits_grid(images, titles, width=out.width):
        out.print(Text(line), no_wrap=True, overflow="ignore", crop=False)


COMMANDS = [inspect_command, show_samples_command]
