"""What a sweep is: the swept settings, the trials they expand to, and the ranked summary.

A sweep crosses lists of values for the settings of a run (model, optimizer, their
options, epochs, batch size, dataset) with a number of seeds. ``grid`` takes every
combination; ``random`` draws ``trials`` combinations with a seeded generator, so the
same sweep always makes the same trials. Every trial is an ordinary run folder
(``SWEEP/trials/t0007``), so ``test``, ``visualise`` and ``predict`` work on it.
Running the trials is :mod:`mnistkit.sweep_runner`.

The summary ranks configurations by their mean **validation** accuracy over seeds (the
test set is only reported, never used to choose).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnistkit.errors import OptionsError, setting
from mnistkit.registry import Registry

#: Settings a sweep can give one value or a list of values, and their defaults.
SCALAR_SETTINGS: dict[str, Any] = {
    "model": "twolayer", "optimizer": "sgd", "dataset": "mnist", "epochs": 20,
    "batch_size": 128,
}
#: Settings that are the same for every trial.
FIXED_SETTINGS: dict[str, Any] = {"val_size": None, "limit": None}  # None: dataset default
SEARCHES = ("grid", "random", "tpe")
DEFAULT_TPE_BATCH = 4
MAX_TRIALS = 100_000
_MAX_TOML_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A sweep as the user gave it: each swept setting maps to its list of values."""

    axes: dict[str, list[Any]]          # "model", "epochs", "m.hidden_size", "o.lr", ...
    seeds: list[int]
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)  # val_size, limit
    search: str = "grid"
    trials: int | None = None           # configurations drawn by ``random`` or ``tpe``
    search_seed: int = 0
    tpe_batch: int = DEFAULT_TPE_BATCH  # configurations ``tpe`` asks for at a time

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (stored in ``sweep.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        """The inverse of :meth:`to_dict`, validated."""
        try:
            spec = cls(axes={str(k): list(v) for k, v in dict(data["axes"]).items()},
                       seeds=[int(s) for s in data["seeds"]], fixed=dict(data["fixed"]),
                       search=str(data["search"]), trials=data.get("trials"),
                       search_seed=int(data.get("search_seed", 0)),
                       tpe_batch=int(data.get("tpe_batch", DEFAULT_TPE_BATCH)))
        except (KeyError, TypeError, ValueError) as exc:
            raise OptionsError(f"the sweep description is damaged ({exc})") from None
        check_spec(spec)
        return spec


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """One trial: a complete set of run settings and a seed."""

    index: int
    config: dict[str, Any]  # model, optimizer, model_options, optimizer_options, epochs, ...
    seed: int

    @property
    def trial_id(self) -> str:
        """``t0007``: the trial's folder name and its name in tables."""
        return f"t{self.index:04d}"

    def config_key(self) -> str:
        """The configuration without the seed, as one comparable string."""
        return describe_config(self.config)


def check_spec(spec: SweepSpec) -> None:
    """Raise :class:`OptionsError` for a sweep that cannot run."""
    if spec.search not in SEARCHES:
        raise OptionsError(f"{setting('search')} must be one of {', '.join(SEARCHES)}; "
                           f"got {spec.search!r}")
    if not spec.seeds or any(s < 0 for s in spec.seeds) or len(set(spec.seeds)) != len(
            spec.seeds):
        raise OptionsError(f"seeds must be distinct numbers >= 0; got {spec.seeds}")
    for name, values in spec.axes.items():
        if not values:
            raise OptionsError(f"setting {name!r} has an empty list of values")
    if spec.search != "grid" and not (isinstance(spec.trials, int) and spec.trials >= 1):
        raise OptionsError(f"{setting('search')} {spec.search} needs {setting('trials')} N "
                           f"(N >= 1); got "
                           f"{spec.trials!r}")
    if spec.tpe_batch < 1:
        raise OptionsError(f"tpe_batch must be at least 1; got {spec.tpe_batch}")
    count = count_trials(spec)
    if count > MAX_TRIALS:
        raise OptionsError(f"this sweep has {count:,} trials; at most {MAX_TRIALS:,} are "
                           "allowed (use --search random --trials N)")


def count_trials(spec: SweepSpec) -> int:
    """How many trials ``spec`` expands to."""
    configs = spec.trials if spec.search != "grid" else math.prod(
        len(v) for v in spec.axes.values())
    return int(configs or 0) * len(spec.seeds)


def expand_trials(spec: SweepSpec, registry: Registry) -> list[TrialSpec]:
    """The trials of ``spec`` in a fixed order (configurations, then seeds), every option
    checked against its model or optimizer now, before anything runs. A ``tpe`` search
    chooses its trials as results come (:mod:`mnistkit.sweep_search`): none here, but
    every value of every setting is checked."""
    check_spec(spec)
    if spec.search == "tpe":
        for name, values in spec.axes.items():
            for value in values:
                config_from_choice({name: value}, spec.fixed, registry)
        return []
    names = list(spec.axes)
    if spec.search == "grid":
        choices: Iterable[tuple[Any, ...]] = itertools.product(*(spec.axes[n] for n in names))
    else:
        rng = np.random.default_rng(spec.search_seed)
        choices = [tuple(spec.axes[n][int(rng.integers(len(spec.axes[n])))] for n in names)
                   for _ in range(int(spec.trials or 0))]
    trials: list[TrialSpec] = []
    for values in choices:
        config = config_from_choice(dict(zip(names, values, strict=True)), spec.fixed, registry)
        for seed in spec.seeds:
            trials.append(TrialSpec(len(trials), config, seed))
    return trials


def config_from_choice(chosen: dict[str, Any], fixed: dict[str, Any], registry: Registry
                       ) -> dict[str, Any]:
    """The complete run settings of a trial: the defaults, the ``fixed`` settings and the
    ``chosen`` value of each axis; options checked by their model or optimizer."""
    config: dict[str, Any] = {**SCALAR_SETTINGS, **FIXED_SETTINGS, **fixed,
                              "model_options": {}, "optimizer_options": {}}
    for name, value in chosen.items():
        prefix, _, option = name.partition(".")
        if option:
            config["model_options" if prefix == "m" else "optimizer_options"][option] = value
        else:
            config[name] = value
    for kind in ("model", "optimizer"):
        entry = registry.get(kind, str(config[kind]))
        entry.make_options(config[f"{kind}_options"])  # raises OptionsError, named
        # Keep the values as given (text or TOML-typed): the run converts them again.
    for name in ("epochs", "batch_size"):
        config[name] = _positive_int(config[name], name)
    registry.get("dataset", str(config["dataset"]))
    return config


def _positive_int(value: Any, name: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise OptionsError(f"{name} values must be whole numbers; got {value!r}") from None
    if number < 1:
        raise OptionsError(f"{name} values must be at least 1; got {value!r}")
    return number


def axis_value(config: Mapping[str, Any], axis: str) -> Any:
    """The value a trial's ``config`` has on the swept ``axis`` (``m.hidden_size``...)."""
    prefix, _, option = axis.partition(".")
    if option:
        return config["model_options" if prefix == "m" else "optimizer_options"].get(option)
    return config.get(axis)


def swept_axes(spec: SweepSpec) -> list[str]:
    """The settings of ``spec`` given more than one value."""
    return [name for name, values in spec.axes.items() if len(values) > 1]


def describe_config(config: Mapping[str, Any], swept: Iterable[str] | None = None) -> str:
    """``model=twolayer hidden_size=128 lr=0.1 ...``: every setting, or only the ``swept``
    axis names (``m.hidden_size``, ``epochs``...)."""
    parts = []
    for name in ("model", "optimizer", "dataset", "epochs", "batch_size"):
        if swept is None or name in swept:
            parts.append(f"{name}={config[name]}")
    for kind, prefix in (("model_options", "m"), ("optimizer_options", "o")):
        for option, value in config[kind].items():
            if swept is None or f"{prefix}.{option}" in swept:
                parts.append(f"{option}={value}")
    return " ".join(parts)


# -- building a spec from the command line or a TOML file ----------------------------------
def parse_value_list(text: str) -> list[str]:
    """``"64,128,256"`` -> ``["64", "128", "256"]`` (blanks dropped)."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def spec_from_cli(*, model: str, optimizer: str, model_options: Iterable[str],
                  optimizer_options: Iterable[str], epochs: str, batch_size: str,
                  dataset: str, seeds: int, search: str, trials: int | None,
                  search_seed: int, val_size: int | None, limit: int | None) -> SweepSpec:
    """A sweep from command-line text: comma-separated lists in every value."""
    axes: dict[str, list[Any]] = {}
    for name, text in (("model", model), ("optimizer", optimizer), ("dataset", dataset),
                       ("epochs", epochs), ("batch_size", batch_size)):
        axes[name] = parse_value_list(text)
    for prefix, pairs in (("m", model_options), ("o", optimizer_options)):
        for pair in pairs:
            key, sep, values = pair.partition("=")
            if not sep or not key.strip():
                raise OptionsError(f"option {pair!r} is not of the form name=value[,value...]")
            axes[f"{prefix}.{key.strip().replace('-', '_')}"] = parse_value_list(values)
    if seeds < 1:
        raise OptionsError(f"{setting('seeds')} must be at least 1; got {seeds}")
    spec = SweepSpec(axes=axes, seeds=list(range(seeds)),
                     fixed={"val_size": val_size, "limit": limit}, search=search,
                     trials=trials, search_seed=search_seed)
    check_spec(spec)
    return spec


def spec_from_toml(path: str | Path) -> SweepSpec:
    """A sweep from a TOML file (see README "Sweeps"): top-level settings take a value or
    a list, ``[model_options]`` and ``[optimizer_options]`` tables likewise; ``seeds`` is
    a count or a list; ``search``, ``trials``, ``search_seed``, ``val_size``, ``limit``."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise OptionsError("sweep files need Python 3.11 or newer (tomllib); give the sweep "
                           "on the command line instead") from None
    path = Path(path)
    text = read_bounded_text(path, _MAX_TOML_BYTES, "sweep file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OptionsError(f"{path}: not valid TOML ({exc})") from None
    known = {*SCALAR_SETTINGS, *FIXED_SETTINGS, "model_options", "optimizer_options", "seeds",
             "search", "trials", "search_seed"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise OptionsError(f"{path}: unknown setting {unknown[0]!r}; known: "
                           f"{', '.join(sorted(known))}")
    axes: dict[str, list[Any]] = {name: _as_list(data.get(name, default))
                                  for name, default in SCALAR_SETTINGS.items()}
    for table, prefix in (("model_options", "m"), ("optimizer_options", "o")):
        values = data.get(table, {})
        if not isinstance(values, dict):
            raise OptionsError(f"{path}: [{table}] must be a table")
        axes.update({f"{prefix}.{k}": _as_list(v) for k, v in values.items()})
    seeds = data.get("seeds", 1)
    seed_list = list(range(seeds)) if isinstance(seeds, int) and not isinstance(
        seeds, bool) else seeds
    if not isinstance(seed_list, list) or not all(isinstance(s, int) for s in seed_list):
        raise OptionsError(f"{path}: seeds must be a count or a list of integers")
    spec = SweepSpec(axes=axes, seeds=seed_list,
                     fixed={k: data.get(k, v) for k, v in FIXED_SETTINGS.items()},
                     search=str(data.get("search", "grid")), trials=data.get("trials"),
                     search_seed=int(data.get("search_seed", 0)))
    check_spec(spec)
    return spec


def read_bounded_text(path: Path, limit: int, what: str) -> str:
    """The UTF-8 text of the regular file ``path`` of at most ``limit`` bytes
    (:func:`mnistkit.files.read_bounded`: special files refused from ``stat``)."""
    from mnistkit.files import read_bounded

    try:
        return read_bounded(path, limit, f"a {what}", error=OptionsError).decode("utf-8")
    except FileNotFoundError:
        raise OptionsError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionsError(f"{path}: cannot read the {what} ({exc})") from None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


# -- the summary ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConfigSummary:
    """One configuration's results over its seeds."""

    config: dict[str, Any]
    trials: int
    finished: int
    val_mean: float
    val_std: float
    test_mean: float
    test_std: float


def summarize(trials: list[dict[str, Any]]) -> list[ConfigSummary]:
    """Group trials (``sweep.json`` entries) by configuration, each seed once; best mean
    validation accuracy first (ties: by test accuracy, then by the first trial's order).
    Configurations with no finished trial come last."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:
        members = groups.setdefault(describe_config(trial["config"]), [])
        if all(m["seed"] != trial["seed"] for m in members):  # tpe may ask for one twice
            members.append(trial)
    summaries = []
    for members in groups.values():
        done = [t for t in members if t["status"] == "finished"]
        val = np.array([t["val_accuracy"] for t in done], dtype=np.float64)
        test = np.array([t["test_accuracy"] for t in done], dtype=np.float64)
        summaries.append(ConfigSummary(
            members[0]["config"], len(members), len(done),
            float(val.mean()) if done else math.nan, float(val.std()) if done else math.nan,
            float(test.mean()) if done else math.nan, float(test.std()) if done else math.nan))
    order = {describe_config(t["config"]): i for i, t in reversed(list(enumerate(trials)))}
    return sorted(summaries, key=lambda s: (
        s.finished == 0, -_or(s.val_mean, -1.0), -_or(s.test_mean, -1.0),
        order[describe_config(s.config)]))


def _or(value: float, default: float) -> float:
    return default if value != value else value
