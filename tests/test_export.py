"""``mnistkit export``: ONNX and npz built from a run's parameters match mnistkit's own outputs.

Runs are trained and exported by real ``mnistkit`` processes; the exported files are then
run on the 10,000 test images by ``onnx.reference.ReferenceEvaluator`` (and onnxruntime
when it is installed) and by plain NumPy, and compared with mnistkit's probabilities.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mnistkit import hookimpl
from mnistkit.cli import build_cli
from mnistkit.data.mnist import load_mnist
from mnistkit.errors import ExportError
from mnistkit.evaluation import predict_scores
from mnistkit.export import (
    ONNX_IR_VERSION,
    ONNX_OPSET,
    Dense,
    ExportSpec,
    ReLU,
    check_faithful,
    model_layers,
    npz_probabilities,
)
from mnistkit.models.base import softmax
from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
from mnistkit.plugins import load_plugins
from mnistkit.run_folder import load_run
from tests.reliability.conftest import assert_one_line_error, invoke, subprocess_env

onnx = pytest.importorskip("onnx")
from onnx.reference import ReferenceEvaluator  # noqa: E402

TOLERANCE = 1e-5


def mnistkit_cli(*args: str) -> subprocess.CompletedProcess:
    """``mnistkit ARGS`` in a fresh process, built-in plugins only."""
    return subprocess.run([sys.executable, "-m", "mnistkit", *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env=subprocess_env(MNISTKIT_LOAD_PLUGINS=""))


@pytest.fixture(scope="module")
def data():
    return load_mnist()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short twolayer run and a short softmax run, trained by real processes."""
    root = tmp_path_factory.mktemp("export-runs")
    made = {}
    for model, extra in (("twolayer", ["-m", "hidden_size=64"]), ("softmax", [])):
        out = root / model
        done = mnistkit_cli("train", "--model", model, *extra, "--epochs", "1", "--limit",
                            "5000", "--val-size", "1000", "--out", out, "--quiet")
        assert done.returncode == 0, done.stderr
        made[model] = out
    return made


def reference(run: Path, data) -> tuple[np.ndarray, np.ndarray | None]:
    """mnistkit's own probabilities (and hidden layer) on the test images."""
    loaded = load_run(run, load_plugins(entry_points=False).registry, data)
    probabilities = softmax(predict_scores(loaded.model, data.test.images, loaded.pixel_scale))
    hidden = None
    if hasattr(loaded.model, "hidden"):
        x = data.test.images.reshape(len(data.test.images), -1).astype(np.float32)
        hidden = loaded.model.hidden(x * np.float32(loaded.pixel_scale))
    return probabilities, hidden


def assert_matches(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    assert float(np.max(np.abs(got - expected))) < TOLERANCE
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))


@pytest.mark.parametrize("model", ["twolayer", "softmax"])
def test_onnx_export_checks_and_matches_on_the_test_set(runs, data, tmp_path, model):
    target = tmp_path / "model.onnx"
    done = mnistkit_cli("export", runs[model], "--format", "onnx", "-o", target)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target)
    proto = onnx.load(str(target))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == ONNX_IR_VERSION
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", ONNX_OPSET)]
    assert {n.op_type for n in proto.graph.node} <= {"Flatten", "Cast", "Mul", "Gemm", "Relu",
                                                      "Softmax"}
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["model"] == model and json.loads(props["class_names"]) == list("0123456789")

    expected_probs, expected_hidden = reference(runs[model], data)
    session = ReferenceEvaluator(proto)
    outputs = [o.name for o in proto.graph.output]
    results = dict(zip(outputs, session.run(None, {"images": data.test.images}), strict=True))
    assert_matches(results["probabilities"], expected_probs)
    if model == "twolayer":
        assert outputs == ["probabilities", "hidden"]
        assert np.allclose(results["hidden"], expected_hidden, rtol=1e-5, atol=1e-5)
    else:
        assert outputs == ["probabilities"]


def test_onnxruntime_gives_the_same_probabilities(runs, data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    target = tmp_path / "twolayer.onnx"
    assert mnistkit_cli("export", runs["twolayer"], "-o", target).returncode == 0
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    probabilities, _hidden = session.run(None, {"images": data.test.images})
    assert_matches(probabilities, reference(runs["twolayer"], data)[0])


def test_float_input_takes_pixels_already_scaled(runs, data, tmp_path):
    target = tmp_path / "float.onnx"
    done = mnistkit_cli("export", runs["twolayer"], "--input", "float", "-o", target)
    assert done.returncode == 0, done.stderr
    proto = onnx.load(str(target))
    assert proto.graph.input[0].name == "x"
    x = data.test.images.reshape(-1, 784).astype(np.float32) / np.float32(255)
    (probabilities, _hidden) = ReferenceEvaluator(proto).run(None, {"x": x})
    assert_matches(probabilities, reference(runs["twolayer"], data)[0])


def test_default_output_is_in_the_run_folder(runs):
    done = mnistkit_cli("export", runs["softmax"], "--json")
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)["files"]
    assert written == [str(runs["softmax"] / "model.onnx")]
    assert Path(written[0]).stat().st_size > 784 * 10 * 4


