"""Export a trained model to ONNX or to plain NumPy arrays, built from its parameters.

A model opts in with the optional method ``export_layers()`` (see
:mod:`mnistkit.models.base`): the forward pass that ``scores(x)`` computes, as a list
of :class:`Dense` and :class:`ReLU` steps. mnistkit adds what training did around it
(the uint8 -> float conversion and the pixel scale in front, a softmax behind) and
writes either

- an ONNX model (:func:`build_onnx`, needs the optional ``onnx`` package:
  ``pip install 'mnistkit[onnx]'``): ``Cast``/``Flatten``/``Mul``, then ``Gemm``/``Relu``,
  then ``Softmax``; outputs ``probabilities`` and, where a step is marked, ``hidden``.
  Opset :data:`ONNX_OPSET`, IR version :data:`ONNX_IR_VERSION`, for wide runtime support;
- or an ``.npz`` of plain arrays with a JSON description beside it (:func:`write_npz`),
  for NumPy-only use (:func:`npz_probabilities` is the reference reading of it).

Nothing here prints; every user-facing problem is an :class:`~mnistkit.errors.ExportError`.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mnistkit import __version__
from mnistkit.errors import ExportError, setting
from mnistkit.files import atomic_write

#: ONNX operator set 13 (ONNX 1.8, 2020): Gemm, Relu, Softmax(axis), Cast, Flatten, Mul
#: as they still are; read by onnxruntime >= 1.6, OpenCV DNN, TensorRT, onnx.js...
ONNX_OPSET = 13
#: IR version 7, the one that goes with opset 13 (newer runtimes read older IR).
ONNX_IR_VERSION = 7
NPZ_FORMAT = "mnistkit-npz"
NPZ_FORMAT_VERSION = 1
FORMATS = ("onnx", "npz")
InputKind = Literal["uint8", "float"]
INPUT_KINDS: tuple[str, ...] = ("uint8", "float")


@dataclasses.dataclass(frozen=True)
class Dense:
    """``y = x @ W + b``: ``W`` is ``(inputs, outputs)``, ``b`` is ``(outputs,)``."""

    W: np.ndarray
    b: np.ndarray


@dataclasses.dataclass(frozen=True)
class ReLU:
    """``y = max(x, 0)``; ``output="hidden"`` also makes the result a graph output."""

    output: str | None = None


Layer = Dense | ReLU


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What to export: the layers and everything about the input and the model."""

    layers: tuple[Layer, ...]
    model: str
    pixel_scale: float
    image_shape: tuple[int, int]
    class_names: tuple[str, ...]
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        return int(self.image_shape[0] * self.image_shape[1])


