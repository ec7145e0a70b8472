"""Bounded reads of every file that comes from elsewhere, and sizes the user asks for.

Special files (FIFOs, sockets, devices, folders) given where a file is expected are
refused from ``stat`` before any open: never a hang. ``run.json`` is bounded in size,
nesting and numbers; ``.npz`` members are compared with the model from their headers
before any data is read. Model sizes, ``--steps-per-epoch`` and ``--threads`` are
checked against the machine before anything is allocated. Nothing here allocates much:
refusals come from estimates, or from limits set with ``setrlimit`` in a child process.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_one_line_error,
    invoke,
    run_python,
    small_idx_folder,
    subprocess_env,
    time_limit,
)

from mnistkit.checkpoint import load_checkpoint, save_checkpoint
from mnistkit.data.idx import read_idx
from mnistkit.data.mnist import load_mnist
from mnistkit.errors import DataError, MemoryLimitError, OptionsError, RunError
from mnistkit.files import read_bounded, require_regular_file
from mnistkit.registry import Entry
from mnistkit.run_folder import build_model, read_record
from mnistkit.runs import Run, RunSpec
from mnistkit.training import TrainConfig, Trainer

TINY = ["--limit", "500", "--val-size", "100", "-m", "hidden_size=8", "--batch-size", "50"]


def cli(*args: object, timeout: float = 60, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    """``mnistkit ARGS`` in a real process; a hang fails the test through the timeout."""
    return subprocess.run([sys.executable, "-m", "mnistkit", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=env or subprocess_env())


def assert_cli_error(proc: subprocess.CompletedProcess, *fragments: str,
                     exit_code: int) -> str:
    """One ``Error:`` line on stderr holding every fragment, the exit code, no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == exit_code, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return small_idx_folder(tmp_path_factory.mktemp("data") / "mnist", n_train=600)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, data_dir) -> Path:
    """A finished 1-epoch run on the small folder."""
    out = tmp_path_factory.mktemp("runs") / "base"
    result = invoke("train", *TINY, "--epochs", "1", "--data-dir", data_dir, "--out", out,
                    "--quiet")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run_copy(base_run, tmp_path) -> Path:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    return copy