def test_npz_export_is_plain_arrays_that_numpy_alone_can_run(runs, data, tmp_path):
    target = tmp_path / "model.npz"
    done = mnistkit_cli("export", runs["twolayer"], "--format", "npz", "-o", target)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(target), str(tmp_path / "model.json")]
    about = json.loads((tmp_path / "model.json").read_text())
    assert about["format"] == "mnistkit-npz" and about["model"] == "twolayer"
    assert [step["op"] for step in about["layers"]] == ["dense", "relu", "dense", "softmax"]
    # The description read by hand, as a NumPy-only user would:
    with np.load(target, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype == np.float32 for name in arrays.files)
        a = data.test.images.reshape(-1, 784).astype(np.float32) * np.float32(
            about["pixel_scale"])
        for step in about["layers"][:-1]:
            a = a @ arrays[step["W"]] + arrays[step["b"]] if step["op"] == "dense" else (
                np.maximum(a, 0))
    by_hand = np.exp(a - a.max(axis=1, keepdims=True))
    by_hand /= by_hand.sum(axis=1, keepdims=True)
    expected = reference(runs["twolayer"], data)[0]
    assert_matches(by_hand, expected)
    assert_matches(npz_probabilities(target, data.test.images), expected)


class _NoExport:
    """A model that follows the contract but has no ``export_layers``."""

    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        self._inner = SoftmaxClassifier(SoftmaxOptions(), rng, n_inputs, n_classes)
        self.params = self._inner.params

    def loss_and_grads(self, x, y):
        return self._inner.loss_and_grads(x, y)

    def scores(self, x):
        return self._inner.scores(x)


def _plugin_with(name: str, factory) -> types.ModuleType:
    module = types.ModuleType(f"mnistkit_test_{name.replace('-', '_')}")

    @hookimpl
    def mnistkit_register_models(register):
        register(name, factory, help="test model")

    module.mnistkit_register_models = mnistkit_register_models
    return module


def test_a_model_without_export_layers_is_one_line_naming_it(tmp_path):
    cli = build_cli(load_plugins([_plugin_with("noexport", _NoExport)], entry_points=False))
    run = tmp_path / "run"
    trained = invoke("train", "--model", "noexport", "--epochs", "1", "--limit", "500",
                     "--val-size", "100", "--out", run, "--quiet", cli=cli)
    assert trained.exit_code == 0, trained.output
    result = invoke("export", run, "-o", tmp_path / "m.onnx", cli=cli)
    assert_one_line_error(result, "model 'noexport' cannot be exported", "export_layers()",
                          exit_code=1)
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnx_package_is_one_line_and_npz_still_works(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    result = invoke("export", runs["softmax"], "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "pip install 'mnistkit[onnx]'", exit_code=1)
    result = invoke("export", runs["softmax"], "--format", "npz", "-o", tmp_path / "m.npz")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.npz").is_file() and (tmp_path / "m.json").is_file()


def test_not_a_run_folder_is_one_line(tmp_path):
    assert_one_line_error(invoke("export", tmp_path), "not a run folder", exit_code=1)


def test_layers_that_do_not_reproduce_scores_are_refused():
    model = SoftmaxClassifier(SoftmaxOptions(init_std=0.1), np.random.default_rng(0))
    wrong = [Dense(model.params["W"], model.params["b"] + 1.0)]
    spec = ExportSpec(tuple(wrong), "softmax", 1 / 255, (28, 28), tuple("0123456789"))
    with pytest.raises(ExportError, match="does not reproduce scores"):
        check_faithful(model, spec)
    check_faithful(model, ExportSpec(tuple(model.export_layers()), "softmax", 1 / 255,
                                     (28, 28), tuple("0123456789")))


class _WrongExport(SoftmaxClassifier):
    """export_layers() forgets the bias: the conformance kit must catch it."""

    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        super().__init__(SoftmaxOptions(init_std=0.1), rng, n_inputs, n_classes)
        self.params["b"][...] = 1.0

    def export_layers(self):
        return [Dense(self.params["W"], np.zeros_like(self.params["b"]))]


def test_the_conformance_kit_checks_export_layers():
    from mnistkit.testing import check_model

    check_model(SoftmaxClassifier, SoftmaxOptions)  # the built-in passes
    with pytest.raises(AssertionError, match="extras.*does not reproduce scores"):
        check_model(_WrongExport, None, skip=["overfit", "gradients", "checkpoint"])


@pytest.mark.parametrize("layers, message", [
    ([], "must end with a Dense layer"),
    ([Dense(np.zeros((784, 8), np.float32), np.zeros(8, np.float32)), ReLU()],
     "must end with a Dense layer"),
    ([Dense(np.zeros((784, 8), np.float32), np.zeros(8, np.float32)),
      Dense(np.zeros((9, 10), np.float32), np.zeros(10, np.float32))], "takes 9 inputs"),
    ([Dense(np.zeros((784, 10), np.float32), np.zeros(3, np.float32))], "expected float W"),
    (["relu", Dense(np.zeros((784, 10), np.float32), np.zeros(10, np.float32))],
     "item 0 is str"),
])
def test_malformed_export_layers_name_the_model(layers, message):
    model = types.SimpleNamespace(export_layers=lambda: layers)
    with pytest.raises(ExportError, match=message) as info:
        model_layers(model, "badlayers")
    assert "'badlayers'" in str(info.value)
