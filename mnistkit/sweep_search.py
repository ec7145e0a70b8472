"""Adaptive search: Optuna's TPE chooses each batch of configurations from the results
of the batches before it.

The sweep process alone touches the study (in memory; ``sweep.json`` is the record). It
asks for ``tpe_batch`` configurations at a time (each run with every seed), waits for the
whole batch, and tells Optuna the mean validation accuracy of each configuration **in
trial order**, so a seeded search makes the same trials however many workers there are
and however fast each trial ran. Resuming replays the recorded batches through a fresh
sampler with the same seed (the same asks, checked against the record, and the same
tells), which puts the sampler back exactly where it was.
"""

from __future__ import annotations

import math
from typing import Any

from mnistkit.errors import OptionsError, RunError, setting
from mnistkit.registry import Registry
from mnistkit.sweep import SweepSpec, TrialSpec, config_from_choice

_ENDED = ("finished", "failed")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise OptionsError(f"{setting('search')} tpe needs Optuna: "
                           "pip install 'mnistkit[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class TpeSearch:
    """Batches of trials chosen by TPE over the value lists of a sweep's settings."""

    def __init__(self, spec: SweepSpec, registry: Registry) -> None:
        optuna = _optuna()
        self.spec, self.registry = spec, registry
        self._distributions = {name: optuna.distributions.CategoricalDistribution(values)
                               for name, values in spec.axes.items()}
        self._study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=spec.search_seed))
        self._asked = 0  # configurations asked so far

    def _ask(self) -> tuple[Any, dict[str, Any]]:
        trial = self._study.ask(self._distributions)
        self._asked += 1
        return trial, dict(trial.params)

    def next_batch(self, trials: list[dict[str, Any]]) -> list[tuple[Any, TrialSpec]]:
        """Ask for the next batch (fewer at the end, none when ``spec.trials`` were asked):
        its optuna trials and the :class:`TrialSpec` of every configuration x seed."""
        count = min(self.spec.tpe_batch, int(self.spec.trials or 0) - self._asked)
        batch = []
        for _ in range(max(0, count)):
            optuna_trial, params = self._ask()
            config = config_from_choice(params, self.spec.fixed, self.registry)
            specs = [TrialSpec(len(trials) + len(batch) * len(self.spec.seeds) + k, config, seed)
                     for k, seed in enumerate(self.spec.seeds)]
            batch.append((optuna_trial, specs))
        return batch

    def tell(self, optuna_trial: Any, entries: list[dict[str, Any]]) -> None:
        """Tell the mean validation accuracy of one configuration's finished seeds (a
        configuration with none finished is told as failed)."""
        optuna = _optuna()
        scores = [e["val_accuracy"] for e in entries if e["status"] == "finished"
                  and isinstance(e.get("val_accuracy"), float)
                  and not math.isnan(e["val_accuracy"])]
        if scores:
            self._study.tell(optuna_trial, sum(scores) / len(scores))
        else:
            self._study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)

    def replay(self, trials: list[dict[str, Any]]) -> list[tuple[Any, list[dict[str, Any]]]]:
        """Put the sampler back where the recorded ``trials`` left it: ask every recorded
        configuration again (checking it is the recorded one) and tell the ones whose batch
        ended. Returns the configurations of the last batch if it had not ended (their
        optuna trials and ``sweep.json`` entries), to be run and told."""
        seeds = len(self.spec.seeds)
        configs = [trials[i:i + seeds] for i in range(0, len(trials), seeds)]
        batches = [configs[i:i + self.spec.tpe_batch]
                   for i in range(0, len(configs), self.spec.tpe_batch)]
        for batch in batches:
            asked = []
            for entries in batch:
                optuna_trial, params = self._ask()
                config = config_from_choice(params, self.spec.fixed, self.registry)
                if config != entries[0]["config"]:
                    raise RunError("the recorded TPE trials cannot be replayed (another Optuna "
                                   f"version?): {entries[0]['id']} was "
                                   f"{entries[0]['config']}, now asked {config}")
                asked.append((optuna_trial, entries))
            if all(e["status"] in _ENDED for _, entries in asked for e in entries):
                for optuna_trial, entries in asked:
                    self.tell(optuna_trial, entries)
            else:
                return asked
        return []
