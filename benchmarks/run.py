"""mnistkit's benchmark suite: NumPy against PyTorch on the same network, and the targets.

Usage::

    python benchmarks/run.py            # everything, writes benchmarks/results/<machine>.*
    python benchmarks/run.py --quick    # a smoke run on small sizes (a temporary folder)

PyTorch (``pip install -e .[bench]``, i.e. torch==2.13.0 and python-mnist==0.7) is
optional: without it the PyTorch and python-mnist columns are skipped with a message.
Every comparison runs in this one process, alternating the contenders repetition by
repetition (the epoch comparison also within each epoch, every eighth of it), and
reports medians. Child processes measure loading, start-up and a
default ``mnistkit train`` (wall time and peak RSS from ``wait4``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTIONS = ("epoch", "loading", "evaluation", "scaling", "train", "startup")
BUNDLED = ROOT / "mnistkit" / "data" / "files"

# The network both contenders train in the comparison; the SGD options and L2 strength
# are mnistkit's defaults (read at run time), applied identically to PyTorch.
COMPARE = {"hidden": 100, "batch_size": 128, "seed": 0}
SLICES = 4  # the epoch comparison alternates the contenders every 1/SLICES of an epoch
ACCURACY_TOLERANCE = 0.005  # both must reach the same test accuracy within 0.5 points

TARGETS = {
    "epoch_vs_torch": 0.6,          # mnistkit epoch / PyTorch epoch
    "epoch_vs_floor": 2.0,          # mnistkit epoch / (epoch FLOPs / sgemm rate)
    "load_cold_s": 0.4,
    "load_warm_s": 0.05,
    "train_wall_s": 20.0,
    "train_test_accuracy": 0.98,
    "train_peak_rss_mb": 350.0,
    "help_vs_numpy": 2.5,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Benchmark mnistkit against PyTorch (CPU) on the same network and check "
                    "the speed and memory targets. Writes <machine>.json, <machine>.md and "
                    "<machine>-scaling.png.",
        epilog="Example: python benchmarks/run.py --quick   (PyTorch parts are skipped when "
               "torch is not installed: pip install -e '.[bench]')")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and one repetition: a smoke run (minutes -> seconds); "
                             "writes to a temporary folder unless --out is given")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the results [default: benchmarks/results]")
    parser.add_argument("--machine", default=None,
                        help="name of the result files [default: from the CPU model and cores]")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/torch threads [default: the libraries' own, all cores]")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed repetitions per contender [default: 7, quick: 2]")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--max-other", type=float, default=0.05,
                        help="repeat a section when other processes used more than this "
                             "fraction of the CPUs while it ran [default: 0.05]")
    parser.add_argument("--retries", type=int, default=None,
                        help="repetitions of a disturbed section [default: 3, quick: 0]")
    parser.add_argument("--wait-quiet", type=float, default=None,
                        help="seconds to wait for a quiet machine before a section "
                             "[default: 120, quick: 0]")
    parser.add_argument("--unset-openblas-coretype", action="store_true",
                        help="re-run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from "
                             "the environment (both together) and report the kernel then used")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if args.retries is None:
        args.retries = 0 if args.quick else 3
    if args.wait_quiet is None:
        args.wait_quiet = 0.0 if args.quick else 120.0
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def settle(seconds: float = 0.3) -> None:
    """Pause before a timed run: after a burst of work, OpenBLAS's worker threads keep
    spinning for a while (~0.1 s) and slow whoever runs next (PyTorch's epoch measured
    right after numpy matrix products took ~0.09 s longer); let them go to sleep."""
    time.sleep(seconds)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mnistkit_command() -> list[str]:
    """How to start the CLI: the console script beside this Python, else ``-c``."""
    script = Path(sys.executable).with_name("mnistkit")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from mnistkit.cli import main; main()"]


class Bench:
    """One benchmark run: settings, the loaded data, and the results gathered so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        import numpy as np

        from mnistkit.data.mnist import load_mnist

        self.args = args
        self.quick = args.quick
        self.reps = args.reps or (2 if args.quick else 7)
        self.np = np
        self.dataset = load_mnist(use_cache=False)
        self.torch = None
        self.torch_reason = ""
        if args.no_torch:
            self.torch_reason = "--no-torch"
        elif importlib.util.find_spec("torch") is None:
            self.torch_reason = "torch is not installed (pip install -e '.[bench]')"
        else:
            import bench_torch

            self.torch = bench_torch
        if self.torch is None:
            log(f"PyTorch comparisons skipped: {self.torch_reason}")
        self.threads = args.threads or self._blas_threads()
        if self.torch is not None:
            self.torch.set_threads(self.threads)
        self.results: dict[str, Any] = {}

    @staticmethod
    def _blas_threads() -> int:
        from threadpoolctl import threadpool_info

        counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        return max(counts) if counts else 1

    def train_split(self, n: int) -> Any:
        from mnistkit.data.dataset import Split

        return Split(self.dataset.train.images[:n], self.dataset.train.labels[:n])

    @staticmethod
    def hyper_parameters() -> dict[str, Any]:
        """The comparison's network and training settings, with mnistkit's defaults."""
        import dataclasses

        from mnistkit.models.twolayer import TwoLayerOptions
        from mnistkit.optimizers.sgd import SGDOptions

        return {**COMPARE, "reg": TwoLayerOptions().reg,
                "sgd": dataclasses.asdict(SGDOptions())}

    def twin(self, runner: Any, n: int) -> Any:
        o = runner.sgd
        return self.torch.make_twin(
            runner.initial_params, self.dataset.train.images[:n], self.dataset.train.labels[:n],
            lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, reg=runner.model.options.reg,
            batch_size=COMPARE["batch_size"], pixel_scale=1.0 / 255.0)

    def runner(self, n: int, hidden: int, epochs: int) -> Any:
        from bench_mnistkit import MnistkitRunner

        from mnistkit.models.twolayer import TwoLayerOptions
        from mnistkit.optimizers.sgd import SGDOptions

        return MnistkitRunner(self.train_split(n), hidden=hidden, reg=TwoLayerOptions().reg,
                              sgd=SGDOptions(), batch_size=COMPARE["batch_size"],
                              seed=COMPARE["seed"], epochs=epochs)

    # -- (1) epoch against PyTorch and the matmul floor ------------------------------------
    def bench_epoch(self) -> None:
        from bench_mnistkit import accuracy_of, epoch_flops, matmul_only_epoch, sgemm_gflops
        from bench_util import median, summary

        n = 10_000 if self.quick else 60_000
        hidden = COMPARE["hidden"]
        epochs = self.reps + 1  # one warm-up epoch each, not timed in the medians
        runner = self.runner(n, hidden, epochs)
        twin = self.twin(runner, n) if self.torch else None
        mk, mk_full, th, rates, mm_only = [], [], [], [], []
        score_diff = None
        if twin is not None:
            x = (self.dataset.test.images[:256].reshape(256, -1) / self.np.float32(255)).astype(
                self.np.float32)
            score_diff = float(self.np.abs(runner.model.scores(x)
                                           - twin.scores(self.dataset.test.images[:256])).max())
        log(f"[epoch] {n} images, 784-{hidden}-10, batch {COMPARE['batch_size']}, "
            f"{epochs} epochs each (first is warm-up)")
        for rep in range(epochs):
            mk_s, th_s = self._interleaved_epoch(runner, twin, rep, SLICES)
            finish_s = runner.finish_epoch()
            if rep:
                mk.append(mk_s)
                mk_full.append(mk_s + finish_s)
                if twin is not None:
                    th.append(th_s)
            rates.append(sgemm_gflops())
            if rep:
                mm_only.append(matmul_only_epoch(runner.images_per_epoch, hidden))
            log(f"  rep {rep}: mnistkit {mk[-1] if mk and rep else float('nan'):.3f} s, "
                f"torch {th[-1] if th and rep else float('nan'):.3f} s, "
                f"sgemm {rates[-1]:.1f} GFLOP/s")
        test = self.dataset.test
        acc_mk = accuracy_of(runner.model, test.images, test.labels)
        acc_th = twin.accuracy(test.images, test.labels) if twin is not None else None
        flops = epoch_flops(runner.images_per_epoch, hidden)
        rate = sorted(rates)[len(rates) // 2]
        floor = flops / (rate * 1e9)
        med = summary(mk)["median"]
        result = {
            "images": n, "images_per_epoch": runner.images_per_epoch,
            "network": f"784-{hidden}-10", "hyper_parameters": self.hyper_parameters(),
            "epochs_trained": epochs, "threads": self.threads,
            "mnistkit_s": summary(mk), "mnistkit_with_epoch_accuracy_s": summary(mk_full),
            "torch_s": summary(th) if twin is not None else None,
            "ratio_mnistkit_over_torch": (  # median of the per-repetition (paired) ratios
                round(median([a / b for a, b in zip(mk, th, strict=True)]), 3)
                if twin is not None else None),
            "ratio_of_medians": (round(med / summary(th)["median"], 3)
                                 if twin is not None else None),
            "epoch_gflop": round(flops / 1e9, 2),
            "sgemm_1024_gflops": {"median": round(rate, 1), "reps": [round(r, 1) for r in rates]},
            "floor_s": round(floor, 4),
            "ratio_mnistkit_over_floor": round(med / floor, 3),
            "matmul_only_epoch_s": summary(mm_only),
            "mnistkit_effective_gflops": round(flops / med / 1e9, 1),
            "test_accuracy": {"mnistkit": acc_mk, "torch": acc_th,
                              "difference": (round(abs(acc_mk - acc_th), 4)
                                             if acc_th is not None else None),
                              "tolerance": ACCURACY_TOLERANCE,
                              "same": (abs(acc_mk - acc_th) <= ACCURACY_TOLERANCE
                                       if acc_th is not None else None)},
            "initial_scores_max_abs_difference": score_diff,
        }
        self.results["epoch"] = result
        self._last_pair = (runner, twin)

    @staticmethod
    def _interleaved_epoch(runner: Any, twin: Any, rep: int,
                           slices: int = 1) -> tuple[float, float]:
        """One epoch of each contender on the same batch order, run in ``slices`` slices
        that alternate between them (who goes first alternates too) after a pause each
        (:func:`settle`), so that both see the same machine state; returns the seconds of
        each one's training steps."""
        order, steps, batch = runner.orders[rep], runner.trainer.steps, COMPARE["batch_size"]
        runner.start_epoch()
        if twin is not None:
            twin.start_epoch(runner.lr(rep))
        mk_s = th_s = 0.0
        bounds = [steps * i // slices for i in range(slices + 1)]
        for i, (first, last) in enumerate(zip(bounds, bounds[1:], strict=False)):
            for who in (("mnistkit", "torch") if (rep + i) % 2 == 0 else ("torch", "mnistkit")):
                settle()
                if who == "mnistkit":
                    mk_s += runner.steps(last - first)
                elif twin is not None:
                    start = time.perf_counter()
                    twin.steps(order[first * batch:last * batch])
                    th_s += time.perf_counter() - start
        return mk_s, th_s

    # -- (2) loading ------------------------------------------------------------------------
    def bench_loading(self) -> None:
        from bench_util import run_child, summary

        reps = 1 if self.quick else max(5, self.reps // 2)
        have_pymnist = importlib.util.find_spec("mnist") is not None
        if not have_pymnist:
            log("python-mnist not installed: its loading column is skipped")
        # Before each load the child times filling a fresh 47 MB array (then frees it): a
        # canary for how expensive fresh memory is at that moment. On a VM whose host takes
        # back free guest memory, first touches vary several-fold, and so does every load.
        canary = ("c=numpy.empty(47_040_000,numpy.uint8);t=time.perf_counter();c.fill(1)\n"
                  "f=time.perf_counter()-t;del c\n")
        mk_code = (
            "import json,time,numpy;from mnistkit.data.mnist import load_mnist\n" + canary +
            "t=time.perf_counter();d=load_mnist();s=time.perf_counter()-t\n"
            "print(json.dumps({'seconds':s,'fresh_memory_s':f,'train':len(d.train)}))")
        pm_code = (
            "import json,sys,time,numpy;from mnist import MNIST\n" + canary +
            "m=MNIST(sys.argv[1],gz=True);t=time.perf_counter()\n"
            "a=m.load_training();b=m.load_testing();s=time.perf_counter()-t\n"
            "print(json.dumps({'seconds':s,'fresh_memory_s':f,'train':len(a[0])}))")
        base_code = ("import json,time,numpy\n" + canary +
                     "print(json.dumps({'seconds':0.0,'fresh_memory_s':f}))")
        variants = {"mnistkit_cold_no_cache": "nocache", "mnistkit_cold_empty_cache": "empty",
                    "mnistkit_warm_cache": "warm"}
        if have_pymnist:
            variants["python_mnist"] = "pymnist"
        variants["python_numpy_baseline"] = "base"
        times: dict[str, list[float]] = {k: [] for k in variants}
        rss: dict[str, list[float]] = {k: [] for k in variants}
        fresh: list[float] = []
        log(f"[loading] bundled .gz files, {reps} rep(s) each, one child process per load")
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(reps):
                cache = Path(tmp) / f"cache-{rep}"
                for name, kind in variants.items():
                    env = dict(os.environ, MNISTKIT_CACHE_DIR=str(cache))
                    env.pop("MNISTKIT_NO_CACHE", None)
                    code = mk_code
                    if kind == "nocache":
                        env["MNISTKIT_NO_CACHE"] = "1"
                    elif kind == "empty":
                        shutil.rmtree(cache, ignore_errors=True)
                    elif kind == "pymnist":
                        code = pm_code
                    elif kind == "base":
                        code = base_code
                    child = run_child([sys.executable, "-c", code, str(BUNDLED)], env=env)
                    if child.returncode != 0:
                        raise RuntimeError(f"{name} failed: {child.stderr[-2000:]}")
                    out = json.loads(child.stdout.strip().splitlines()[-1])
                    times[name].append(out["seconds"])
                    rss[name].append(child.max_rss_mb)
                    fresh.append(out["fresh_memory_s"])
                    log(f"  rep {rep} {name}: {out['seconds']:.3f} s, peak RSS "
                        f"{child.max_rss_mb:.0f} MB (fresh 47 MB: {out['fresh_memory_s']:.3f} s)")
        result: dict[str, Any] = {}
        for name in variants:
            if name == "python_numpy_baseline":
                result[name] = {"peak_rss_mb": round(max(rss[name]), 1)}
                continue
            result[name] = {"seconds": summary(times[name]),
                            "peak_rss_mb": round(max(rss[name]), 1)}
        if have_pymnist:
            result["ratio_python_mnist_over_mnistkit_cold"] = round(
                summary(times["python_mnist"])["median"]
                / summary(times["mnistkit_cold_no_cache"])["median"], 1)
        result["fresh_47mb_fill_s"] = summary(fresh)
        result["note"] = ("seconds measured inside the child around the load call only "
                          "(interpreter and numpy import excluded); RSS is the whole child's; "
                          "fresh_47mb_fill_s: filling a new 47 MB array in each child just "
                          "before its load")
        self.results["loading"] = result

    # -- (3) evaluation ---------------------------------------------------------------------
    def bench_evaluation(self) -> None:
        from bench_util import summary

        from mnistkit.evaluation import accuracy, evaluate

        test = self.dataset.test
        reps = self.reps
        result: dict[str, Any] = {"images": len(test)}
        log(f"[evaluation] {len(test)} test images, {reps} reps each")
        for hidden in (COMPARE["hidden"], 256):
            if hidden == COMPARE["hidden"] and getattr(self, "_last_pair", None):
                runner, twin = self._last_pair
            else:
                runner = self.runner(1000, hidden, 1)
                twin = self.twin(runner, 1000) if self.torch else None
            model = runner.model
            t_acc, t_eval, t_torch = [], [], []
            for rep in range(reps + 1):
                jobs = [("acc", lambda m=model: accuracy(m, test.images, test.labels)),
                        ("eval", lambda m=model: evaluate(m, test.images, test.labels, 10))]
                if twin is not None:
                    jobs.append(("torch", lambda t=twin: t.accuracy(test.images, test.labels)))
                if rep % 2:
                    jobs.reverse()
                for name, job in jobs:
                    settle()
                    start = time.perf_counter()
                    job()
                    took = time.perf_counter() - start
                    if rep:
                        {"acc": t_acc, "eval": t_eval, "torch": t_torch}[name].append(took)
            result[f"784-{hidden}-10"] = {
                "mnistkit_accuracy_s": summary(t_acc),
                "mnistkit_evaluate_s": summary(t_eval),
                "torch_accuracy_s": summary(t_torch) if twin is not None else None,
            }
            log(f"  784-{hidden}-10: accuracy {summary(t_acc)['median']:.4f} s, evaluate "
                f"{summary(t_eval)['median']:.4f} s"
                + (f", torch {summary(t_torch)['median']:.4f} s" if t_torch else ""))
        self.results["evaluation"] = result

    # -- (4) scaling ------------------------------------------------------------------------
    def bench_scaling(self) -> None:
        from bench_mnistkit import epoch_flops, sgemm_gflops
        from bench_util import fit_exponent, summary

        if self.quick:
            sizes, hiddens, n_for_h = [2_500, 5_000, 10_000], [64, 128, 256], 10_000
        else:
            sizes, hiddens, n_for_h = [10_000, 30_000, 60_000], [64, 128, 256, 512, 1024], 60_000
        reps = 1 if self.quick else 3
        points = [(n, COMPARE["hidden"]) for n in sizes]
        points += [(n_for_h, h) for h in hiddens if (n_for_h, h) not in points]
        rows = []
        log(f"[scaling] {len(points)} points, {reps} rep(s) after >= 60k images of warm-up")
        # The host can slow this VM down for seconds at a time without any sign inside it:
        # a median sgemm rate before and after each point must stay within 80% of the
        # reference, else the point is measured again (up to twice more, keeping the best).
        reference = sgemm_gflops(calls=9, typical=True)
        for n, hidden in points:
            best = None
            for attempt in range(1 if self.quick else 3):
                before = sgemm_gflops(calls=5, typical=True)
                mk, th, images = self._scaling_point(n, hidden, reps)
                canary = min(before, sgemm_gflops(calls=5, typical=True)) / reference
                if best is None or canary > best[0]:
                    best = (canary, mk, th, images, attempt + 1)
                if canary >= 0.8:
                    break
                log(f"  N={n} H={hidden}: the machine was slow meanwhile (sgemm at "
                    f"{canary:.0%} of its reference rate); measuring again")
                time.sleep(5)
            canary, mk, th, images, attempts = best
            row = {"images": n, "hidden": hidden, "mnistkit_s": summary(mk)["median"],
                   "torch_s": summary(th)["median"] if th else None,
                   "gflop": round(epoch_flops(images, hidden) / 1e9, 2),
                   "sgemm_canary": round(canary, 2), "attempts": attempts}
            rows.append(row)
            log(f"  N={n:>6} H={hidden:>5}: mnistkit {row['mnistkit_s']:.3f} s"
                + (f", torch {row['torch_s']:.3f} s" if th else "")
                + f" (sgemm canary {canary:.0%})")
        by_n = [r for r in rows if r["hidden"] == COMPARE["hidden"] and r["images"] in sizes]
        by_h = [r for r in rows if r["images"] == n_for_h]
        exponents = {
            "mnistkit_vs_images": round(fit_exponent([r["images"] for r in by_n],
                                                     [r["mnistkit_s"] for r in by_n]), 3),
            "mnistkit_vs_hidden": round(fit_exponent([r["hidden"] for r in by_h],
                                                     [r["mnistkit_s"] for r in by_h]), 3),
        }
        if self.torch:
            exponents["torch_vs_images"] = round(fit_exponent(
                [r["images"] for r in by_n], [r["torch_s"] for r in by_n]), 3)
            exponents["torch_vs_hidden"] = round(fit_exponent(
                [r["hidden"] for r in by_h], [r["torch_s"] for r in by_h]), 3)
        self.results["scaling"] = {"hidden_for_images": COMPARE["hidden"],
                                   "images_for_hidden": n_for_h, "reps": reps, "rows": rows,
                                   "exponents": exponents}

    def _scaling_point(self, n: int, hidden: int, reps: int) -> tuple[list, list, int]:
        """Alternating timed epochs of both contenders on ``n`` images, ``hidden`` units."""
        # warm-up epochs (untimed) until about 60,000 images went through each contender:
        # the first few hundred steps of a fresh process run measurably slower
        warm = 1 if self.quick else -(-60_000 // n)
        runner = self.runner(n, hidden, warm + reps)
        twin = self.twin(runner, n) if self.torch else None
        mk: list[float] = []
        th: list[float] = []
        for rep in range(warm + reps):
            mk_s, th_s = self._interleaved_epoch(runner, twin, rep)
            runner.finish_epoch()
            if rep >= warm:
                mk.append(mk_s)
                if twin is not None:
                    th.append(th_s)
        return mk, th, runner.images_per_epoch

    # -- (5) a default training run ---------------------------------------------------------
    def bench_train(self) -> None:
        from bench_util import run_child

        cmd = mnistkit_command()
        extra = ["--epochs", "1", "--limit", "5000"] if self.quick else []
        if self.args.threads:
            extra += ["--threads", str(self.args.threads)]
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache"
            labels = ["empty cache"] + ["warm cache"] * (1 if self.quick else 2)
            for i, label in enumerate(labels):
                out = Path(tmp) / f"run-{i}"
                env = dict(os.environ, MNISTKIT_CACHE_DIR=str(cache))
                env.pop("MNISTKIT_NO_CACHE", None)
                full = cmd + ["train", "--model", "twolayer", "--out", str(out)] + extra
                log(f"[train] {label}: {' '.join(full[len(cmd) - 1:])}")
                child = run_child(full, env=env, cwd=tmp)
                if child.returncode != 0:
                    raise RuntimeError(f"mnistkit train failed: {child.stderr[-2000:]}")
                record = json.loads((out / "run.json").read_text())
                runs.append({
                    "cache": label, "wall_s": round(child.seconds, 3),
                    "peak_rss_mb": round(child.max_rss_mb, 1),
                    "test_accuracy": record["metrics"]["test_accuracy"],
                    "run_wall_seconds": record["wall_seconds"],
                    "epochs": len(record["history"]),
                    "epoch_seconds": [round(h["seconds"], 3) for h in record["history"]],
                    "model_options": record["model_options"],
                    "optimizer_options": record["optimizer_options"],
                    "training": {k: record["training"][k] for k in ("epochs", "batch_size",
                                                                     "seed")},
                })
                log(f"  wall {child.seconds:.2f} s, peak RSS {child.max_rss_mb:.0f} MB, test "
                    f"accuracy {record['metrics']['test_accuracy']:.4f}")
        warm = [r for r in runs if r["cache"] == "warm cache"]
        self.results["train"] = {
            "command": "mnistkit train --model twolayer --out RUN" + (
                " " + " ".join(extra) if extra else ""),
            "runs": runs,
            "warm_median_wall_s": sorted(r["wall_s"] for r in warm)[len(warm) // 2],
            "max_wall_s": max(r["wall_s"] for r in runs),
            "max_peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "min_test_accuracy": min(r["test_accuracy"] for r in runs),
        }

    # -- (6) start-up -----------------------------------------------------------------------
    def bench_startup(self) -> None:
        from bench_util import run_child, summary

        reps = 3 if self.quick else 11
        jobs = {"mnistkit_help": mnistkit_command() + ["--help"],
                "import_numpy": [sys.executable, "-c", "import numpy"],
                "python_bare": [sys.executable, "-c", "pass"]}
        times: dict[str, list[float]] = {k: [] for k in jobs}
        log(f"[startup] {reps} alternating reps")
        for rep in range(reps + 1):
            order = list(jobs.items())
            if rep % 2:
                order.reverse()
            for name, cmd in order:
                child = run_child(cmd)
                if child.returncode != 0:
                    raise RuntimeError(f"{name} failed: {child.stderr[-2000:]}")
                if rep:
                    times[name].append(child.seconds)
        result = {name: summary(values) for name, values in times.items()}
        result["ratio_help_over_numpy"] = round(
            result["mnistkit_help"]["median"] / result["import_numpy"]["median"], 2)
        log(f"  mnistkit --help {result['mnistkit_help']['median']:.3f} s, import numpy "
            f"{result['import_numpy']['median']:.3f} s: x{result['ratio_help_over_numpy']}")
        self.results["startup"] = result


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured figure and whether it is met."""
    rows = []

    def add(name: str, measured: Any, limit: float, better: str, unit: str) -> None:
        if measured is None:
            return
        met = measured <= limit if better == "lower" else measured >= limit
        rows.append({"target": name, "measured": measured, "limit": limit,
                     "better": better, "unit": unit, "met": bool(met)})

    e = results.get("epoch")
    if e:
        add("epoch time / PyTorch's", e["ratio_mnistkit_over_torch"], TARGETS["epoch_vs_torch"],
            "lower", "x")
        add("epoch time / matmul floor", e["ratio_mnistkit_over_floor"],
            TARGETS["epoch_vs_floor"], "lower", "x")
    load = results.get("loading")
    if load:
        add("load bundled data, cold (.gz)", load["mnistkit_cold_no_cache"]["seconds"]["median"],
            TARGETS["load_cold_s"], "lower", "s")
        add("load bundled data, warm (cache)", load["mnistkit_warm_cache"]["seconds"]["median"],
            TARGETS["load_warm_s"], "lower", "s")
    t = results.get("train")
    if t:
        add("default train: wall time", t["max_wall_s"], TARGETS["train_wall_s"], "lower", "s")
        add("default train: test accuracy", t["min_test_accuracy"],
            TARGETS["train_test_accuracy"], "higher", "")
        add("default train: peak RSS", t["max_peak_rss_mb"], TARGETS["train_peak_rss_mb"],
            "lower", "MB")
    s = results.get("startup")
    if s:
        add("mnistkit --help / import numpy", s["ratio_help_over_numpy"],
            TARGETS["help_vs_numpy"], "lower", "x")
    return rows


def plot_scaling(scaling: dict[str, Any], epoch: dict[str, Any] | None, path: Path) -> None:
    """Log-log plot of epoch seconds against images and hidden units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = scaling["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    rate = epoch["sgemm_1024_gflops"]["median"] if epoch else None
    panels = [
        (axes[0], "images", [r for r in rows if r["hidden"] == scaling["hidden_for_images"]],
         f"images per epoch (H={scaling['hidden_for_images']})", "images"),
        (axes[1], "hidden", [r for r in rows if r["images"] == scaling["images_for_hidden"]],
         f"hidden units (N={scaling['images_for_hidden']:,})", "hidden"),
    ]
    ex = scaling["exponents"]
    for ax, key, series, xlabel, tag in panels:
        series = sorted(series, key=lambda r: r[key])
        xs = [r[key] for r in series]
        ax.loglog(xs, [r["mnistkit_s"] for r in series], "o-",
                  label=f"mnistkit (slope {ex[f'mnistkit_vs_{tag}']:.2f})")
        if all(r["torch_s"] for r in series):
            ax.loglog(xs, [r["torch_s"] for r in series], "s-",
                      label=f"PyTorch (slope {ex[f'torch_vs_{tag}']:.2f})")
        if rate:
            ax.loglog(xs, [r["gflop"] / rate for r in series], "k--", lw=1,
                      label=f"FLOP floor at {rate:.0f} GFLOP/s")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds per epoch")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Epoch time, 784-H-10 ReLU network, batch 128, float32 SGD")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    """The short table README quotes."""
    meta, r = report["meta"], report["results"]
    m = meta["machine"]
    blas = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']} "
                     f"({b['num_threads']} threads)" for b in m["blas"] if b["user_api"] == "blas")
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy "
             f"{m['numpy']} ({blas}), torch {m['torch'] or 'not installed'}; "
             f"OPENBLAS_CORETYPE={m['env']['OPENBLAS_CORETYPE'] or 'unset'}. "
             f"{meta['date']}, `{meta['command']}`, load average {meta['load_start']} -> "
             f"{meta['load_end']}.",
             "", "Share of the CPUs other processes used while each section ran: " + ", ".join(
                 f"{name} {v['other_processes_cpu_fraction']:.0%}" for name, v in r.items()
                 if v.get("other_processes_cpu_fraction") is not None) + ".", "",
             "| measurement | mnistkit | PyTorch / other | ratio |", "|---|---|---|---|"]

    def s(v: Any, unit: str = "s", digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f} {unit}".strip()

    e = r.get("epoch")
    if e:
        torch_s = e["torch_s"]["median"] if e["torch_s"] else None
        lines.append(f"| epoch, {e['images_per_epoch']:,} images, {e['network']} | "
                     f"{s(e['mnistkit_s']['median'])} | {s(torch_s)} | "
                     f"{e['ratio_mnistkit_over_torch'] or '-'} |")
        lines.append(f"| matmul floor ({e['epoch_gflop']} GFLOP at "
                     f"{e['sgemm_1024_gflops']['median']} GFLOP/s sgemm) | "
                     f"{s(e['mnistkit_s']['median'])} | {s(e['floor_s'])} floor | "
                     f"{e['ratio_mnistkit_over_floor']} |")
        lines.append(f"| the epoch's 5 matmuls alone | {s(e['matmul_only_epoch_s']['median'])} "
                     f"| | |")
        acc = e["test_accuracy"]
        lines.append(f"| test accuracy after {e['epochs_trained']} epochs | "
                     f"{acc['mnistkit']:.4f} | "
                     f"{'-' if acc['torch'] is None else format(acc['torch'], '.4f')} | "
                     f"diff {acc['difference']} |")
    load = r.get("loading")
    if load:
        pm = load.get("python_mnist")
        for key, label in (("mnistkit_cold_no_cache", "load 70k images, cold (.gz, no cache)"),
                           ("mnistkit_cold_empty_cache", "load, empty cache (.gz + fill)"),
                           ("mnistkit_warm_cache", "load, warm cache (.npy)")):
            v = load[key]
            other = (f"{s(pm['seconds']['median'])}, {pm['peak_rss_mb']:.0f} MB python-mnist"
                     if pm and key == "mnistkit_cold_no_cache" else "")
            ratio = (load.get("ratio_python_mnist_over_mnistkit_cold")
                     if key == "mnistkit_cold_no_cache" else None)
            lines.append(f"| {label} | {s(v['seconds']['median'])}, {v['peak_rss_mb']:.0f} MB "
                         f"| {other} | {f'{ratio}x faster' if ratio else ''} |")
    ev = r.get("evaluation")
    if ev:
        for net in (k for k in ev if k.startswith("784-")):
            v = ev[net]
            torch_s = v["torch_accuracy_s"]["median"] if v["torch_accuracy_s"] else None
            lines.append(f"| accuracy on 10,000 test images, {net} | "
                         f"{s(v['mnistkit_accuracy_s']['median'], digits=4)} (full evaluate "
                         f"{s(v['mnistkit_evaluate_s']['median'], digits=4)}) | "
                         f"{s(torch_s, digits=4)} | |")
    sc = r.get("scaling")
    if sc:
        ex = sc["exponents"]
        lines.append(f"| epoch time exponent vs images / vs hidden | "
                     f"{ex['mnistkit_vs_images']} / {ex['mnistkit_vs_hidden']} | "
                     f"{ex.get('torch_vs_images', '-')} / {ex.get('torch_vs_hidden', '-')} | |")
    t = r.get("train")
    if t:
        for run in t["runs"]:
            lines.append(f"| `mnistkit train --model twolayer` ({run['cache']}) | "
                         f"{s(run['wall_s'], digits=1)}, {run['peak_rss_mb']:.0f} MB, test "
                         f"{run['test_accuracy']:.2%} | | |")
    st = r.get("startup")
    if st:
        lines.append(f"| `mnistkit --help` vs `python -c 'import numpy'` | "
                     f"{s(st['mnistkit_help']['median'])} | {s(st['import_numpy']['median'])} | "
                     f"{st['ratio_help_over_numpy']} |")
    if sc:
        lines += ["", "| images | hidden | GFLOP | mnistkit s | PyTorch s |",
                  "|---|---|---|---|---|"]
        for row in sc["rows"]:
            lines.append(f"| {row['images']:,} | {row['hidden']} | {row['gflop']} | "
                         f"{row['mnistkit_s']:.3f} | "
                         f"{'-' if row['torch_s'] is None else format(row['torch_s'], '.3f')} |")
    if report["targets"]:
        if meta["quick"]:
            lines += ["", "Quick run (small sizes, one training epoch): the targets below are "
                          "for full runs and are not judged by it."]
        lines += ["", "| target | limit | measured | met |", "|---|---|---|---|"]
        for row in report["targets"]:
            sign = "<=" if row["better"] == "lower" else ">="
            lines.append(f"| {row['target']} | {sign} {row['limit']} {row['unit']} | "
                         f"{row['measured']} {row['unit']} | {'yes' if row['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def wait_for_quiet(max_wait: float, threshold: float) -> float | None:
    """Wait (at most ``max_wait`` s) until other processes use < ``threshold`` of the CPUs
    over 3 s; returns the last fraction seen."""
    from bench_util import OtherCpu

    deadline = time.perf_counter() + max_wait
    fraction = None
    while True:
        with OtherCpu() as probe:
            time.sleep(3)
        fraction = probe.fraction
        if fraction is None or fraction < threshold or time.perf_counter() > deadline:
            return fraction


def run_section(bench: Bench, section: str, args: argparse.Namespace) -> None:
    """Run one section; repeat it (after waiting for a quiet machine) while other processes
    took more than ``--max-other`` of the CPUs, keeping the quietest attempt."""
    from bench_util import OtherCpu, load_average

    best: tuple[float, dict[str, Any]] | None = None
    attempts = 1 + max(args.retries, 0)
    for attempt in range(1, attempts + 1):
        if attempt > 1 or args.wait_quiet:
            seen = wait_for_quiet(args.wait_quiet, args.max_other / 2)
            if seen is not None and seen >= args.max_other / 2:
                log(f"  (still busy: others use {seen:.0%} of the CPUs; measuring anyway)")
        before = load_average()
        with OtherCpu() as others:
            getattr(bench, f"bench_{section}")()
        result = bench.results[section]
        result["load_average"] = {"before": before, "after": load_average()}
        result["other_processes_cpu_fraction"] = (None if others.fraction is None
                                                  else round(others.fraction, 3))
        result["attempt"] = attempt
        fraction = others.fraction if others.fraction is not None else 0.0
        if best is None or fraction < best[0]:
            best = (fraction, result)
        if fraction <= args.max_other:
            break
        log(f"  [{section}] other processes used {fraction:.0%} of the CPUs meanwhile"
            + ("; repeating" if attempt < attempts else "; keeping the quietest attempt"))
    bench.results[section] = best[1]


def maybe_reexec_without_coretype(args: argparse.Namespace, argv: list[str]) -> None:
    """Honour --unset-openblas-coretype before numpy is imported (it reads them at load)."""
    names = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    if not args.unset_openblas_coretype or not any(n in os.environ for n in names):
        return
    env = {k: v for k, v in os.environ.items() if k not in names}
    log(f"re-running without {' and '.join(names)}")
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    maybe_reexec_without_coretype(args, raw)
    sys.path.insert(0, str(HERE))
    from bench_util import load_average, machine_info, machine_slug

    started = time.perf_counter()
    load_start = load_average()
    bench = Bench(args)
    if args.threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=args.threads, user_api="blas")
    else:
        limiter = None
    try:
        for section in SECTIONS:
            if section in args.sections:
                run_section(bench, section, args)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    machine = args.machine or machine_slug()
    if args.out is not None:
        out = args.out
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="mnistkit-bench-"))
    else:
        out = HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": {
            "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "command": "python benchmarks/run.py " + " ".join(raw),
            "quick": args.quick, "reps": bench.reps, "threads": bench.threads,
            "load_start": load_start, "load_end": load_average(),
            "seconds": round(time.perf_counter() - started, 1),
            "machine": machine_info(bench.torch.version() if bench.torch else None),
            "torch_skipped": bench.torch_reason or None,
        },
        "results": bench.results,
        "targets": evaluate_targets(bench.results),
    }
    suffix = "-quick" if args.quick else ""
    json_path = out / f"{machine}{suffix}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{machine}{suffix}.md").write_text(markdown(report))
    if "scaling" in bench.results:
        plot_scaling(bench.results["scaling"], bench.results.get("epoch"),
                     out / f"{machine}{suffix}-scaling.png")
    print(markdown(report))
    log(f"wrote {json_path} (+ .md{', -scaling.png' if 'scaling' in bench.results else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