def model_layers(model: Any, name: str) -> tuple[Layer, ...]:
    """``model.export_layers()`` checked: a chain of Dense/ReLU steps; ExportError if the
    model has no such method or returns something else."""
    method = getattr(model, "export_layers", None)
    if not callable(method):
        raise ExportError(f"model {name!r} cannot be exported: it has no export_layers() method "
                          "(see 'Exporting' in docs/plugins.md)")
    try:
        layers = tuple(method())
    except Exception as exc:  # a plugin's bug: name it in one line
        raise ExportError(f"model {name!r}: export_layers() failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    _check_layers(layers, name)
    return layers


def _check_layers(layers: Sequence[Any], name: str) -> None:
    if not layers or not isinstance(layers[-1], Dense):
        raise ExportError(f"model {name!r}: export_layers() must end with a Dense layer "
                          "(the class scores)")
    width = None
    for index, layer in enumerate(layers):
        if isinstance(layer, ReLU):
            continue
        if not isinstance(layer, Dense):
            raise ExportError(f"model {name!r}: export_layers() item {index} is "
                              f"{type(layer).__name__}; expected mnistkit.export.Dense or ReLU")
        W, b = np.asarray(layer.W), np.asarray(layer.b)
        if W.ndim != 2 or b.shape != (W.shape[1],) or W.dtype.kind != "f":
            raise ExportError(f"model {name!r}: Dense layer {index} has W {W.dtype} {W.shape} "
                              f"and b {b.dtype} {b.shape}; expected float W (in, out), b (out,)")
        if width is not None and W.shape[0] != width:
            raise ExportError(f"model {name!r}: Dense layer {index} takes {W.shape[0]} inputs "
                              f"but the layer before gives {width}")
        width = W.shape[1]


def forward(layers: Sequence[Layer], x: np.ndarray) -> dict[str, np.ndarray]:
    """The layers applied to ``x`` ``(B, inputs)`` in float64: ``scores`` and marked outputs."""
    outputs: dict[str, np.ndarray] = {}
    a = np.asarray(x, np.float64)
    for layer in layers:
        if isinstance(layer, Dense):
            a = a @ np.asarray(layer.W, np.float64) + np.asarray(layer.b, np.float64)
        else:
            a = np.maximum(a, 0)
            if layer.output:
                outputs[layer.output] = a
    outputs["scores"] = a
    return outputs


def check_faithful(model: Any, spec: ExportSpec, n: int = 16, seed: int = 0) -> None:
    """Raise ExportError unless the layers reproduce ``model.scores`` on random inputs."""
    rng = np.random.default_rng(seed)
    dtype = np.asarray(spec.layers[-1].W).dtype  # type: ignore[union-attr]
    x = rng.random((n, spec.n_inputs)).astype(dtype)
    expected = np.asarray(model.scores(x), np.float64)
    got = forward(spec.layers, x)["scores"]
    if got.shape != expected.shape:
        raise ExportError(f"model {spec.model!r}: export_layers() gives scores of shape "
                          f"{got.shape} but scores() gives {expected.shape}")
    error = float(np.max(np.abs(got - expected)))
    tolerance = 1e-4 * max(1.0, float(np.max(np.abs(expected))))
    if not error <= tolerance:
        raise ExportError(f"model {spec.model!r}: export_layers() does not reproduce scores() "
                          f"(max difference {error:.3g} on random inputs)")


def spec_for_run(loaded: Any, class_names: Sequence[str],
                 image_shape: tuple[int, int] = (28, 28)) -> ExportSpec:
    """The :class:`ExportSpec` of a run loaded with :func:`mnistkit.runs.load_run`,
    checked against the model's own ``scores``."""
    record = loaded.record
    spec = ExportSpec(
        layers=model_layers(loaded.model, record["model"]), model=record["model"],
        pixel_scale=loaded.pixel_scale, image_shape=tuple(image_shape),
        class_names=tuple(class_names),
        metadata={"run": loaded.path.name, "model": record["model"],
                  "model_options": record["model_options"],
                  "dataset": record["dataset"]["name"],
                  "dataset_fingerprint": record["dataset"].get("fingerprint", "")})
    first = spec.layers[0] if isinstance(spec.layers[0], Dense) else next(
        layer for layer in spec.layers if isinstance(layer, Dense))
    if np.asarray(first.W).shape[0] != spec.n_inputs:
        raise ExportError(f"model {spec.model!r}: the first layer takes "
                          f"{np.asarray(first.W).shape[0]} inputs, not {spec.n_inputs} pixels")
    check_faithful(loaded.model, spec)
    return spec


def description(spec: ExportSpec, input_kind: InputKind = "uint8") -> dict[str, Any]:
    """A JSON-ready description of the exported model (also the ONNX metadata)."""
    rows, cols = spec.image_shape
    if input_kind == "uint8":
        inputs = {"name": "images", "dtype": "uint8", "shape": ["N", rows, cols],
                  "preprocessing": f"flatten to (N, {rows * cols}), cast to float32, "
                                   f"multiply by pixel_scale"}
    else:
        inputs = {"name": "x", "dtype": "float32", "shape": ["N", rows * cols],
                  "preprocessing": "none: pixels already multiplied by pixel_scale"}
    return {"producer": f"mnistkit {__version__}", **spec.metadata,
            "pixel_scale": spec.pixel_scale, "input": inputs,
            "class_names": list(spec.class_names),
            "outputs": ["probabilities", *_marked_outputs(spec.layers)]}


def _marked_outputs(layers: Sequence[Layer]) -> list[str]:
    return [layer.output for layer in layers if isinstance(layer, ReLU) and layer.output]


# --- ONNX -----------------------------------------------------------------------------

def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'mnistkit[onnx]' "
                          "(or pip install onnx); --format npz needs nothing more") from None
    return onnx


