"""Hostile and damaged run folders: checkpoints are never unpickled, every damage is one
clear line through ``mnistkit test RUN`` and ``mnistkit train --resume RUN``.

Already covered elsewhere: a folder without run.json (tests/test_cli_train.py), the
NaN guard keeping the last checkpoint and resume equality (tests/test_training.py).
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, invoke

from mnistkit.checkpoint import load_checkpoint
from mnistkit.errors import RunError

TINY = ["--limit", "1000", "--val-size", "100", "-m", "hidden_size=8", "--batch-size", "100"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A finished 1-epoch run; a second epoch is what --resume --epochs 2 would add."""
    out = tmp_path_factory.mktemp("runs") / "base"
    result = invoke("train", *TINY, "--epochs", "1", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


class Payload:
    """Unpickling this creates ``marker``: proof that something was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def npz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def checkpoint_members(path: Path) -> dict[str, bytes]:
    with np.load(path) as archive:
        return {f"{k}.npy": npy_bytes(archive[k]) for k in archive.files}


def rewrite_checkpoints(run: Path, change) -> None:
    """Apply ``change(members) -> members or bytes`` to best.npz and last.npz."""
    for name in ("best.npz", "last.npz"):
        result = change(checkpoint_members(run / name))
        (run / name).write_bytes(result if isinstance(result, bytes) else npz_bytes(result))


def edit_arrays(change):
    """A checkpoint change expressed on arrays (a dict of name -> array)."""
    def apply(members):
        arrays = {k[:-4]: np.load(io.BytesIO(v)) for k, v in members.items()}
        change(arrays)
        return {f"{k}.npy": npy_bytes(v) for k, v in arrays.items()}
    return apply


def edit_record(change):
    def apply(run: Path) -> None:
        record = json.loads((run / "run.json").read_text())
        change(record)
        (run / "run.json").write_text(json.dumps(record))
    return apply


def _object_array(marker):
    def change(members):
        members["params/W1.npy"] = npy_bytes(np.array([Payload(marker)], dtype=object),
                                             allow_pickle=True)
        return members
    return change


def _member_is_a_pickle(marker):
    def change(members):
        members["params/W1.npy"] = pickle.dumps(Payload(marker))
        return members
    return change


def _file_is_a_pickle(marker):
    return lambda members: pickle.dumps(Payload(marker))


PICKLES = {
    "npz-holding-an-object-array": (_object_array, "holds Python objects"),
    "npz-member-is-a-pickle": (_member_is_a_pickle, "is not a NumPy array"),
    "pickle-renamed-npz": (_file_is_a_pickle, "not an .npz archive"),
}


@pytest.mark.parametrize("case", list(PICKLES))
def test_pickles_are_refused_and_never_executed(base_run, tmp_path, case):
    make, message = PICKLES[case]
    marker = tmp_path / "EXECUTED"
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload works when unpickled...
    assert marker.exists()
    marker.unlink()
    run = Path(shutil.copytree(base_run, tmp_path / "run"))
    rewrite_checkpoints(run, make(marker))
    for args in (["test", run], ["test", run, "--params", "last"],
                 ["train", "--resume", run, "--epochs", "2"]):
        assert_one_line_error(invoke(*args), str(run), message, "refused"
                              if case != "pickle-renamed-npz" else "not a valid checkpoint")
    with pytest.raises(RunError):
        load_checkpoint(run / "last.npz")
    assert not marker.exists()  # ...but mnistkit never unpickled it


def test_a_lying_member_header_allocates_nothing(tmp_path):
    """An .npy member declaring 8 TiB in 100 bytes: refused from its header."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)})
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        with zipfile.ZipFile(tmp_path / "bomb.npz", "w", compression=compression) as archive:
            archive.writestr("params/W.npy", header.getvalue() + bytes(100))
        tracemalloc.start()
        try:
            with pytest.raises(RunError, match=r"declares 8796093022208 bytes .* holds 100"):
                load_checkpoint(tmp_path / "bomb.npz")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20


def _drop(key):
    return edit_arrays(lambda a: a.pop(key))


def _set(key, value):
    def change(arrays):
        arrays[key] = value(arrays[key]) if callable(value) else value
    return edit_arrays(change)


def _nan(arrays):
    arrays["params/W1"][0, 0] = np.nan


CHECKPOINT_DAMAGE = {
    "missing-array": (_drop("params/W2"), "missing: W2"),
    "extra-array": (_set("params/W3", np.zeros(3, np.float32)), "extra: W3"),
    "wrong-shape": (_set("params/W1", np.zeros((3, 3), np.float32)),
                    "'W1' is float32 (3, 3), the model expects float32 (784, 8)"),
    "wrong-dtype": (_set("params/W1", lambda w: w.astype(np.float64)),
                    "'W1' is float64 (784, 8), the model expects float32"),
    "nan-params": (edit_arrays(_nan), "'W1' holds NaN or infinite values"),
    "raw-npy-renamed": (lambda m: npy_bytes(np.zeros(3)), "not an .npz archive"),
    "empty-file": (lambda m: b"", "not an .npz archive"),
    "truncated-npz": (lambda m: npz_bytes(m)[:3000], "not a valid checkpoint"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_DAMAGE))
def test_damaged_checkpoint_is_one_line(base_run, tmp_path, case):
    change, message = CHECKPOINT_DAMAGE[case]
    run = Path(shutil.copytree(base_run, tmp_path / "run"))
    rewrite_checkpoints(run, change)
    assert_one_line_error(invoke("test", run), str(run / "best.npz"), message, exit_code=1)
    assert_one_line_error(invoke("train", "--resume", run, "--epochs", "2"),
                          str(run / "last.npz"), message, exit_code=1)


def _optimizer_state(arrays):  # only 'last.npz' has one; best.npz stays valid
    if "trainer/meta" in arrays:
        arrays["optimizer/velocity.W1"] = np.zeros(3, np.float32)


def _trainer_order(arrays):
    if "trainer/meta" in arrays:
        meta = json.loads(str(arrays["trainer/meta"]))
        meta["step"] = 3
        arrays["trainer/meta"] = np.array(json.dumps(meta))
        arrays["trainer/order"] = np.full(1000, 10**6, np.int64)  # past the 1000 images
        arrays["trainer/losses"] = np.zeros(13)


def _trainer_meta(arrays):
    if "trainer/meta" in arrays:
        arrays["trainer/meta"] = np.array("{not json")


RESUME_ONLY = {
    "optimizer-state-shape": (_optimizer_state, "optimizer state is damaged ('velocity.W1' is "
                                                "float32 (3,), its parameter is float32 (784, 8))"),
    "trainer-order-out-of-range": (_trainer_order, "trainer state is damaged (the batch order"),
    "trainer-meta-not-json": (_trainer_meta, "trainer state is damaged"),
}


@pytest.mark.parametrize("case", list(RESUME_ONLY))
def test_damaged_training_state_is_one_line_on_resume(base_run, tmp_path, case):
    change, message = RESUME_ONLY[case]
    run = Path(shutil.copytree(base_run, tmp_path / "run"))
    rewrite_checkpoints(run, edit_arrays(change))
    assert_one_line_error(invoke("train", "--resume", run, "--epochs", "2"),
                          str(run / "last.npz"), message, exit_code=1)


def _set_key(key, value):
    return edit_record(lambda r: r.__setitem__(key, value))


RECORD_DAMAGE = {
    "unknown-model": (_set_key("model", "twolayr"),
                      "unknown model 'twolayr'. Did you mean 'twolayer'?", 2),
    "newer-format": (_set_key("format_version", 99),
                     "run format 99 is not supported by mnistkit", 1),
    "format-not-a-number": (_set_key("format_version", "1"), "run format '1'", 1),
    "truncated-json": (lambda r: (r / "run.json").write_text((r / "run.json").read_text()[:150]),
                       "run.json: unreadable", 1),
    "json-not-an-object": (lambda r: (r / "run.json").write_text("[1, 2, 3]"),
                           "run.json: expected a JSON object", 1),
    "binary-garbage": (lambda r: (r / "run.json").write_bytes(b"\xff\xfe\x00garbage"),
                       "run.json: unreadable", 1),
    "missing-key": (edit_record(lambda r: r.pop("training")), "run.json: missing 'training'", 1),
    "options-not-an-object": (_set_key("model_options", [8]),
                              "'model_options' must be a dict", 1),
    "training-field-missing": (edit_record(lambda r: r["training"].pop("batch_size")),
                               "training 'batch_size' is missing or of the wrong type", 1),
    "history-damaged": (_set_key("history", [{"epoch": "one"}]), "history row 1", 1),
    "model-option-unknown": (edit_record(lambda r: r["model_options"].update(hiden=3)),
                             "model 'twolayer' has no option 'hiden'", 2),
    "model-option-invalid": (edit_record(lambda r: r["model_options"].update(hidden_size=-5)),
                             "hidden_size must be >= 1", 2),
}


@pytest.mark.parametrize("case", list(RECORD_DAMAGE))
def test_damaged_run_json_is_one_line(base_run, tmp_path, case):
    damage, message, code = RECORD_DAMAGE[case]
    run = Path(shutil.copytree(base_run, tmp_path / "run"))
    damage(run)
    assert_one_line_error(invoke("test", run), message, exit_code=code)
    assert_one_line_error(invoke("train", "--resume", run, "--epochs", "2"), message,
                          exit_code=code)


def test_not_a_run_folder_at_all(tmp_path):
    (tmp_path / "file").write_text("x")
    for target, message in ((tmp_path / "nowhere", "no such run folder"),
                            (tmp_path / "file", "no such run folder"),
                            (tmp_path, "not a run folder (no run.json)")):
        assert_one_line_error(invoke("test", target), message, exit_code=1)
        assert_one_line_error(invoke("train", "--resume", target), message, exit_code=1)


def test_the_undamaged_copy_resumes(base_run, tmp_path):
    """The control: the same folder, undamaged, resumes for a second epoch."""
    run = Path(shutil.copytree(base_run, tmp_path / "run"))
    result = invoke("train", "--resume", run, "--epochs", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(json.loads((run / "run.json").read_text())["history"]) == 2