def _special(kind: str, path: Path) -> Path:
    """Make ``path`` a FIFO, a socket, a symlink to a character device or a folder."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dev-null":
        path.symlink_to("/dev/null")
    else:
        path.mkdir()
    return path


SPECIAL = {"fifo": "a FIFO (named pipe)", "socket": "a socket",
           "dev-zero": "a character device", "dev-null": "a character device",
           "folder": "a folder"}


# -- special files ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(SPECIAL))
def test_special_files_are_refused_from_stat_in_the_library(kind, tmp_path):
    path = _special(kind, tmp_path / "f")
    with time_limit(10):
        for read in (lambda: read_idx(path), lambda: read_bounded(path, 100),
                     lambda: require_regular_file(path)):
            with pytest.raises(DataError, match=re.escape(f"is {SPECIAL[kind]}")):
                read()
        with pytest.raises(RunError, match="not a regular file"):
            load_checkpoint(path)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "socket"])
def test_special_file_in_a_data_folder_is_refused_through_the_cli(kind, tmp_path, data_dir):
    import shutil

    folder = tmp_path / "d"
    shutil.copytree(data_dir, folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    _special(kind, folder / "t10k-labels-idx1-ubyte")
    for command in ("inspect", "train"):
        args = [command, "--data-dir", folder] + (["--quiet", "--out", tmp_path / "r"]
                                                  if command == "train" else [])
        assert_cli_error(cli(*args), str(folder / "t10k-labels-idx1-ubyte"),
                         f"is {SPECIAL[kind]}, not a regular file", exit_code=1)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["run.json", "best.npz"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_special_files_in_a_run_folder_through_test(kind, name, run_copy, data_dir):
    (run_copy / name).unlink()
    _special(kind, run_copy / name)
    assert_cli_error(cli("test", run_copy, "--data-dir", data_dir), str(run_copy / name),
                     f"is {SPECIAL[kind]}, not a regular file", exit_code=1)


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_special_last_npz_on_resume_and_params_last(kind, run_copy, data_dir):
    (run_copy / "last.npz").unlink()
    _special(kind, run_copy / "last.npz")
    for args in (["train", "--resume", run_copy, "--epochs", "2", "--data-dir", data_dir],
                 ["test", run_copy, "--params", "last", "--data-dir", data_dir]):
        assert_cli_error(cli(*args), str(run_copy / "last.npz"), f"is {SPECIAL[kind]}",
                         exit_code=1)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder", "socket"])
def test_special_files_given_to_predict_and_as_the_run(kind, run_copy, tmp_path, data_dir):
    image = _special(kind, tmp_path / "digit.png")
    assert_cli_error(cli("predict", run_copy, image, "--data-dir", data_dir), str(image),
                     f"is {SPECIAL[kind]}", exit_code=1)
    if kind != "folder":
        run = _special(kind, tmp_path / "run-special")
        assert_cli_error(cli("test", run), "no such run folder", SPECIAL[kind], exit_code=1)


def test_special_steps_csv_for_the_history_plot(run_copy):
    (run_copy / "steps.csv").unlink()
    _special("fifo", run_copy / "steps.csv")
    assert_cli_error(cli("visualise", "history", run_copy, "--output", run_copy / "h.png"),
                     "is a FIFO", exit_code=1)


# -- run.json ---------------------------------------------------------------------------
def test_a_huge_run_json_is_refused_from_its_size(run_copy):
    record = run_copy / "run.json"
    os.truncate(record, (64 << 20) + 1)  # sparse: nothing is written, nothing is read
    tracemalloc.start()
    try:
        with pytest.raises(RunError, match="67108865 bytes is too large for a run record"):
            read_record(run_copy)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
    assert_one_line_error(invoke("test", run_copy), "too large for a run record", exit_code=1)


def _edit(run: Path, text_edit) -> None:
    path = run / "run.json"
    path.write_text(text_edit(path.read_text()))


NON_FINITE = {
    "nan-in-model-options": (lambda t: t.replace('"reg": 1e-05', '"reg": NaN'),
                             "model_options.reg is NaN, not a finite number"),
    "infinity-pixel-scale": (lambda t: t.replace('"pixel_scale": 0.00392156862745098',
                                                 '"pixel_scale": Infinity'),
                             "training.pixel_scale is Infinity"),
    "minus-infinity-init": (lambda t: t.replace('"init_scale": 1.0', '"init_scale": -Infinity'),
                            "model_options.init_scale is -Infinity"),
    "overflowing-lr": (lambda t: t.replace('"lr": 0.8', '"lr": 1e999'),
                       "optimizer_options.lr is 1e999"),
    "huge-int-lr": (lambda t: t.replace('"lr": 0.8', '"lr": 1' + "0" * 400),
                    "optimizer_options.lr is a number too large"),
    "nan-seed": (lambda t: t.replace('"seed": 0,', '"seed": NaN,', 1), "seed is NaN"),
    "nan-accuracy-elsewhere": (lambda t: t.replace('"train_accuracy"', '"x": NaN, '
                                                   '"train_accuracy"', 1), ".x is NaN"),
    "nested-too-deeply": (lambda t: t.replace('"history": [', '"deep": ' + "[" * 100_000 +
                                              "]" * 100_000 + ', "history": ['),
                          "nested too deeply"),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE))
def test_non_finite_numbers_and_deep_nesting_in_run_json(case, run_copy, data_dir):
    edit, message = NON_FINITE[case]
    before = (run_copy / "run.json").read_text()
    _edit(run_copy, edit)
    assert (run_copy / "run.json").read_text() != before, "the edit did not apply"
    assert_one_line_error(invoke("test", run_copy, "--data-dir", data_dir),
                          str(run_copy / "run.json"), message, exit_code=1)
    assert_one_line_error(invoke("train", "--resume", run_copy, "--data-dir", data_dir),
                          message, exit_code=1)


def test_nesting_the_parser_accepts_but_checks_cannot_is_a_run_error(run_copy):
    for depth in (500, 900, 990, 1200, 5000):
        deep = f'"deep{depth}": ' + "[" * depth + "]" * depth + ', "history": ['
        _edit(run_copy, lambda t, deep=deep: t.replace('"history": [', deep, 1))
        try:
            read_record(run_copy)
        except RunError as exc:
            assert "nested too deeply" in str(exc)


def test_nan_validation_accuracy_of_runs_without_validation_still_loads(run_copy):
    record = json.loads((run_copy / "run.json").read_text())
    record["history"][0]["val_accuracy"] = float("nan")
    record["metrics"]["val_accuracy"] = float("nan")
    (run_copy / "run.json").write_text(json.dumps(record))  # writes NaN, as training does
    loaded = read_record(run_copy)
    assert np.isnan(loaded["history"][0]["val_accuracy"])
    assert np.isnan(loaded["metrics"]["val_accuracy"])


def test_a_run_without_validation_set_round_trips(tmp_path, data_dir):
    out = tmp_path / "noval"
    result = invoke("train", *TINY[:2], "--val-size", "0", "-m", "hidden_size=8", "--epochs",
                    "1", "--data-dir", data_dir, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert invoke("test", out, "--data-dir", data_dir).exit_code == 0


# -- checkpoints ------------------------------------------------------------------------
def _members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def _write_npz(path: Path, arrays: dict[str, np.ndarray], deflate: bool = False) -> None:
    buffer = io.BytesIO()
    (np.savez_compressed if deflate else np.savez)(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def _loads_little(path: Path, model_params, match: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(RunError, match=match):
            load_checkpoint(path, expected_params=model_params)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20  # the member was never read
    finally:
        tracemalloc.stop()


@pytest.fixture
def model_params(base_run):
    return {k: v for k, v in _members(base_run / "best.npz").items()}


def test_a_params_member_declaring_a_wrong_big_shape_is_refused_unread(tmp_path, model_params):
    arrays = {**model_params, "params/W1": np.zeros((784, 20_000), np.float32)}  # 63 MB
    _write_npz(tmp_path / "c.npz", arrays, deflate=True)
    expected = {k.partition("/")[2]: v for k, v in model_params.items()}
    _loads_little(tmp_path / "c.npz", expected,
                  r"parameter 'W1' is float32 \(784, 20000\), the model expects float32 "
                  r"\(784, 8\)")


def test_an_extra_params_member_is_refused_unread(tmp_path, model_params):
    arrays = {**model_params, "params/extra": np.zeros(10_000_000, np.float32)}
    _write_npz(tmp_path / "c.npz", arrays, deflate=True)
    expected = {k.partition("/")[2]: v for k, v in model_params.items()}
    _loads_little(tmp_path / "c.npz", expected, r"missing: none; extra: extra")


def test_a_huge_optimizer_member_is_refused_unread(tmp_path, model_params):
    arrays = {**model_params, "optimizer/velocity.W1": np.zeros(70_000_000, np.float32)}
    _write_npz(tmp_path / "c.npz", arrays, deflate=True)  # 280 MB declared, ~270 kB stored
    expected = {k.partition("/")[2]: v for k, v in model_params.items()}
    _loads_little(tmp_path / "c.npz", expected, "optimizer and trainer arrays declare")


def test_members_declaring_more_than_the_memory_available(tmp_path, model_params, monkeypatch):
    import mnistkit.checkpoint

    _write_npz(tmp_path / "c.npz", model_params)
    monkeypatch.setattr(mnistkit.checkpoint, "available_bytes", lambda: 1000)
    _loads_little(tmp_path / "c.npz", None, "more than the 1000 bytes of memory available")


def test_header_mismatch_through_the_cli_is_one_line(run_copy, data_dir):
    arrays = _members(run_copy / "last.npz")
    arrays["params/extra"] = np.zeros(3, np.float32)
    _write_npz(run_copy / "last.npz", arrays)
    assert_one_line_error(invoke("train", "--resume", run_copy, "--epochs", "2",
                                 "--data-dir", data_dir),
                          "parameters do not match the model (missing: none; extra: extra)",
                          exit_code=1)


def test_load_checkpoint_without_expectations_still_works(tmp_path):
    save_checkpoint(tmp_path / "c.npz", {"params": {"W": np.ones((2, 3), np.float32)},
                                         "trainer": {"meta": np.array("{}")}})
    groups = load_checkpoint(tmp_path / "c.npz")
    assert groups["params"]["W"].shape == (2, 3) and str(groups["trainer"]["meta"]) == "{}"


# -- sizes the user asks for -------------------------------------------------------------
LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from mnistkit.cli import main
sys.argv = ["mnistkit", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("args, message", [
    (["train", "-m", "hidden_size=2000000"], "training model 'twolayer' (hidden_size=2000000"),
    (["train", "-m", "hidden_size=" + "9" * 21], "training model 'twolayer'"),
    (["train", "--model", "softmax", "--batch-size", "50", "--steps-per-epoch", "10" + "0" * 14],
     "--epochs 20 x --steps-per-epoch 1000000000000000 x --batch-size 50"),
    (["train", "--epochs", "1" + "0" * 30], "step losses) needs about"),
    (["train", "--steps-per-epoch", "9" * 30], "a batch order of"),
    (["gradcheck", "--model", "twolayer", "-m", "hidden_size=100000000"],
     "checking the gradients of model 'twolayer'"),
    (["gradcheck", "--model", "twolayer", "-m", "hidden_size=30000000"], "needs about"),
])
def test_sizes_that_cannot_fit_are_one_line_before_allocating(args, message, tmp_path,
                                                              data_dir):
    extra = ["--data-dir", data_dir, "--limit", "500", "--val-size", "100", "--out",
             tmp_path / "r"] if args[0] == "train" else []
    proc = run_python(LIMITED, *args, *map(str, extra), timeout=60)
    line = assert_cli_error(proc, message, "needs about", "is available", exit_code=2)
    assert len(line) < 300
    assert not (tmp_path / "r").exists()


def test_a_plugin_model_too_big_for_its_estimate(tmp_path, data_dir):
    pytest.importorskip("mnistkit_mlp")
    proc = cli("train", "--model", "mlp", "-m", "layers=3000000,3000000", "--val-size", "100",
               "--data-dir", data_dir, "--out", tmp_path / "r")
    assert_cli_error(proc, "training model 'mlp'", "needs about", exit_code=2)


def test_a_model_without_estimate_running_out_of_memory_is_one_line(data_dir):
    def factory(options, rng, n_inputs, n_classes):
        return np.empty((10**8, 10**8), np.float32)  # NumPy's own allocation error

    dataset = load_mnist(data_dir)
    entry = Entry("model", "greedy", factory, None, "", "greedy-plugin")
    with pytest.raises(MemoryLimitError, match="model 'greedy' from plugin 'greedy-plugin' "
                                               "could not be built: not enough memory"):
        build_model(entry, {}, np.random.default_rng(0), dataset)


def test_gradcheck_of_a_model_without_estimate_out_of_memory_is_one_line():
    code = """
