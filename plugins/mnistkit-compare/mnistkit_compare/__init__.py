"""mnistkit plugin: the ``compare`` command, runs' results side by side.

    mnistkit compare runs/twolayer runs/mlp runs/adam
    mnistkit compare runs/* --sort test_accuracy --json
"""

from __future__ import annotations

from typing import Any

from mnistkit import hookimpl

__version__ = "0.1.0"


@hookimpl
def mnistkit_register_commands(cli: Any) -> None:
    """Add ``mnistkit compare``."""
    from mnistkit_compare.command import compare_command

    cli.add_command(compare_command)
