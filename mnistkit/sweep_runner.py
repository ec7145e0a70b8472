"""Running a sweep: trials in parallel on a local process pool or a Dask cluster.

Both go through one code path, a :class:`concurrent.futures.Executor`: a
``ProcessPoolExecutor`` (``spawn`` start method) on this machine, or
``distributed.Client.get_executor()`` on a Dask cluster. A trial is the function
:func:`run_trial`, which a worker runs with only small arguments (the trial's settings
and its folder): each worker loads the dataset itself (the bundled files or its cache),
so no 55 MB array is ever pickled, and limits its BLAS threads with threadpoolctl so the
workers never oversubscribe the cores.

The sweep process alone writes ``SWEEP/sweep.json`` (atomically, after every change), and
holds the sweep folder's lock (:mod:`mnistkit.run_lock`) for its life; each trial is a run
folder ``SWEEP/trials/tNNNN`` trained by one worker. Stopping (Ctrl-C) writes
``SWEEP/.stop``: running trials stop after their current step with a resumable
checkpoint, and ``resume`` continues them; finished trials are never run again. A worker
that dies takes its pool's running trials with it: each is retried from its checkpoint
up to ``retries`` times, then recorded as failed; the sweep never hangs on it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mnistkit.errors import MnistkitError, OptionsError, RunError, setting
from mnistkit.files import atomic_write
from mnistkit.registry import Registry
from mnistkit.run_lock import LOCK_NAME, RunLock, claim_new_run_folder, lock_run_folder
from mnistkit.sweep import SweepSpec, TrialSpec, axis_value, read_bounded_text

SWEEP_JSON = "sweep.json"
TRIALS_DIR = "trials"
STOP_FILE = ".stop"
SWEEP_FORMAT_VERSION = 1
DASK_SCHEDULER_ENV = "MNISTKIT_DASK_SCHEDULER"
_MAX_MANIFEST_BYTES = 64 << 20
_STOP_CHECK_SECONDS = 0.2
_DONE = ("finished",)


# -- one trial, in a worker process ---------------------------------------------------------
_WORKER_CACHE: dict[str, Any] = {}


def run_trial(request: dict[str, Any]) -> dict[str, Any]:
    """Train one trial in this process and return its outcome (never raises for a trial
    that fails: the outcome says ``failed`` with a one-line error).

    ``request``: ``config`` and ``seed`` (a :class:`TrialSpec`'s), ``folder`` (the run
    folder: started, or resumed when it already holds a run), ``threads`` (BLAS threads)
    and ``stop_file`` (training stops after the current step once it exists).
    """
    from threadpoolctl import threadpool_limits

    folder, started = Path(request["folder"]), time.perf_counter()
    try:
        with threadpool_limits(limits=int(request["threads"]), user_api="blas"):
            record = _train_trial(request, folder)
    except MnistkitError as exc:
        return _outcome("failed", started, error=str(exc))
    except Exception as exc:  # a plugin's bug: one line, the sweep goes on
        text = (str(exc).splitlines() or [""])[0]
        return _outcome("failed", started, error=f"{type(exc).__name__}: {text}")
    status = record["status"]
    metrics = record.get("metrics", {})
    return _outcome("finished" if status == "finished" else status, started,
                    val_accuracy=metrics.get("val_accuracy"),
                    test_accuracy=metrics.get("test_accuracy"))


def _train_trial(request: dict[str, Any], folder: Path) -> dict[str, Any]:
    import numpy as np

    from mnistkit.runs import Run, RunFinishedError, RunSpec
    from mnistkit.runs.folder import RUN_JSON
    from mnistkit.training import TrainConfig

    config = request["config"]
    registry, dataset = _worker_data(config["dataset"])
    stop = _stop_checker(Path(request["stop_file"]))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if (folder / RUN_JSON).exists():
            try:
                run = Run.resume(folder, dataset, registry)
            except RunFinishedError as finished:
                return finished.record
        else:
            _clear_unstarted(folder)
            spec = RunSpec(model=config["model"], optimizer=config["optimizer"],
                           model_options=config["model_options"],
                           optimizer_options=config["optimizer_options"],
                           dataset=config["dataset"], val_size=config["val_size"],
                           limit=config["limit"],
                           config=TrainConfig(epochs=config["epochs"],
                                              batch_size=config["batch_size"],
                                              seed=request["seed"]))
            run = Run.start(spec, dataset, registry, folder)
        for _ in run.train(stop):
            pass
    return run.record


def _worker_data(dataset_name: str) -> tuple[Any, Any]:
    """The plugins' registry and the dataset, loaded once per worker process."""
    from mnistkit.datasets import load_dataset
    from mnistkit.plugins import get_registry

    if dataset_name not in _WORKER_CACHE:
        registry = get_registry()
        _WORKER_CACHE[dataset_name] = (registry, load_dataset(dataset_name, registry=registry))
    return _WORKER_CACHE[dataset_name]


