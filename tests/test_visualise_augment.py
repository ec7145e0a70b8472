"""``mnistkit visualise augment``: training images beside distortions made the way training
makes them, from the registry entry and ``batch_rng``."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit import hookimpl, plots
from mnistkit.augment import Elastic, ElasticOptions, batch_rng
from mnistkit.cli import build_cli
from mnistkit.data.summary import choose_samples
from mnistkit.datasets import load_dataset
from mnistkit.errors import PluginError
from mnistkit.plugins import load_plugins


class Flip:
    """A plugin distortion: every other copy is the mirror image."""

    def __init__(self, options):
        pass

    def distort(self, images, rng):
        return images[:, :, ::-1].copy() if rng.random() < 2 else images


class Floats(Flip):
    def distort(self, images, rng):
        return images.astype(np.float32)


class Crashes(Flip):
    def distort(self, images, rng):
        raise ZeroDivisionError("oops\nsecond line")


def _plugin() -> types.ModuleType:
    module = types.ModuleType("visualise_augment_plugin")

    @hookimpl
    def mnistkit_register_augmentations(register):
        register("flip", Flip, help="mirror")
        register("floats", Floats, help="broken: float output")
        register("crashes", Crashes, help="broken: raises")

    module.mnistkit_register_augmentations = mnistkit_register_augmentations
    return module


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins([_plugin()], entry_points=False))


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", None)


@pytest.fixture
def drawn(monkeypatch):
    """The arguments and result of every augment_figure and save_figure call."""
    calls: dict[str, list] = {}
    for name in ("augment_figure", "save_figure"):
        original = getattr(plots, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            result = _original(*args, **kwargs)
            calls.setdefault(_name, []).append((args, kwargs, result))
            return result

        monkeypatch.setattr(plots, name, wrapper)
    return calls


def run(cli, *args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_writes_a_png_of_originals_beside_distorted_copies(cli, mnist, tmp_path, drawn):
    out = tmp_path / "aug.png"
    result = run(cli, "visualise", "augment", "--augment", "elastic", "-n", "6", "--copies", "4",
                 "--seed", "3", "-o", out)
    assert f"wrote {out}" in result.stdout and "6 images x 4 copies" in result.stdout
    assert "elastic (sigma=4, alpha=34)" in result.stdout and "seed 3" in result.stdout
    (args, kwargs, fig), = drawn["augment_figure"]
    originals, copies = args[0], args[1]
    picked = choose_samples(mnist.train.labels, 6, 3)
    assert np.array_equal(originals, mnist.train.images[picked])
    assert args[2] == [str(int(y)) for y in mnist.train.labels[picked]]
    assert copies.shape == (4, 6, 28, 28) and copies.dtype == np.uint8
    # every copy of every image is distorted, and no two copies of an image are alike
    for i in range(6):
        for k in range(4):
            assert not np.array_equal(copies[k, i], originals[i])
            assert np.abs(copies[k, i].astype(int) - originals[i]).sum() > 1000
        assert len({copies[k, i].tobytes() for k in range(4)}) == 4
    # ... and still digits: the warp moves ink, it keeps a good part of it in the frame
    ink = originals.reshape(6, -1).sum(axis=1)
    assert np.all(copies.reshape(4, 6, -1).sum(axis=2) > 0.5 * ink)
    # exactly what training does: copy k is the first batch of epoch k of a run seeded 3
    for k in range(4):
        expected = Elastic(ElasticOptions()).distort(originals, batch_rng(3, k, 0))
        assert np.array_equal(copies[k], expected)
    import matplotlib.image

    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(out)
    width, height = fig.get_size_inches() * 100
    assert pixels.shape[:2] == (round(height), round(width))
    assert pixels[..., :3].mean(axis=2).std() > 0.1
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 6 * (1 + 4)


def test_options_reach_the_augmentation(cli, tmp_path, drawn):
    run(cli, "visualise", "augment", "-a", "alpha=0", "-n", "3", "--copies", "2", "--seed", "1",
        "-o", tmp_path / "a.png")
    (args, _, _), = drawn["augment_figure"]
    assert all(np.array_equal(copy, args[0]) for copy in args[1])  # no displacement at all
    assert "alpha=0" in drawn["augment_figure"][0][1]["title"]


def test_the_same_seed_draws_the_same_picture(cli, tmp_path):
    import matplotlib.image

    for name in ("a.png", "b.png"):
        run(cli, "visualise", "augment", "--augment", "affine", "-n", "2", "--seed", "5",
            "--digit", "7", "-o", tmp_path / name)
    assert np.array_equal(matplotlib.image.imread(tmp_path / "a.png"),
                          matplotlib.image.imread(tmp_path / "b.png"))


def test_default_output_and_fresh_seed(cli, tmp_path, drawn, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(cli, "visualise", "augment", "-n", "1", "--copies", "1")
    assert Path("augment-elastic.png").is_file()
    assert "wrote augment-elastic.png" in result.stdout and ", seed " in result.stdout


def test_a_plugin_augmentation_and_the_digit_filter(cli, tmp_path, drawn):
    run(cli, "visualise", "augment", "--augment", "flip", "--digit", "3", "-n", "4",
        "--copies", "2", "--seed", "0", "-o", tmp_path / "flip.png")
    (args, _, _), = drawn["augment_figure"]
    assert args[2] == ["3"] * 4
    assert np.array_equal(args[1][0], args[0][:, :, ::-1])


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--augment", "elastc"], 2, "unknown augmentation 'elastc'. Did you mean 'elastic'?"),
    (["-a", "alpha=-1"], 2, "alpha must be"),
    (["-a", "sigmaa=2"], 2, "has no option 'sigmaa'"),
    (["-a", "alpha"], 2, "not of the form name=value"),
    (["--augment", "none", "-a", "alpha=1"], 2, "takes no options"),
    (["--augment", "floats"], 1, "augmentation 'floats': distort must return uint8 images"),
    (["--augment", "crashes"], 1,
     "augmentation 'crashes': distort failed (ZeroDivisionError: oops)"),
])
def test_mistakes_are_one_line(cli, tmp_path, args, code, words):
    result = run(cli, "visualise", "augment", *args, "-n", "2", "-o", tmp_path / "x.png",
                 code=code)
    assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()


def test_digit_beyond_the_classes(cli, tmp_path):
    result = run(cli, "visualise", "augment", "--digit", "12", "-o", tmp_path / "x.png", code=2)
    assert "12 is not a class of mnist" in result.stderr


def test_distorted_copies_checks_its_input_and_keeps_the_originals():
    images = np.zeros((2, 28, 28), np.uint8)
    images[:, 10:18, 12:16] = 200
    before = images.copy()

    class Scribbles(Flip):
        def distort(self, batch, rng):
            batch[:, 0, 0] = 255  # in place: must not reach the caller's images
            return batch

    copies = plots.distorted_copies(Scribbles(None), images, 2, 0)
    assert np.array_equal(images, before) and copies[:, :, 0, 0].min() == 255
    with pytest.raises(PluginError, match="'floats': distort must return uint8"):
        plots.distorted_copies(Floats(None), images, 1, 0, name="floats")
    with pytest.raises(ValueError, match="uint8 batch"):
        plots.distorted_copies(Flip(None), images.astype(np.float32), 1, 0)
    with pytest.raises(ValueError, match="expected originals"):
        plots.augment_figure(images, copies[:, :1])


def test_help_has_an_example(cli):
    result = run(cli, "visualise", "augment", "--help")
    assert "Example:" in result.stdout and "mnistkit visualise augment" in result.stdout
    for option in ("--augment", "--augment-option", "--copies", "--seed", "--dataset",
                   "--data-dir", "--output", "--show"):
        assert option in result.stdout


def test_an_augmentation_whose_factory_raises_is_one_line(tmp_path):
    from click.testing import CliRunner

    from mnistkit.cli import build_cli
    from mnistkit.hookspecs import hookimpl
    from mnistkit.plugins import load_plugins

    def explode(options):
        raise RuntimeError("no weights here")

    class Plugin:
        @hookimpl
        def mnistkit_register_augmentations(self, register):
            register("exploding", explode, help="raises when built")

    cli = build_cli(load_plugins([Plugin()], entry_points=False))
    result = CliRunner().invoke(cli, ["visualise", "augment", "--augment", "exploding",
                                      "-o", str(tmp_path / "a.png")])
    assert result.exit_code == 1, result.output
    assert "could not be built: RuntimeError: no weights here" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "a.png").exists()
