"""Typed option dataclasses: describe, parse from ``key=value`` text, and serialise.

Plugins declare their settings as a dataclass with typed fields and defaults::

    @dataclass
    class TwoLayerOptions:
        hidden_size: int = field(default=256, metadata={"help": "hidden units"})

Supported field types: ``int``, ``float``, ``bool``, ``str``, ``typing.Literal``
of strings, and ``tuple[int, ...]`` (written ``512,256`` on the command line).

Bounds are declared, not hand-written: :func:`option` puts them in the field's
metadata (``ge``, ``gt``, ``le``, ``lt``, as in pydantic's ``Field``), and
:func:`check_declared` (call it from ``__post_init__``) enforces them, for values from
the command line and for options built in code alike; ``mnistkit models`` shows them::

    @dataclass
    class TwoLayerOptions:
        hidden_size: int = option(256, "hidden units", ge=1)
        reg: float = option(1e-5, "L2 strength", ge=0)

        def __post_init__(self) -> None:
            check_declared(self)

A choice among strings is a ``Literal`` type; rules between fields stay in
``__post_init__`` after ``check_declared``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from mnistkit.errors import OptionsError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One declared option: its name, type (as shown to users), default, help and the
    range its value must lie in (``""`` when any value of its type will do)."""

    name: str
    type_name: str
    default: Any
    help: str
    bounds: str = ""


