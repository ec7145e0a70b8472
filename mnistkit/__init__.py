"""mnistkit: train and study small neural networks on MNIST with nothing but NumPy.

Plugin authors need only ``hookimpl`` from here::

    from mnistkit import hookimpl

    @hookimpl
    def mnistkit_register_models(register):
        register("mymodel", MyModel, options=MyOptions, help="One line about it.")
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> object:
    # ``hookimpl`` (pluggy) is imported on first use: ``import mnistkit`` stays instant, so
    # the command line is catching Ctrl-C before anything slow has been imported.
    if name == "hookimpl":
        from mnistkit.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
