"""mnistkit: train and study small neural networks on MNIST with nothing but NumPy.

Plugin authors need only ``hookimpl`` from here::

    from mnistkit import hookimpl

    @hookimpl
    def mnistkit_register_models(register):
        register("mymodel", MyModel, options=MyOptions, help="One line about it.")
"""

from mnistkit.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
