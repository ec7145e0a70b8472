"""``mnistkit inspect`` and ``mnistkit show-samples`` through click's CliRunner."""

import gzip
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit.cli import build_cli
from mnistkit.data.idx import write_idx
from mnistkit.data.mnist import BUNDLED_DIR, FILE_NAMES, MNIST_MD5
from mnistkit.plugins import load_plugins

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(entry_points=False))


def run(cli, *args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def assert_one_line_error(result, *fragments, code=1):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_inspect_json_reports_the_published_facts(cli):
    result = run(cli, "inspect", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    train, test = report["splits"]["train"], report["splits"]["test"]
    assert (train["count"], test["count"]) == (60000, 10000)
    assert train["class_counts"] == TRAIN_COUNTS and test["class_counts"] == TEST_COUNTS
    assert train["image_shape"] == [28, 28] and train["dtype"] == "uint8"
    assert round(train["pixel_mean"], 4) == 0.1307 and round(train["pixel_std"], 4) == 0.3081
    assert train["checksum"] == "ok" and test["checksum"] == "ok"
    assert {f["file"]: f["md5"] for f in report["files"]} == MNIST_MD5
    assert report["verified"] is True and report["class_names"] == list("0123456789")
    assert report["checksums_checked"] == "now"  # cached arrays are hashed again


def test_inspect_table(cli):
    result = run(cli, "inspect")
    assert result.exit_code == 0, result.output
    for text in ("60,000 images, 28x28 uint8", "10,000 images", "5,923", "mean 0.1307",
                 "std 0.3081", "checksums: ok", "6bbc9ace898e44ae57da46a324031adb", "█"):
        assert text in result.stdout


def test_inspect_verify_passes_on_the_bundled_files(cli):
    result = run(cli, "inspect", "--verify", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["checksums_checked"] == "now, re-reading the files"
    assert [f["status"] for f in report["files"]] == ["ok"] * 4


@pytest.fixture
def changed_copy(tmp_path):
    """MNIST with one test label changed: valid, but not the published files."""
    for name in FILE_NAMES[:3]:
        os.symlink(BUNDLED_DIR / f"{name}.gz", tmp_path / f"{name}.gz")
    with gzip.open(BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz") as source:
        raw = bytearray(source.read())
    raw[8] = (raw[8] + 1) % 10
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    return tmp_path


def test_inspect_verify_fails_on_a_changed_file(cli, changed_copy):
    result = run(cli, "inspect", "--verify", "--data-dir", str(changed_copy))
    assert_one_line_error(result, "checksum mismatch", "t10k-labels-idx1-ubyte",
                          MNIST_MD5["t10k-labels-idx1-ubyte"])
    assert "mismatch" in result.stdout  # the table is still shown
    plain = run(cli, "inspect", "--json", "--data-dir", str(changed_copy))
    assert plain.exit_code == 0  # without --verify a changed copy is reported, not refused
    report = json.loads(plain.stdout)
    assert report["splits"]["test"]["checksum"] == "mismatch" and not report["verified"]


def test_data_dir_from_the_environment(cli, changed_copy):
    result = run(cli, "inspect", "--json", env={"MNISTKIT_DATA_DIR": str(changed_copy)})
    assert json.loads(result.stdout)["source"] == str(changed_copy)


@pytest.fixture
def plain_copy(tmp_path):
    """The four MNIST files decompressed into a folder (the test split only is real)."""
    folder = tmp_path / "plain"
    folder.mkdir()
    for name in FILE_NAMES:
        with gzip.open(BUNDLED_DIR / f"{name}.gz") as source, \
                open(folder / name, "wb") as target:
            shutil.copyfileobj(source, target)
    return folder


def test_truncated_file_is_one_line_and_non_zero(cli, plain_copy):
    path = plain_copy / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    result = run(cli, "inspect", "--data-dir", str(plain_copy))
    assert_one_line_error(result, str(path), "truncated")


def test_wrong_magic_is_one_line_and_non_zero(cli, plain_copy):
    path = plain_copy / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x50\x4b\x03\x04" + path.read_bytes()[4:])  # a zip file's magic
    result = run(cli, "show-samples", "--data-dir", str(plain_copy))
    assert_one_line_error(result, str(path), "not an IDX file", "0x504b0304")


def test_missing_folder_is_one_line(cli, tmp_path):
    result = run(cli, "inspect", "--data-dir", str(tmp_path / "nowhere"))
    assert_one_line_error(result, "nowhere", "does not exist")


def test_folder_without_the_files_is_one_line(cli, tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    result = run(cli, "inspect", "--data-dir", str(tmp_path))
    assert_one_line_error(result, "missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte")


def test_unknown_dataset_suggests_the_closest(cli):
    result = run(cli, "inspect", "--dataset", "mnsit")
    assert_one_line_error(result, "unknown dataset 'mnsit'", "Did you mean 'mnist'?", code=2)


def test_show_samples_writes_a_png(cli, tmp_path):
    from matplotlib.image import imread

    out = tmp_path / "grid.png"
    result = run(cli, "show-samples", "-n", "9", "--seed", "4", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {out} (9 train samples of mnist, seed 4)"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(out)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels[..., :3].std() > 0.1  # dark digits on white, not a blank image
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary left over


def test_show_samples_default_output_and_digit_filter(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(cli, "show-samples", "--split", "test", "--digit", "7", "-n", "4")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote samples.png (4 test samples of mnist (class 7)")
    assert (tmp_path / "samples.png").stat().st_size > 1000


def test_show_samples_terminal_preview(cli, tmp_path):
    result = run(cli, "show-samples", "-n", "3", "--seed", "0", "--terminal", "--digit", "3",
                 "-o", str(tmp_path / "unused.png"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "3 train samples of mnist (class 3), seed 0"
    assert lines[1].split() == ["3", "3", "3"]
    assert sum(line.count("█") for line in lines) > 50
    assert not (tmp_path / "unused.png").exists()


def test_show_samples_rejects_a_digit_outside_the_classes(cli):
    result = run(cli, "show-samples", "--digit", "10")
    assert result.exit_code == 2 and "0..9" in result.stderr and "Traceback" not in result.output


def test_show_samples_unknown_image_format(cli, tmp_path):
    result = run(cli, "show-samples", "-o", str(tmp_path / "x.bmp"))
    assert_one_line_error(result, "unknown format .bmp")


def test_terminal_rendering_is_pure_text():
    from mnistkit.terminal import bar, digit_lines, digits_grid

    image = np.zeros((4, 3), np.uint8)
    image[0, 0] = image[1, 0] = image[1, 2] = image[3, 1] = 255
    assert digit_lines(image) == ["█ ▄", " ▄ "]
    grid = digits_grid(np.stack([image, image]), ["a", "b"], width=8, crop=False)
    assert grid == ["a    b", "█ ▄  █ ▄", " ▄    ▄"]
    assert bar(0.5, 4) == "██  " and bar(1.0, 2) == "██"
    assert bar(0.5, 1) == "▌" and bar(0.125, 1) == "▏" and bar(2.0, 1) == "█"