#: The bounds a field's metadata may declare, and how each reads.
BOUND_KEYS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def option(default: Any, help: str = "", *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field for an option: its default, one line of help and its bounds
    (``ge`` >=, ``gt`` >, ``le`` <=, ``lt`` <; for ``tuple[int, ...]`` each item)."""
    declared = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    metadata = {"help": help, **{k: v for k, v in declared.items() if v is not None}}
    return dataclasses.field(default=default, metadata=metadata)


def bounds_text(field: dataclasses.Field) -> str:
    """The declared range of ``field`` as users read it: ``>= 0``, ``in [0, 1)``, or ``""``."""
    meta = field.metadata
    low = next(((k, meta[k]) for k in ("ge", "gt") if k in meta), None)
    high = next(((k, meta[k]) for k in ("le", "lt") if k in meta), None)
    if low and high:
        return (f"in {'[' if low[0] == 'ge' else '('}{low[1]:g}, "
                f"{high[1]:g}{']' if high[0] == 'le' else ')'}")
    if low or high:
        key, value = low or high
        return f"{BOUND_KEYS[key]} {value:g}"
    return ""


def _within(value: Any, meta: Mapping[str, Any]) -> bool:
    """Whether ``value`` satisfies the bounds in ``meta`` (NaN satisfies none)."""
    checks = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b,
              "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}
    return all(checks[key](value, meta[key]) for key in BOUND_KEYS if key in meta)


def check_declared(options: Any) -> None:
    """Raise ``ValueError`` naming the first field of the ``options`` instance outside
    its declared bounds: ``momentum must be in [0, 1); got 1.5``."""
    for f in dataclasses.fields(options):
        if not any(key in f.metadata for key in BOUND_KEYS):
            continue
        value = getattr(options, f.name)
        values = value if isinstance(value, tuple) else (value,)
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))
               or not _within(v, f.metadata)]
        if bad:
            what = f"each {f.name} value" if isinstance(value, tuple) else f.name
            raise ValueError(f"{what} must be {bounds_text(f)}; got {value!r}")


def _field_types(options_class: type) -> dict[str, Any]:
    return typing.get_type_hints(options_class)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "ints" if typing.get_args(tp)[:1] == (int,) else "list"
    return getattr(tp, "__name__", str(tp))


def describe_options(options_class: type | None) -> list[OptionInfo]:
    """List the options of ``options_class`` (empty for ``None``), in declaration order."""
    if options_class is None:
        return []
    types = _field_types(options_class)
    infos = []
    for f in dataclasses.fields(options_class):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        help_text = f.metadata.get("help", "")
        infos.append(OptionInfo(f.name, _type_name(types[f.name]), default, help_text,
                                bounds_text(f)))
    return infos


def check_options_class(options_class: type) -> None:
    """Raise ``TypeError`` unless ``options_class`` is a dataclass of typed, defaulted fields."""
    if not dataclasses.is_dataclass(options_class) or not isinstance(options_class, type):
        raise TypeError(f"options must be a dataclass type, got {options_class!r}")
    types = _field_types(options_class)
    for f in dataclasses.fields(options_class):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"option {f.name!r} of {options_class.__name__} has no default")
        _type_name(types[f.name])
        for key in BOUND_KEYS:
            bound = f.metadata.get(key)
            if key in f.metadata and (isinstance(bound, bool) or not isinstance(
                    bound, (int, float)) or not math.isfinite(bound)):
                raise TypeError(f"option {f.name!r} of {options_class.__name__}: bound "
                                f"{key}={bound!r} is not a finite number")
        if not _is_supported(types[f.name]):
            raise TypeError(
                f"option {f.name!r} of {options_class.__name__} has unsupported type "
                f"{types[f.name]!r}; use int, float, bool, str, Literal[...] or tuple[int, ...]"
            )


def _is_supported(tp: Any) -> bool:
    if tp in (int, float, bool, str):
        return True
    if typing.get_origin(tp) is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    return typing.get_origin(tp) is tuple and typing.get_args(tp) in ((int, ...),)


def convert_value(tp: Any, text: Any, name: str, owner: str) -> Any:
    """Convert ``text`` (a string, or an already-typed value) to the option type ``tp``."""
    where = f"option {name!r} of {owner}"
    try:
        if tp is bool:
            if isinstance(text, bool):
                return text
            low = str(text).strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if tp is int:
            if isinstance(text, bool):
                raise ValueError
            if isinstance(text, int):
                return text
            with contextlib.suppress(ValueError):  # exact, even beyond float precision
                return int(str(text).strip())
            value = float(str(text))
            if not value.is_integer():
                raise ValueError
            return int(value)
        if tp is float:
            return _finite_float(text, where)
        if tp is str:
            return str(text)
        if typing.get_origin(tp) is typing.Literal:
            choices = typing.get_args(tp)
            if str(text) not in choices:
                raise OptionsError(f"{where} must be one of {', '.join(choices)}; got {text!r}")
            return str(text)
        if typing.get_origin(tp) is tuple:
            if isinstance(text, (list, tuple)):
                return tuple(int(v) for v in text)
            parts = [p for p in str(text).replace(" ", "").split(",") if p]
            return tuple(int(p) for p in parts)
    except (TypeError, ValueError, OverflowError):
        raise OptionsError(f"{where} must be {_article(_type_name(tp))}; got {text!r}") from None
    raise OptionsError(f"{where} has an unsupported type {tp!r}")


def _finite_float(text: Any, where: str) -> float:
    """``text`` as a float; NaN and infinities (``nan``, ``inf``, ``1e999``) are refused:
    no setting means anything at those values, and training would only fail later."""
    if isinstance(text, bool):
        raise ValueError
    value = float(text)
    if not math.isfinite(value):
        raise OptionsError(f"{where} must be a finite number; got {text!r}")
    return value


def _article(type_name: str) -> str:
    names = {"int": "an integer", "float": "a number", "bool": "true or false",
             "str": "a string", "ints": "comma-separated integers like 512,256"}
    return names.get(type_name, type_name)


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """Turn ``["lr=0.1", "momentum=0.9"]`` into ``{"lr": "0.1", "momentum": "0.9"}``."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionsError(f"option {pair!r} is not of the form name=value")
        result[key.strip().replace("-", "_")] = value.strip()
    return result


def build_options(options_class: type | None, values: Mapping[str, Any], owner: str) -> Any:
    """Instantiate ``options_class`` from ``values`` (text or typed), validating every key.

    An unknown key raises :class:`OptionsError` listing the valid options with types,
    and suggesting the closest name.
    """
    if options_class is None:
        if values:
            raise OptionsError(f"{owner} takes no options; got {', '.join(sorted(values))}")
        return None
    types = _field_types(options_class)
    known = [f.name for f in dataclasses.fields(options_class)]
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            valid = ", ".join(f"{i.name} ({i.type_name})" for i in describe_options(options_class))
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise OptionsError(f"{owner} has no option {key!r}.{hint} Valid options: {valid}")
        kwargs[key] = convert_value(types[key], value, key, owner)
    try:
        instance = options_class(**kwargs)
    except (TypeError, ValueError) as exc:
        raise OptionsError(f"invalid options for {owner}: {exc}") from None
    return instance


def options_to_dict(options: Any) -> dict[str, Any]:
    """A JSON-ready dict of an options instance (tuples become lists); ``{}`` for ``None``."""
    if options is None:
        return {}
    values = dataclasses.asdict(options)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
