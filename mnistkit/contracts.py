"""The plugin contracts in one place: building plugin objects and checking them.

Models, optimizers, datasets and augmentations come from plugins, so everything that
uses one (training and run folders, ``mnistkit gradcheck``, the conformance kit
:mod:`mnistkit.testing`) builds it here and checks it with the functions below. The
checks do not raise: they return the problems found, each one line saying what is
wrong (a :class:`Problem`, a ``str`` whose ``fix`` says how to mend it), and every
caller raises them in its own terms: :class:`~mnistkit.errors.PluginError` on the
command line, ``AssertionError`` with the fix in the conformance kit,
:class:`~mnistkit.gradcheck.GradientCheckError` in the gradient check.

- Calling a plugin and naming it in one line when it fails: :func:`exception_line`,
  :func:`plugin_error`, :func:`call_plugin`.
- The factories' calling conventions: :func:`new_model`, :func:`new_optimizer`.
- Building from a registry entry with validated options, failures as one line:
  :func:`build_model`, :func:`build_optimizer`, :func:`build_dataset`,
  :func:`build_augmentation`.
- The checks: :func:`model_problems` (:func:`interface_problems` and
  :func:`params_problems`), :func:`step_problems` (what ``loss_and_grads`` returned),
  :func:`scores_problems`, :func:`optimizer_problems`, :func:`dataset_problems`,
  :func:`augmentation_problems`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.errors import MemoryLimitError, MnistkitError, OptionsError, PluginError
from mnistkit.memory import OPTIMIZER_SLOTS, check_model_fits

#: The methods every optimizer has (see :mod:`mnistkit.optimizers.base`).
OPTIMIZER_METHODS = ("step", "state_dict", "load_state_dict", "start_epoch")
#: The methods every model has (see :mod:`mnistkit.models.base`).
MODEL_METHODS = ("loss_and_grads", "scores")


class Problem(str):
    """A broken contract as one line (the string itself); ``fix`` says how to mend it."""

    fix: str

    def __new__(cls, text: str, fix: str = "") -> Problem:
        problem = super().__new__(cls, text)
        problem.fix = fix
        return problem


# -- calling a plugin: failures in one line, naming it --------------------------------


def exception_line(exc: BaseException) -> str:
    """An exception in one line: ``TypeError: first line of its message``. A
    :class:`~mnistkit.errors.MnistkitError` explains itself: its first line alone."""
    text = (str(exc).splitlines() or [""])[0]
    if isinstance(exc, MnistkitError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe(entry: Any) -> str:
    """``model 'mlp' from plugin 'mlp'`` for a registry entry (a string is kept as it is)."""
    if isinstance(entry, str):
        return entry
    return f"{entry.kind} {entry.name!r} from plugin {entry.plugin!r}"


def plugin_error(entry: Any, failure: str, exc: BaseException) -> MnistkitError:
    """The one-line error for ``exc``, raised by the plugin of ``entry`` (a registry entry,
    or a description like ``"model 'x'"``) while it ``failure`` (``"could not be built"``):
    a :class:`MemoryLimitError` for a failed allocation, a :class:`PluginError` for
    anything else; a :class:`MnistkitError` is returned as it is."""
    if isinstance(exc, MnistkitError):
        return exc
    if isinstance(exc, MemoryError):  # NumPy's allocation error too
        text = (str(exc).splitlines() or [""])[0] or "out of memory"
        return MemoryLimitError(f"{describe(entry)} {failure}: not enough memory ({text})")
    return PluginError(f"{describe(entry)} {failure}: {exception_line(exc)}")


def call_plugin(entry: Any, failure: str, call: Callable[[], Any]) -> Any:
    """``call()``, a plugin's code; an unexpected exception becomes one line naming the
    plugin (see :func:`plugin_error`). ``MnistkitError`` passes through unchanged."""
    try:
        return call()
    except MnistkitError:
        raise
    except MemoryError as exc:  # no traceback worth keeping: the allocation failed
        raise plugin_error(entry, failure, exc) from None
    except Exception as exc:
        raise plugin_error(entry, failure, exc) from exc


# -- the factories' calling conventions ------------------------------------------------


def new_model(factory: Callable[..., Any], options: Any, rng: np.random.Generator,
              n_inputs: int, n_classes: int) -> Any:
    """``factory(options, rng, n_inputs=..., n_classes=...)``: how every model is made."""
    return factory(options, rng, n_inputs=n_inputs, n_classes=n_classes)


def new_optimizer(factory: Callable[..., Any], params: dict[str, np.ndarray],
                  options: Any) -> Any:
    """``factory(params, options)``: how every optimizer is made."""
    return factory(params, options)


def make_options(entry: Any, options: Any) -> Any:
    """The options of ``entry`` from ``options``: a dict of values (text or typed,
    validated), ``None`` for the defaults, or an instance of its options class, used as
    it is."""
    if options is None or isinstance(options, Mapping):
        return entry.make_options(dict(options or {}))
    if entry.options is not None and isinstance(options, entry.options):
        return options
    expected = "no options" if entry.options is None else (
        f"a dict of values or a {entry.options.__name__}")
    raise OptionsError(f"{entry.kind} {entry.name!r} takes {expected}; got "
                       f"{type(options).__name__}")


# -- building from a registry entry ----------------------------------------------------


def build_model(entry: Any, options: Any, rng: np.random.Generator, n_inputs: int,
                n_classes: int, *, batch_size: int | None = None,
                probe: np.ndarray | None = None,
                params_copies: float = 1 + OPTIMIZER_SLOTS, work_factor: float = 1.0,
                action: str = "training") -> Any:
    """The model of the registry ``entry``, built with validated ``options`` (see
    :func:`make_options`) and checked (:func:`model_problems`).

    With ``batch_size``, a model whose memory estimate does not fit is refused before
    anything is allocated (:func:`mnistkit.memory.check_model_fits` with
    ``params_copies``, ``work_factor`` and ``action``). With ``probe`` (a few inputs
    ``(n, n_inputs)``), ``scores(probe)`` is checked too, so a wrong shape fails here,
    named, not later inside evaluation. Raises :class:`PluginError` (or
    :class:`MemoryLimitError`) in one line naming the model and its plugin.
    """
    made = make_options(entry, options)
    if batch_size is not None:
        check_model_fits(entry, made, n_inputs, n_classes, batch_size,
                         params_copies=params_copies, work_factor=work_factor, action=action)
    model = call_plugin(entry, "could not be built",
                        lambda: new_model(entry.factory, made, rng, n_inputs, n_classes))
    _raise_first(entry, model_problems(model))
    if probe is not None:
        scores = call_plugin(entry, "failed in scores()", lambda: model.scores(probe))
        _raise_first(entry, scores_problems(scores, len(probe), n_classes))
    return model


def build_optimizer(entry: Any, params: dict[str, np.ndarray], options: Any) -> Any:
    """The optimizer of the registry ``entry`` over ``params``, with validated
    ``options``, checked (:func:`optimizer_problems`); failures are one
    :class:`PluginError` line naming it."""
    made = make_options(entry, options)
    optimizer = call_plugin(entry, "could not be built",
                            lambda: new_optimizer(entry.factory, params, made))
    _raise_first(entry, optimizer_problems(optimizer))
    return optimizer


def build_dataset(entry: Any, options: Any, data_dir: Path | None) -> Any:
    """The dataset of the registry ``entry`` read from ``data_dir`` (``None``: its default
    location), checked (:func:`dataset_problems`)."""
    from mnistkit.errors import DataError

    made = make_options(entry, options)
    dataset = call_plugin(entry, "failed to load", lambda: entry.factory(made, data_dir))
    problems = dataset_problems(dataset)
    if problems:
        raise DataError(f"{describe(entry)}: {problems[0]}")
    return dataset


def build_augmentation(entry: Any, options: Any) -> Any:
    """The augmentation of the registry ``entry``, checked
    (:func:`augmentation_problems`)."""
    made = make_options(entry, options)
    augmentation = call_plugin(entry, "could not be built", lambda: entry.factory(made))
    _raise_first(entry, augmentation_problems(augmentation))
    return augmentation


def _raise_first(entry: Any, problems: list[Problem]) -> None:
    if problems:
        raise PluginError(f"{describe(entry)}: {problems[0]}")


# -- the checks: problems as text --------------------------------------------------------


def interface_problems(model: Any) -> list[Problem]:
    """What a model lacks: ``params`` as a non-empty dict, ``loss_and_grads``, ``scores``."""
    problems = []
    params = getattr(model, "params", None)
    if not isinstance(params, dict) or not params:
        problems.append(Problem(
            f"model.params is {type(params).__name__}, not a non-empty dict",
            "set self.params = {'W': ..., 'b': ...} (float32 arrays) in __init__"))
    for method in MODEL_METHODS:
        if not callable(getattr(model, method, None)):
            problems.append(Problem(f"the model has no method {method}()",
                                    "see mnistkit.models.base.Model for the contract"))
    return problems


def params_problems(params: dict[str, Any], dtype: Any = np.float32) -> list[Problem]:
    """What is wrong with a model's parameters: keys that are not plain strings (they
    become ``.npz`` names), values that are not finite ``dtype`` arrays."""
    problems = []
    want = np.dtype(dtype)
    for key, p in params.items():
        if not isinstance(key, str) or not key or "/" in key:
            problems.append(Problem(f"parameter key {key!r} is not a plain string",
                                    "name parameters like 'W1', 'b1' (they become .npz names)"))
            continue
        if not isinstance(p, np.ndarray) or p.dtype != want:
            kind = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
            problems.append(Problem(f"parameter {key!r} is {kind}, not a {want} array",
                                    f"create parameters with .astype(np.{want})"))
        elif not all_finite(p):
            problems.append(Problem(f"parameter {key!r} has NaN or infinite values",
                                    "check the initialisation"))
    return problems


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of ``array`` is finite, without a temporary as large as it
    (NaN propagates through ``min`` and ``max``; infinities are their own extremes)."""
    if array.size == 0 or array.dtype.kind not in "fc":
        return True
    return bool(np.isfinite(array.min()) and np.isfinite(array.max()))


