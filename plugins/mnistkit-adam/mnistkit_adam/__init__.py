"""mnistkit plugin: the ``adam`` and ``rmsprop`` optimizers.

Installed, it is found through the ``mnistkit`` entry-point group::

    pip install mnistkit-adam
    mnistkit train --model twolayer --optimizer adam
    mnistkit train --model twolayer --optimizer rmsprop -o lr=0.0005
"""

from __future__ import annotations

from typing import Any

from mnistkit import hookimpl

__version__ = "0.1.0"


@hookimpl
def mnistkit_register_optimizers(register: Any) -> None:
    """Register ``adam`` and ``rmsprop``."""
    from mnistkit_adam.adam import Adam, AdamOptions
    from mnistkit_adam.rmsprop import RMSprop, RMSpropOptions

    register("adam", Adam, options=AdamOptions,
             help="Adam (Kingma & Ba 2015) with bias correction; weight_decay > 0 gives AdamW.")
    register("rmsprop", RMSprop, options=RMSpropOptions,
             help="RMSprop (Hinton 2012): steps scaled by a running RMS of the gradients.")