import resource, sys
import numpy as np
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from mnistkit.cli import build_cli
from mnistkit.plugins import load_plugins
from mnistkit.registry import Entry
from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions

class NoEstimate(TwoLayerNet):
    estimate_memory = None

plugins = load_plugins(entry_points=False)
plugins.registry.add(Entry("model", "noestimate", NoEstimate, TwoLayerOptions, "", "x"))
build_cli(plugins)(["gradcheck", "--model", "noestimate", "-m", "hidden_size=2000000"])
"""
    proc = run_python(code, timeout=60)
    assert_cli_error(proc, "not enough memory", exit_code=2)


@pytest.mark.parametrize("threads", ["1000000000", "9" * 21])
def test_threads_beyond_the_cores_are_capped_with_a_warning(threads, base_run, data_dir):
    proc = cli("test", base_run, "--threads", threads, "--data-dir", data_dir, "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    cores = len(os.sched_getaffinity(0))
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: --threads {threads[:17]}{'...' if len(threads) > 20 else ''}"
                        f" is more than the {cores} usable cores; using {cores}"], proc.stderr


@pytest.mark.parametrize("option", ["lr=inf", "lr=-inf", "lr=1e999", "momentum=nan"])
def test_non_finite_optimizer_options_are_refused(option, data_dir):
    assert_one_line_error(invoke("train", "-o", option, "--data-dir", data_dir),
                          f"option '{option.partition('=')[0]}' of optimizer 'sgd' must be a "
                          "finite number", exit_code=2)


@pytest.mark.parametrize("option", ["reg=nan", "init_scale=Infinity", "reg=1e400"])
def test_non_finite_model_options_are_refused(option, data_dir):
    assert_one_line_error(invoke("train", "-m", option, "--data-dir", data_dir),
                          "must be a finite number", exit_code=2)


# -- the batch order -----------------------------------------------------------------------
def _trainer(dataset, steps_per_epoch, sampling="shuffle", seed=0, batch_size=128):
    from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
    from mnistkit.optimizers.sgd import SGD, SGDOptions

    rng = np.random.default_rng(seed)
    model = SoftmaxClassifier(SoftmaxOptions(), rng, 784, 10)
    config = TrainConfig(epochs=1, batch_size=batch_size, seed=seed, sampling=sampling,
                         steps_per_epoch=steps_per_epoch)
    return Trainer(model, SGD(model.params, SGDOptions()), dataset.train, dataset.test,
                   config, rng)


def _old_order(seed_state, n, need):
    """The order as mnistkit drew it before (concatenating passes)."""
    rng = np.random.default_rng()
    rng.bit_generator.state = seed_state
    order = rng.permutation(n)
    while len(order) < need:
        order = np.concatenate([order, rng.permutation(n)])
    return order


@pytest.mark.parametrize("steps", [None, 3, 4, 40])
def test_the_order_is_the_one_drawn_before(steps, data_dir):
    dataset = load_mnist(data_dir)
    trainer = _trainer(dataset, steps)
    state = trainer.rng.bit_generator.state
    order = trainer._epoch_order()
    assert np.array_equal(order, _old_order(state, 600, trainer.steps * 128))


def test_a_hundred_thousand_steps_per_epoch_build_a_linear_bounded_state(data_dir):
    dataset = load_mnist(data_dir)
    trainer = _trainer(dataset, 100_000, batch_size=16)
    with time_limit(20):
        events = trainer.run()
        for _ in range(3):  # the epoch starts: its 12.8 million indices are drawn
            next(events)
    arrays = trainer.state()
    assert "order" not in arrays  # kept as the generator state it was drawn from
    assert sum(a.nbytes for a in arrays.values()) < 100_000
    again = _trainer(dataset, 100_000, batch_size=16)
    again.restore(arrays)
    assert np.array_equal(again.order, trainer.order)


def test_replacement_sampling_order_is_unchanged(data_dir):
    dataset = load_mnist(data_dir)
    trainer = _trainer(dataset, 500, sampling="replacement", batch_size=300)
    rng = np.random.default_rng()
    rng.bit_generator.state = trainer.rng.bit_generator.state
    assert np.array_equal(trainer._epoch_order(), rng.integers(0, 600, size=150_000,
                                                               dtype=np.int64))


def test_impossible_steps_per_epoch_in_the_library(data_dir):
    dataset = load_mnist(data_dir)
    with pytest.raises(OptionsError, match="needs about .* of memory but"):
        _trainer(dataset, 10**18)


def _stopped_and_full_runs(tmp_path, dataset, steps_per_epoch, stop_after):
    spec = RunSpec(model="twolayer", model_options={"hidden_size": 8}, val_size=100,
                   limit=500, config=TrainConfig(epochs=2, batch_size=50,
                                                 steps_per_epoch=steps_per_epoch))
    from mnistkit.plugins import load_plugins

    registry = load_plugins(entry_points=False).registry
    full = Run.start(spec, dataset, registry, tmp_path / "full")
    for _ in full.train():
        pass
    stopped = Run.start(spec, dataset, registry, tmp_path / "stopped")
    steps = []
    for event in stopped.train(lambda: len(steps) >= stop_after):
        steps.append(event)
    return registry, full, stopped


@pytest.mark.parametrize("old_format", [False, True])
def test_resume_mid_epoch_with_new_and_old_checkpoints_is_bit_identical(old_format, tmp_path,
                                                                        data_dir):
    dataset = load_mnist(data_dir)
    registry, full, stopped = _stopped_and_full_runs(tmp_path, dataset, 25, 7)
    last = tmp_path / "stopped" / "last.npz"
    arrays = _members(last)
    meta = json.loads(str(arrays["trainer/meta"]))
    assert "trainer/order" not in arrays and meta["step"] > 0 and "order_rng" in meta
    if old_format:  # a checkpoint of an earlier mnistkit: the order itself, no rng state
        arrays["trainer/order"] = stopped.trainer.order
        del meta["order_rng"]
        arrays["trainer/meta"] = np.array(json.dumps(meta))
        _write_npz(last, arrays)
    resumed = Run.resume(tmp_path / "stopped", dataset, registry)
    for _ in resumed.train():
        pass
    for key, value in full.model.params.items():
        assert np.array_equal(resumed.model.params[key], value), key


def test_predict_refuses_an_image_too_large_unread(run_copy, tmp_path, data_dir):
    image = tmp_path / "big.png"
    image.write_bytes(b"")
    os.truncate(image, (64 << 20) + 1)  # sparse
    start = time.perf_counter()
    assert_cli_error(cli("predict", run_copy, image, "--data-dir", data_dir),
                     "too large for an image", exit_code=1)
    assert time.perf_counter() - start < 30


def _model_classes():
    from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
    from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions

    classes = [(TwoLayerNet, TwoLayerOptions(hidden_size=37)), (SoftmaxClassifier,
                                                                SoftmaxOptions())]
    try:
        from mnistkit_mlp.model import MLP, MLPOptions
    except ImportError:
        return classes
    return [*classes, (MLP, MLPOptions(layers=(33, 17)))]


@pytest.mark.parametrize("factory, options", _model_classes())
def test_estimates_count_the_parameters_exactly(factory, options):
    estimate = factory.estimate_memory(options, n_inputs=784, n_classes=10, batch_size=64)
    model = factory(options, np.random.default_rng(0), 784, 10)
    assert estimate["params"] == sum(p.nbytes for p in model.params.values())
    assert estimate["work"] >= estimate["params"]