def model_problems(model: Any, dtype: Any = np.float32) -> list[Problem]:
    """:func:`interface_problems`, then (with a dict of parameters)
    :func:`params_problems`: what a freshly built model breaks of the contract."""
    problems = interface_problems(model)
    params = getattr(model, "params", None)
    if isinstance(params, dict):
        problems += params_problems(params, dtype)
    return problems


def step_problems(params: dict[str, np.ndarray], loss: Any, grads: Any) -> list[Problem]:
    """What is wrong with ``(loss, grads)`` returned by ``loss_and_grads`` for ``params``:
    ``grads`` must be a dict with exactly the parameters' keys, each gradient an array of
    its parameter's shape and dtype, and ``loss`` a number (finite or not: a non-finite
    loss is divergence, which callers treat in their own way). Each problem starts with
    ``loss_and_grads``; prefix the model's name."""
    where = "loss_and_grads"
    if not isinstance(grads, dict):
        return [Problem(f"{where} must return (loss, dict of gradients); got "
                        f"{type(grads).__name__} as the gradients",
                        "return (loss, grads): a float and a dict")]
    problems = []
    if set(grads) != set(params):
        missing = sorted(map(str, set(params) - set(grads)))
        extra = sorted(map(str, set(grads) - set(params)))
        detail = ", ".join(part for part in (f"missing {missing}" if missing else "",
                                             f"extra {extra}" if extra else "") if part)
        problems.append(Problem(
            f"{where} returned gradients for {sorted(map(str, grads))} but the parameters are "
            f"{sorted(map(str, params))} ({detail})",
            "return one gradient per parameter, with the keys of model.params"))
    for key, p in params.items():
        if key not in grads:
            continue
        g = grads[key]
        if not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
            got = (f"{g.dtype} {g.shape}" if isinstance(g, np.ndarray)
                   else type(g).__name__)
            hint = ("; compute in the dtype of model.params (no hard-coded float32)"
                    if isinstance(g, np.ndarray) and g.dtype != p.dtype else "")
            problems.append(Problem(
                f"{where}: gradient {key!r} is {got}, expected {p.dtype} {p.shape} like its "
                f"parameter{hint}", "give each gradient the shape and dtype of its parameter"))
    try:
        float(loss)
    except (TypeError, ValueError):
        got = f"{type(loss).__name__} {getattr(loss, 'shape', '')}".strip()
        problems.append(Problem(f"{where} must return a number as loss; got {got}",
                                "return the mean loss over the batch as a Python float"))
    return problems