def _stop_checker(stop_file: Path) -> Callable[[], bool]:
    """``should_stop`` for training: true once ``stop_file`` exists (looked at no more
    than every 0.2 s, so the check costs nothing per step)."""
    last = [0.0, False]

    def should_stop() -> bool:
        now = time.monotonic()
        if not last[1] and now - last[0] >= _STOP_CHECK_SECONDS:
            last[0], last[1] = now, stop_file.exists()
        return bool(last[1])

    return should_stop


def _clear_unstarted(folder: Path) -> None:
    """Remove a trial folder that a killed worker left before its ``run.json`` (only
    mnistkit's own files: a first checkpoint, temporaries, the lock)."""
    if not folder.is_dir():
        return
    names = [p.name for p in folder.iterdir()]
    if all(n in ("last.npz", LOCK_NAME) or (n.startswith(".") and n.endswith(".tmp"))
           for n in names):
        shutil.rmtree(folder, ignore_errors=True)


def _outcome(status: str, started: float, **values: Any) -> dict[str, Any]:
    return {"status": status, "seconds": round(time.perf_counter() - started, 3),
            "error": values.pop("error", None), **values}


def _worker_init() -> None:
    """Pool workers leave Ctrl-C to the sweep process, which stops them through the stop
    file (a terminal sends SIGINT to the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- executors ------------------------------------------------------------------------------
@dataclasses.dataclass
class Backend:
    """Where trials run: a way to make an executor, how many run at once, BLAS threads
    per trial, and a description for the user."""

    make_executor: Callable[[], cf.Executor]
    capacity: int
    threads: int
    description: str
    close: Callable[[], None] = lambda: None


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_backend(workers: int | None = None, threads: int | None = None) -> Backend:
    """A process pool of ``workers`` (default: the usable cores) with ``spawn``; each trial
    gets ``threads`` BLAS threads (default: cores // workers, at least 1)."""
    import multiprocessing

    cores = usable_cores()
    workers = workers or cores
    if workers < 1:
        raise OptionsError(f"{setting('workers')} must be at least 1; got {workers}")
    threads = threads or max(1, cores // workers)
    context = multiprocessing.get_context("spawn")
    return Backend(lambda: cf.ProcessPoolExecutor(workers, mp_context=context,
                                                  initializer=_worker_init),
                   workers, threads, f"{workers} local worker processes, {threads} BLAS "
                                     f"thread{'s' if threads > 1 else ''} each")


def dask_backend(address: str, threads: int | None = None, timeout: float = 10.0) -> Backend:
    """The Dask cluster whose scheduler is at ``address`` (``tcp://HOST:PORT``); one trial
    per worker thread, ``threads`` BLAS threads per trial (default 1)."""
    try:
        from distributed import Client
    except ImportError:
        raise OptionsError(f"{setting('scheduler')} needs Dask: "
                           "pip install 'mnistkit[dask]'") from None
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise OptionsError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    capacity = max(1, sum(client.nthreads().values()))
    # pure=False: a retried trial is a new task, not the cached result of the first try
    return Backend(lambda: client.get_executor(pure=False), capacity, threads or 1,
                   f"Dask at {address} ({capacity} worker threads)", client.close)


# -- the sweep folder and its manifest ------------------------------------------------------
@dataclasses.dataclass
class SweepState:
    """What ``sweep.json`` holds: the spec and one entry per trial."""

    spec: SweepSpec
    trials: list[dict[str, Any]]
    created: str

    def to_json(self) -> dict[str, Any]:
        """The manifest as written to ``sweep.json``."""
        return {"format_version": SWEEP_FORMAT_VERSION, "created": self.created,
                "spec": self.spec.to_dict(), "trials": self.trials}


def new_state(spec: SweepSpec, trials: list[TrialSpec]) -> SweepState:
    """The manifest of a sweep that has not run yet: every trial pending."""
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return SweepState(spec, trial_entries(spec, trials), created)


def trial_entries(spec: SweepSpec, trials: list[TrialSpec]) -> list[dict[str, Any]]:
    """``sweep.json`` entries of ``trials``, pending: each with its settings, seed, the value
    chosen on each axis of ``spec`` and its run folder."""
    return [{"id": t.trial_id, "index": t.index, "config": t.config, "seed": t.seed,
             "choice": {axis: axis_value(t.config, axis) for axis in spec.axes},
             "status": "pending", "error": None, "run": f"{TRIALS_DIR}/{t.trial_id}",
             "val_accuracy": None, "test_accuracy": None, "seconds": None, "attempts": 0}
            for t in trials]


def read_state(folder: Path) -> SweepState:
    """``sweep.json`` of the sweep in ``folder``, bounded and validated."""
    path = folder / SWEEP_JSON
    if not folder.is_dir():
        raise RunError(f"{folder}: no such sweep folder")
    if not path.exists():
        raise RunError(f"{folder}: not a sweep folder (no {SWEEP_JSON})")
    text = read_bounded_text(path, _MAX_MANIFEST_BYTES, "sweep manifest")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
        if not isinstance(data, dict) or data.get("format_version") != SWEEP_FORMAT_VERSION:
            raise ValueError("not a sweep manifest of format 1")
        trials = data["trials"]
        if not isinstance(trials, list) or not all(
                isinstance(t, dict) and isinstance(t.get("status"), str)
                and isinstance(t.get("id"), str) and isinstance(t.get("config"), dict)
                for t in trials):
            raise ValueError("its trials are damaged")
        return SweepState(SweepSpec.from_dict(data["spec"]), trials, str(data["created"]))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise RunError(f"{path}: unreadable ({exc})") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def write_state(folder: Path, state: SweepState) -> None:
    """Write ``sweep.json`` atomically."""
    try:
        with atomic_write(folder / SWEEP_JSON, "w") as handle:
            json.dump(state.to_json(), handle, indent=1)
    except OSError as exc:
        raise RunError(f"cannot write {folder / SWEEP_JSON}: {exc.strerror or exc}") from None


def claim_sweep_folder(folder: Path, *, resume: bool, pick_free_name: bool = False) -> RunLock:
    """Lock the sweep folder for this process: a new (or empty) one, or the existing
    sweep being resumed. Another live sweep in it is refused, naming its pid."""
    if resume:
        read_state(folder)
        return lock_run_folder(folder)
    return claim_new_run_folder(folder, pick_free_name=pick_free_name)


# -- the sweep loop -------------------------------------------------------------------------
def run_sweep(folder: Path, state: SweepState, backend: Backend, registry: Registry,
              retries: int = 1, should_stop: Callable[[], bool] = lambda: False,
              should_abort: Callable[[], bool] = lambda: False) -> Iterator[SweepUpdate]:
    """Run a sweep's unfinished trials (see :meth:`SweepRunner.run`); a ``tpe`` search
    asks for its trials batch by batch (:mod:`mnistkit.sweep_search`), each batch run to
    its end and told in trial order before the next is asked."""
    if state.spec.search != "tpe":
        yield from SweepRunner(folder, state, backend, retries).run(should_stop, should_abort)
        return
    from mnistkit.sweep_search import TpeSearch

    search = TpeSearch(state.spec, registry)
    pending = search.replay(state.trials)
    while True:
        if not pending:
            batch = search.next_batch(state.trials)
            if not batch:
                return
            for optuna_trial, specs in batch:
                entries = trial_entries(state.spec, specs)
                state.trials.extend(entries)
                pending.append((optuna_trial, entries))
        last = None
        for last in SweepRunner(folder, state, backend, retries).run(should_stop,
                                                                     should_abort):
            yield last
        if last is None or last.stopping:
            return
        for optuna_trial, entries in pending:
            search.tell(optuna_trial, entries)
        pending = []



@dataclasses.dataclass(frozen=True)
class SweepUpdate:
    """Something changed: the current trials (``sweep.json`` entries), which of them are
    running, and the seconds since the sweep (this session of it) started."""

    trials: list[dict[str, Any]]
    running: frozenset[str]
    elapsed: float
    stopping: bool


class SweepRunner:
    """Runs the unfinished trials of a sweep folder on a :class:`Backend`."""

    def __init__(self, folder: Path, state: SweepState, backend: Backend,
                 retries: int = 1) -> None:
        if retries < 0:
            raise OptionsError(f"{setting('retries')} must be 0 or more; got {retries}")
        self.folder, self.state, self.backend, self.retries = folder, state, backend, retries
        self._stop_file = folder / STOP_FILE

    def run(self, should_stop: Callable[[], bool] = lambda: False,
            should_abort: Callable[[], bool] = lambda: False) -> Iterator[SweepUpdate]:
        """Run every trial not finished yet; yield a :class:`SweepUpdate` after each change
        (and about 4 times a second). ``should_stop()`` true: no new trial starts and the
        running ones stop after their current step (resumable); ``should_abort()`` true:
        the workers are ended at once (trials keep their last epoch's checkpoint)."""
        with contextlib.suppress(FileNotFoundError):
            self._stop_file.unlink()
        by_id = {t["id"]: t for t in self.state.trials}
        todo = deque(t["id"] for t in self.state.trials if t["status"] not in _DONE)
        for trial_id in todo:
            by_id[trial_id].update(status="pending", error=None)
        running: dict[cf.Future, str] = {}
        started = time.perf_counter()
        executor = self.backend.make_executor()
        stopping = False
        try:
            write_state(self.folder, self.state)
            while todo or running:
                if not stopping and should_stop():
                    stopping = True
                    self._stop_file.touch()
                if should_abort():
                    raise KeyboardInterrupt
                while todo and not stopping and len(running) < self.backend.capacity:
                    trial_id = todo.popleft()
                    running[self._submit(executor, by_id[trial_id])] = trial_id
                if not running:
                    break
                done, _ = cf.wait(running, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                broken = False
                for future in done:
                    trial = by_id[running.pop(future)]
                    outcome, died = _result_of(future)
                    # A dead worker breaks a local pool for good; Dask replaces its own.
                    broken |= died and isinstance(executor, cf.ProcessPoolExecutor)
                    self._record(trial, outcome, died, todo, stopping)
                if broken:  # start a fresh pool for the trials still to run
                    _shutdown(executor)
                    executor = self.backend.make_executor()
                if done:
                    write_state(self.folder, self.state)
                yield SweepUpdate(self.state.trials, frozenset(running.values()),
                                  time.perf_counter() - started, stopping)
        except BaseException:
            _end_workers(executor)
            for trial_id in running.values():
                by_id[trial_id].update(status="interrupted",
                                       error="the sweep was stopped at once")
            write_state(self.folder, self.state)
            raise
        finally:
            _shutdown(executor)
            with contextlib.suppress(FileNotFoundError):
                self._stop_file.unlink()
        write_state(self.folder, self.state)
        yield SweepUpdate(self.state.trials, frozenset(), time.perf_counter() - started,
                          stopping)

    def _submit(self, executor: cf.Executor, trial: dict[str, Any]) -> cf.Future:
        trial["status"] = "running"
        trial["attempts"] = int(trial.get("attempts") or 0) + 1
        request = {"config": trial["config"], "seed": trial["seed"],
                   "folder": str((self.folder / trial["run"]).resolve()),
                   "threads": self.backend.threads, "stop_file": str(self._stop_file.resolve())}
        return executor.submit(run_trial, request)

    def _record(self, trial: dict[str, Any], outcome: dict[str, Any], died: bool,
                todo: deque, stopping: bool) -> None:
        if died and trial["attempts"] <= self.retries and not stopping:
            trial.update(status="pending", error=outcome["error"])
            todo.appendleft(trial["id"])  # again, from its checkpoint
            return
        trial.update({k: outcome.get(k) for k in ("status", "error", "val_accuracy",
                                                  "test_accuracy", "seconds")})


def _result_of(future: cf.Future) -> tuple[dict[str, Any], bool]:
    """The trial's outcome, and whether its worker died (rather than the trial failing)."""
    try:
        return future.result(), False
    except cf.process.BrokenProcessPool:
        return {"status": "failed", "error": "its worker process died (killed, or out of "
                                             "memory)"}, True
    except Exception as exc:  # Dask: KilledWorker, a lost connection...
        text = (str(exc).splitlines() or [""])[0]
        return {"status": "failed", "error": f"{type(exc).__name__}: {text}"}, True


def _shutdown(executor: cf.Executor) -> None:
    """Shut an executor down, cancelling what has not started (Dask's executor has no
    ``cancel_futures``; its futures are all running or done here)."""
    try:
        executor.shutdown(wait=True, cancel_futures=True)
    except TypeError:
        executor.shutdown(wait=True)


def _end_workers(executor: cf.Executor) -> None:
    """End a local pool's worker processes at once (a second Ctrl-C)."""
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.kill()
    with contextlib.suppress(Exception):
        executor.shutdown(wait=False)