def build_onnx(spec: ExportSpec, input_kind: InputKind = "uint8") -> Any:
    """The ONNX ``ModelProto`` for ``spec``, validated with ``check_model(full_check=True)``."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    if input_kind not in INPUT_KINDS:
        raise ExportError(f"input must be one of {', '.join(INPUT_KINDS)}; got {input_kind!r}")
    rows, cols = spec.image_shape
    nodes, inits = [], []
    if input_kind == "uint8":
        graph_input = helper.make_tensor_value_info("images", TensorProto.UINT8,
                                                    ["N", rows, cols])
        inits.append(numpy_helper.from_array(np.array(spec.pixel_scale, np.float32),
                                             "pixel_scale"))
        nodes += [helper.make_node("Flatten", ["images"], ["flat"], axis=1),
                  helper.make_node("Cast", ["flat"], ["flat_float"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["flat_float", "pixel_scale"], ["x"])]
    else:
        graph_input = helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                    ["N", rows * cols])
    current, outputs = "x", []
    for index, layer in enumerate(spec.layers):
        if isinstance(layer, Dense):
            w, b = f"layer{index}.W", f"layer{index}.b"
            inits += [numpy_helper.from_array(np.asarray(layer.W, np.float32), w),
                      numpy_helper.from_array(np.asarray(layer.b, np.float32), b)]
            nodes.append(helper.make_node("Gemm", [current, w, b], [f"layer{index}"]))
        else:
            nodes.append(helper.make_node("Relu", [current], [layer.output or f"layer{index}"]))
            if layer.output:
                width = _next_width(spec.layers, index)
                outputs.append(helper.make_tensor_value_info(layer.output, TensorProto.FLOAT,
                                                             ["N", width]))
        current = nodes[-1].output[0]
    nodes.append(helper.make_node("Softmax", [current], ["probabilities"], axis=1))
    n_classes = len(spec.class_names)
    outputs.insert(0, helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                    ["N", n_classes]))
    graph = helper.make_graph(nodes, f"mnistkit-{spec.model}", [graph_input], outputs, inits)
    model = helper.make_model(graph, producer_name="mnistkit", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              doc_string=f"mnistkit model {spec.model!r}: class probabilities")
    model.ir_version = ONNX_IR_VERSION
    about = description(spec, input_kind)
    helper.set_model_props(model, {key: value if isinstance(value, str) else json.dumps(value)
                                   for key, value in about.items()})
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # a mnistkit bug or a layer the checker refuses
        raise ExportError(f"model {spec.model!r}: the ONNX checker refused the graph: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                          ) from exc
    return model


def _next_width(layers: Sequence[Layer], index: int) -> int:
    """The width of the activation after step ``index`` (that of the Dense before it)."""
    for layer in reversed(layers[:index]):
        if isinstance(layer, Dense):
            return int(np.asarray(layer.W).shape[1])
    raise ExportError("a ReLU output before any Dense layer has no known width")


def write_onnx(spec: ExportSpec, path: str | Path, input_kind: InputKind = "uint8") -> Path:
    """Write the ONNX model of ``spec`` to ``path`` (atomically); returns the path."""
    model = build_onnx(spec, input_kind)
    path = Path(path)
    _write_bytes(path, model.SerializeToString())
    return path


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; an OSError becomes one ExportError line."""
    try:
        with atomic_write(path) as handle:
            handle.write(data)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- NumPy .npz -----------------------------------------------------------------------

def write_npz(spec: ExportSpec, path: str | Path) -> tuple[Path, Path]:
    """Write the layers' arrays to ``path`` (``.npz``) and their description to the
    ``.json`` beside it; returns both paths. The description's ``layers`` lists the steps
    in order, naming each Dense layer's arrays in the ``.npz``."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    steps: list[dict[str, Any]] = []
    for index, layer in enumerate(spec.layers):
        if isinstance(layer, Dense):
            arrays[f"layer{index}_W"] = np.asarray(layer.W, np.float32)
            arrays[f"layer{index}_b"] = np.asarray(layer.b, np.float32)
            steps.append({"op": "dense", "W": f"layer{index}_W", "b": f"layer{index}_b",
                          "formula": "x @ W + b"})
        else:
            steps.append({"op": "relu", **({"output": layer.output} if layer.output else {})})
    steps.append({"op": "softmax", "axis": 1, "output": "probabilities"})
    about = {"format": NPZ_FORMAT, "format_version": NPZ_FORMAT_VERSION,
             **description(spec, "uint8"), "arrays": path.name, "layers": steps}
    json_path = path.with_suffix(".json")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _write_bytes(path, buffer.getvalue())
    _write_bytes(json_path, (json.dumps(about, indent=2) + "\n").encode())
    return path, json_path


def npz_probabilities(npz_path: str | Path, images: np.ndarray) -> np.ndarray:
    """Class probabilities of uint8 ``images`` ``(N, rows, cols)`` from an exported
    ``.npz`` and its ``.json``: the NumPy-only reading the description documents."""
    npz_path = Path(npz_path)
    about = json.loads(npz_path.with_suffix(".json").read_text())
    with np.load(npz_path, allow_pickle=False) as arrays:
        a = images.reshape(len(images), -1).astype(np.float32) * np.float32(about["pixel_scale"])
        for step in about["layers"]:
            if step["op"] == "dense":
                a = a @ arrays[step["W"]] + arrays[step["b"]]
            elif step["op"] == "relu":
                a = np.maximum(a, 0)
            elif step["op"] == "softmax":
                a = np.exp(a - a.max(axis=1, keepdims=True))
                a /= a.sum(axis=1, keepdims=True)
    return a


def export_run(loaded: Any, class_names: Sequence[str], path: str | Path,
               fmt: str = "onnx", input_kind: InputKind = "uint8") -> list[Path]:
    """Export a loaded run to ``path`` in ``fmt`` (``onnx`` or ``npz``); the files written."""
    if fmt not in FORMATS:
        raise ExportError(f"{setting('format')} must be one of {', '.join(FORMATS)}; got {fmt!r}")
    spec = spec_for_run(loaded, class_names)
    if fmt == "onnx":
        return [write_onnx(spec, path, input_kind)]
    if input_kind != "uint8":
        raise ExportError(f"{setting('format')} npz describes uint8 input; "
                          f"{setting('input')} float is for onnx")
    return list(write_npz(spec, path))