def scores_problems(scores: Any, batch: int, n_classes: int,
                    dtype: Any = None) -> list[Problem]:
    """What is wrong with ``scores(x)`` for a batch of ``batch``: it must be floats of
    shape ``(batch, n_classes)``, and of ``dtype`` when given (the parameters')."""
    expected = (batch, n_classes)
    kind = getattr(getattr(scores, "dtype", None), "kind", None)
    if getattr(scores, "shape", None) != expected or kind != "f":
        got = f"{getattr(scores, 'dtype', type(scores).__name__)} {getattr(scores, 'shape', '')}"
        return [Problem(f"scores() returned {got.strip()}; expected floats of shape "
                        f"{expected} (images, classes)", "return (batch, n_classes) logits")]
    if dtype is not None and scores.dtype != np.dtype(dtype):
        return [Problem(f"scores() returned {scores.dtype} for {np.dtype(dtype)} parameters",
                        "compute in the dtype of the parameters")]
    return []


def optimizer_problems(optimizer: Any) -> list[Problem]:
    """What an optimizer lacks: ``step``, ``state_dict``, ``load_state_dict``,
    ``start_epoch`` and a positive finite ``lr``."""
    problems = []
    for method in OPTIMIZER_METHODS:
        if not callable(getattr(optimizer, method, None)):
            problems.append(Problem(
                f"the optimizer has no method {method}()",
                "subclass mnistkit.optimizers.base.BaseOptimizer, which provides the "
                "bookkeeping"))
    lr = getattr(optimizer, "lr", None)
    if isinstance(lr, bool) or not isinstance(lr, (float, int)) or not np.isfinite(lr) or lr <= 0:
        problems.append(Problem(f"optimizer.lr is {lr!r}",
                                "set self.lr to the learning rate in use (a positive float); "
                                "the trainer displays it"))
    return problems


def dataset_problems(dataset: Any) -> list[Problem]:
    """What is wrong with what a dataset factory returned: it must be a
    :class:`mnistkit.data.Dataset` (which validates its own arrays)."""
    from mnistkit.data.dataset import Dataset

    if isinstance(dataset, Dataset):
        return []
    return [Problem(f"returned {type(dataset).__name__}, not a mnistkit.data.Dataset",
                    "return mnistkit.data.Dataset(name, train, test, ...)")]


def augmentation_problems(augmentation: Any) -> list[Problem]:
    """What an augmentation lacks: a ``distort(images, rng)`` method."""
    if callable(getattr(augmentation, "distort", None)):
        return []
    return [Problem(f"its factory returned {type(augmentation).__name__}, which has no "
                    "distort(images, rng) method",
                    "return an object with distort(images, rng) -> images (see "
                    "mnistkit.augment.Augmentation)")]
