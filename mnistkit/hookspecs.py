"""The hooks a mnistkit plugin can implement.

A plugin is a module (or object) with functions decorated by ``mnistkit.hookimpl``
and named like the specifications below. Packages make theirs known through the
``mnistkit`` entry-point group in their ``pyproject.toml``::

    [project.entry-points.mnistkit]
    myplugin = "mnistkit_myplugin"

Every ``register`` callback has the signature
``register(name, factory, *, options=None, help="")``:

- ``name``: what users type (``--model NAME``); lower case, digits and ``-``.
- ``factory``: the callable that builds the thing (see each hook for its arguments).
- ``options``: a dataclass whose fields (typed, each with a default) are the
  settings users may change from the command line, e.g. ``-m hidden_size=256``.
- ``help``: one line shown by ``mnistkit models`` and friends.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "mnistkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def mnistkit_register_models(register: Any) -> None:
    """Register models by calling ``register(name, factory, options=..., help=...)``.

    ``factory(options, rng, n_inputs, n_classes)`` returns a model: an object with
    ``params`` (a dict of float32 arrays), ``loss_and_grads(x, y) -> (loss, grads)``
    and ``scores(x) -> (batch, n_classes)``. ``rng`` is a ``numpy.random.Generator``
    owned by the trainer; keep it if the model needs randomness while training
    (dropout), so checkpoints can restore it. See ``mnistkit.models.base.Model``.
    """


@hookspec
def mnistkit_register_optimizers(register: Any) -> None:
    """Register optimizers by calling ``register(name, factory, options=..., help=...)``.

    ``factory(params, options)`` returns an optimizer that updates the ``params``
    dict in place on each ``step(grads)``, and exports and restores its state with
    ``state_dict()`` / ``load_state_dict(state)``. See
    ``mnistkit.optimizers.base.Optimizer``.
    """


@hookspec
def mnistkit_register_datasets(register: Any) -> None:
    """Register datasets by calling ``register(name, factory, options=..., help=...)``.

    ``factory(options, data_dir)`` returns a ``mnistkit.data.Dataset`` with uint8
    images ``(N, 28, 28)`` and uint8 labels ``(N,)`` for the ``train`` and ``test``
    splits. ``data_dir`` is the user's ``--data-dir`` (a ``pathlib.Path``) or
    ``None`` for the dataset's default location. Raise ``mnistkit.errors.DataError``
    with a clear message when the data is missing or invalid.
    """


@hookspec
def mnistkit_register_augmentations(register: Any) -> None:
    """Register distortions of training images by calling
    ``register(name, factory, options=..., help=...)`` (``--augment NAME``).

    ``factory(options)`` returns an object with ``distort(images, rng) -> images``:
    ``images`` is a uint8 batch ``(n, 28, 28)`` of training images (never validation or
    test images), the result a uint8 array of the same shape, one distorted copy per
    image, in order (labels are not changed). Draw all randomness from ``rng``, a
    ``numpy.random.Generator`` seeded for this batch alone: a batch is then the same
    after ``--resume``. ``distort`` runs in a background thread, one instance per
    training run, so it may keep work arrays between calls. See
    ``mnistkit.augment.Augmentation``.
    """


@hookspec
def mnistkit_register_recipes(register: Any) -> None:
    """Register named training configurations by calling
    ``register(name, recipe, help=...)`` (``mnistkit train --recipe NAME``).

    ``recipe`` is a ``mnistkit.recipes.Recipe``: the model, optimizer, their options
    and the training settings, with the source and the published test error they
    reproduce. The names it uses (model, optimizer, augmentation) are looked up when it
    is trained, so a recipe may use another plugin's model.
    """


@hookspec
def mnistkit_register_commands(cli: Any) -> None:
    """Add commands to the ``mnistkit`` command line.

    ``cli`` is the top-level ``click.Group``; call ``cli.add_command(command)``
    or decorate with ``@cli.command()``. Import heavy modules inside the command
    function, not at module level, so ``mnistkit --help`` stays fast.
    """
