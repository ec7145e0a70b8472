"""``mnistkit visualise``: every picture is a real PNG, and the numbers behind it are right."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnistkit import hookimpl, plots
from mnistkit.cli import build_cli
from mnistkit.errors import RunError
from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
from mnistkit.plugins import load_plugins

TINY = ["--limit", "2000", "--val-size", "500", "--epochs", "2", "--batch-size", "100", "-q"]


class Opaque(SoftmaxClassifier):
    """A model that does not expose its first layer."""

    first_layer = None


def _opaque_plugin() -> types.ModuleType:
    module = types.ModuleType("visualise_test_plugin")

    @hookimpl
    def mnistkit_register_models(register):
        register("opaque", Opaque, options=SoftmaxOptions, help="no first_layer()")

    module.mnistkit_register_models = mnistkit_register_models
    return module


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins([_opaque_plugin()], entry_points=False))


def run(cli, *args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def runs(cli, tmp_path_factory):
    """Tiny softmax and twolayer runs (2000 training images, 2 epochs of 20 steps)."""
    root = tmp_path_factory.mktemp("runs")
    made = {
        "softmax": root / "sm",
        "twolayer": root / "tl",
        "momentum": root / "sm-momentum",
        "opaque": root / "opaque",
    }
    run(cli, "train", "--model", "softmax", *TINY, "--out", made["softmax"])
    run(cli, "train", "--model", "twolayer", "-m", "hidden_size=24", *TINY,
        "--out", made["twolayer"])
    run(cli, "train", "--model", "softmax", "-o", "momentum=0.9", *TINY, "--epochs", "1",
        "--out", made["momentum"])
    run(cli, "train", "--model", "opaque", *TINY, "--epochs", "1", "--out", made["opaque"])
    return made


@pytest.fixture
def drawn(monkeypatch):
    """Record the arguments and figure of every figure function and every saved figure."""
    calls: dict[str, list] = {}

    def spy(name):
        original = getattr(plots, name)

        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            calls.setdefault(name, []).append((args, kwargs, result))
            return result

        monkeypatch.setattr(plots, name, wrapper)

    for name in ("history_figure", "weights_figure", "confusion_figure", "errors_figure",
                 "embedding_figure", "sample_grid", "save_figure"):
        spy(name)
    return calls


def read_png(path: Path, fig) -> np.ndarray:
    """The PNG's pixels, checked to be exactly the figure's size at 100 dpi and not blank."""
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    width, height = fig.get_size_inches() * 100
    assert pixels.shape[:2] == (round(height), round(width))
    assert 300 <= pixels.shape[1] <= 2000 and 200 <= pixels.shape[0] <= 2000
    grey = pixels[..., :3].mean(axis=2)
    assert grey.std() > 0.05                       # not a blank page
    rgb = np.round(pixels[..., :3] * 255).astype(np.int32)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    assert len(np.unique(codes)) > 50                # colours, anti-aliased text and lines
    return pixels


def saved(drawn) -> tuple[Path, object]:
    (args, _, path), = drawn["save_figure"]
    return Path(path), args[0]


def panels(fig) -> list:
    """The axes of ``fig`` that show an image (colour bars excluded)."""
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


# -- samples --------------------------------------------------------------------------------
def test_samples_is_show_samples(cli, tmp_path, drawn):
    run(cli, "visualise", "samples", "-n", "9", "--digit", "3", "--seed", "4",
        "-o", tmp_path / "a.png")
    run(cli, "show-samples", "-n", "9", "--digit", "3", "--seed", "4", "-o", tmp_path / "b.png")
    (args, _, fig), _ = drawn["sample_grid"]
    assert len(args[0]) == 9 and set(args[1].tolist()) == {3}
    a = read_png(tmp_path / "a.png", fig)
    import matplotlib.image

    assert np.array_equal(a, matplotlib.image.imread(tmp_path / "b.png"))


def test_samples_terminal_prints_blocks(cli):
    result = run(cli, "visualise", "samples", "-n", "3", "--seed", "1", "--terminal")
    assert "█" in result.stdout and "3 train samples" in result.stdout


# -- history --------------------------------------------------------------------------------
def test_train_writes_history_png(runs):
    import matplotlib.image

    pixels = matplotlib.image.imread(runs["softmax"] / "history.png")
    assert pixels.shape[:2] == (440, 1100) and pixels[..., :3].std() > 0.05


def test_history_has_one_point_per_step(cli, runs, drawn):
    result = run(cli, "visualise", "history", runs["softmax"])
    path, fig = saved(drawn)
    assert path == runs["softmax"] / "history.png" and str(path) in result.stdout
    read_png(path, fig)
    steps = np.loadtxt(runs["softmax"] / "steps.csv", delimiter=",", skiprows=1)
    assert len(steps) == 40                                  # 2 epochs of 2000 / 100
    (curves,), _, _ = drawn["history_figure"][0]
    assert np.allclose(curves[0].step_loss, steps[:, 2])
    loss_ax, acc_ax = fig.axes[:2]
    raw, smooth = loss_ax.lines[:2]
    assert np.array_equal(raw.get_xdata(), np.arange(1, 41))
    assert np.allclose(raw.get_ydata(), steps[:, 2])
    # The smoothed curve is the trailing mean over 5 steps (the shortest window), computed
    # here independently: a comparison of values, not of two rounding noises.
    trailing = [steps[max(0, i - 4):i + 1, 2].mean() for i in range(40)]
    assert np.allclose(smooth.get_ydata(), trailing, rtol=1e-9, atol=0)
    assert not np.allclose(smooth.get_ydata(), steps[:, 2], rtol=1e-3)
    history = json.loads((runs["softmax"] / "run.json").read_text())["history"]
    train_line, val_line = acc_ax.lines[:2]
    assert np.allclose(train_line.get_ydata(), [h["train_accuracy"] for h in history])
    assert np.allclose(val_line.get_ydata(), [h["val_accuracy"] for h in history])
    assert loss_ax.get_xlabel() and loss_ax.get_ylabel() and acc_ax.get_ylabel()


def test_history_overlays_runs_with_telling_labels(cli, runs, tmp_path, drawn):
    out = tmp_path / "compare.png"
    run(cli, "visualise", "history", runs["softmax"], runs["momentum"], runs["twolayer"],
        "-o", out)
    path, fig = saved(drawn)
    read_png(path, fig)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == 3
    assert labels[0].startswith("sm: softmax + sgd") and "momentum=0" in labels[0]
    assert labels[1].startswith("sm-momentum: softmax + sgd") and "momentum=0.9" in labels[1]
    assert labels[2].startswith("tl: twolayer + sgd")
    colours = {line.get_color() for line in fig.axes[0].lines}
    assert len(colours) == 3


def test_history_of_a_folder_that_is_not_a_run(cli, tmp_path):
    result = run(cli, "visualise", "history", tmp_path, code=1)
    assert result.stderr.startswith("Error: ") and "not a run folder" in result.stderr


def test_step_losses_are_validated(runs, tmp_path):
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "steps.csv").write_text("step,epoch,loss\n1,1,2.3\n3,1,2.1\n")
    with pytest.raises(RunError, match="without gaps"):
        plots.read_step_losses(bad)
    (bad / "steps.csv").write_text("step,epoch,loss\n1,1,oops\n")
    with pytest.raises(RunError, match="three numbers"):
        plots.read_step_losses(bad)


def test_smoothing_window_is_at_least_a_few_steps():
    assert [plots.smoothing_window(n) for n in (1, 40, 249, 251, 1000, 10**6)] == \
        [5, 5, 5, 5, 20, 200]


def test_moving_average_is_trailing_mean():
    values = np.array([4.0, 2.0, 6.0, 0.0, 8.0])
    assert np.allclose(plots.moving_average(values, 2), [4, 3, 4, 3, 4])
    assert np.allclose(plots.moving_average(values, 1), values)
    assert np.allclose(plots.moving_average(values, 99), np.cumsum(values) / np.arange(1, 6))


# -- weights --------------------------------------------------------------------------------
def test_softmax_weights_are_ten_class_templates(cli, runs, drawn):
    run(cli, "visualise", "weights", runs["softmax"])
    path, fig = saved(drawn)
    assert path == runs["softmax"] / "weights.png"
    read_png(path, fig)
    shown = panels(fig)
    assert [ax.get_title() for ax in shown] == [f"class {d}" for d in range(10)]
    (images, _), _, _ = drawn["weights_figure"][0]
    W = np.load(runs["softmax"] / "best.npz")["params/W"]
    assert np.array_equal(images[3], W[:, 3].reshape(28, 28))
    low, high = shown[0].images[0].get_clim()
    assert low == -high                                    # diverging scale centred at 0


def test_twolayer_weights_grid_and_minus_init(cli, runs, tmp_path, drawn):
    run(cli, "visualise", "weights", runs["twolayer"], "-n", "10", "-o", tmp_path / "w.png")
    run(cli, "visualise", "weights", runs["twolayer"], "-n", "100", "--minus-init",
        "-o", tmp_path / "d.png")
    (_, fig_w), (_, fig_d) = [(p, a[0]) for a, _, p in drawn["save_figure"]]
    read_png(tmp_path / "w.png", fig_w)
    assert len(panels(fig_w)) == 10 and panels(fig_w)[9].get_title() == "unit 9"
    assert len(panels(fig_d)) == 24                        # all of hidden_size=24

    # --minus-init subtracts exactly the parameters training started from
    from mnistkit.datasets import load_dataset
    from mnistkit.run_folder import load_run
    from mnistkit.runs import Run, RunSpec
    from mnistkit.training import TrainConfig

    registry = load_plugins(entry_points=False).registry
    dataset = load_dataset("mnist")
    record = json.loads((runs["twolayer"] / "run.json").read_text())
    fresh = Run.start(RunSpec(model="twolayer", model_options=record["model_options"],
                              val_size=500, limit=2000,
                              config=TrainConfig(epochs=2, batch_size=100)),
                      dataset, registry, tmp_path / "fresh")
    trained = load_run(runs["twolayer"], registry, dataset).model.first_layer()
    (images, _), _, _ = drawn["weights_figure"][1]
    expected = (trained - fresh.model.first_layer()).T.reshape(24, 28, 28)
    assert np.allclose(images, expected) and np.abs(images).max() > 0


def test_weights_of_a_model_without_first_layer(cli, runs):
    result = run(cli, "visualise", "weights", runs["opaque"], code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no first_layer()" in lines[0]


# -- confusion ------------------------------------------------------------------------------
@pytest.mark.parametrize("split, size", [("test", 10_000), ("val", 500)])
def test_confusion_matches_mnistkit_test(cli, runs, drawn, split, size):
    result = run(cli, "visualise", "confusion", runs["softmax"], "--split", split)
    path, fig = saved(drawn)
    assert path == runs["softmax"] / f"confusion-{split}.png"
    read_png(path, fig)
    (matrix, names), _, _ = drawn["confusion_figure"][0]
    report = json.loads(run(cli, "test", runs["softmax"], "--split", split, "--json").stdout)
    assert matrix.sum() == size == report["images"]
    assert np.trace(matrix) == round(report["accuracy"] * size)
    assert matrix.tolist() == report["confusion_matrix"]
    assert f"{report['accuracy']:.2%}" in result.stdout
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [str(v) for v in matrix.ravel()]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"


def test_text_colour_contrasts_with_the_cell():
    import matplotlib

    viridis = matplotlib.colormaps["viridis"]
    assert plots.text_colours(np.array([viridis(0.0), viridis(1.0)])).tolist() == [
        "white", "black"]


# -- errors ---------------------------------------------------------------------------------
def test_errors_are_real_mistakes_sorted_by_confidence(cli, runs, drawn):
    run(cli, "visualise", "errors", runs["softmax"], "-n", "12")
    path, fig = saved(drawn)
    assert path == runs["softmax"] / "errors.png"
    read_png(path, fig)
    (images, labels, predictions, confidence, names), _, _ = drawn["errors_figure"][0]
    assert len(images) == 12 and np.all(labels != predictions)
    assert np.all(np.diff(confidence) <= 0) and confidence[0] <= 1

    # the model really predicts that, with that probability, for those images
    from mnistkit.datasets import load_dataset
    from mnistkit.evaluation import predict_scores
    from mnistkit.models.base import softmax
    from mnistkit.run_folder import load_run

    loaded = load_run(runs["softmax"], load_plugins(entry_points=False).registry,
                      load_dataset("mnist"))
    probs = softmax(predict_scores(loaded.model, images, loaded.pixel_scale))
    assert np.array_equal(probs.argmax(axis=1), predictions)
    assert np.allclose(probs[np.arange(12), predictions], confidence, atol=1e-6)
    titles = [ax.get_title() for ax in panels(fig)]
    assert titles == plots.error_titles(labels, predictions, confidence, names)
    assert titles[0].startswith(f"true {labels[0]}\npred {predictions[0]} ")


def test_error_titles_agree_with_the_test_confusion_matrix(cli, runs, drawn):
    report = json.loads(run(cli, "test", runs["softmax"], "--json").stdout)
    matrix = np.array(report["confusion_matrix"])
    mistakes = int(matrix.sum() - np.trace(matrix))
    run(cli, "visualise", "errors", runs["softmax"], "-n", "30")
    (_, labels, predictions, _, _), _, _ = drawn["errors_figure"][0]
    assert len(labels) == min(30, mistakes)
    shown = np.zeros_like(matrix)
    np.add.at(shown, (labels, predictions), 1)
    assert np.all(shown <= matrix) and np.all(np.diag(shown) == 0)

    # with no limit, the mistakes picked are exactly the off-diagonal of that matrix
    from mnistkit.datasets import load_dataset
    from mnistkit.evaluation import evaluate
    from mnistkit.run_folder import load_run

    dataset = load_dataset("mnist")
    loaded = load_run(runs["softmax"], load_plugins(entry_points=False).registry, dataset)
    result = evaluate(loaded.model, dataset.test.images, dataset.test.labels, 10,
                      loaded.pixel_scale)
    every = plots.confident_errors(result.probabilities, dataset.test.labels, 10**6)
    assert len(every) == mistakes
    pairs = np.zeros_like(matrix)
    np.add.at(pairs, (dataset.test.labels[every], result.predictions[every]), 1)
    assert np.array_equal(pairs, matrix - np.diag(np.diag(matrix)))


def test_errors_in_the_terminal(cli, runs):
    result = run(cli, "visualise", "errors", runs["softmax"], "-n", "3", "--terminal")
    assert "3 most confident of" in result.stdout and "█" in result.stdout
    assert result.stdout.count("→") == 3 + 1            # three titles and the heading


def test_confident_errors_picks_the_most_confident_mistakes():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 1, 0])
    assert plots.confident_errors(probs, labels, 10).tolist() == [1, 4, 2, 3]
    assert plots.confident_errors(probs, labels, 2).tolist() == [1, 4]
    assert plots.confident_errors(probs, np.array([0, 1, 1, 0, 1]), 5).size == 0


def test_probability_text_never_rounds_up_to_certainty():
    assert plots.probability_text(0.99996) == "99.9%"
    assert plots.probability_text(0.5) == "50.0%"


# -- embedding ------------------------------------------------------------------------------
def test_embedding_of_twolayer(cli, runs, drawn):
    run(cli, "visualise", "embedding", runs["twolayer"], "-n", "800")
    path, fig = saved(drawn)
    assert path == runs["twolayer"] / "embedding.png"
    read_png(path, fig)
    (points, labels, names, explained), _, _ = drawn["embedding_figure"][0]
    assert points.shape == (800, 2) and labels.shape == (800,)
    assert explained[0] >= explained[1] > 0
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [str(d) for d in range(10) if (labels == d).any()]


def test_embedding_needs_a_hidden_layer(cli, runs):
    result = run(cli, "visualise", "embedding", runs["softmax"], code=2)
    assert "has no hidden layer" in result.stderr and len(result.stderr.splitlines()) == 1


def test_pca_2d_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    points, explained = plots.pca_2d(x)
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(values)[::-1]
    assert np.allclose(explained, values[order][:2] / values.sum())
    expected = (x - x.mean(axis=0)) @ vectors[:, order[:2]]
    assert np.allclose(np.abs(points), np.abs(expected))
    assert np.allclose(points.mean(axis=0), 0)


# -- options shared by all --------------------------------------------------------------------
def test_show_without_a_display_is_a_note(cli, runs, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    out = tmp_path / "c.png"
    result = run(cli, "visualise", "confusion", runs["softmax"], "-o", out, "--show")
    assert out.exists() and f"wrote {out}" in result.stdout
    assert result.stderr.count("\n") == 1 and "no display" in result.stderr


def test_unknown_image_format_is_one_line(cli, runs, tmp_path):
    result = run(cli, "visualise", "weights", runs["softmax"], "-o", tmp_path / "w.gif", code=1)
    assert result.stderr.startswith("Error: ") and ".gif" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_every_command_has_help_with_an_example(cli):
    for name in ("samples", "history", "weights", "confusion", "errors", "embedding"):
        result = run(cli, "visualise", name, "--help")
        assert "Example:" in result.stdout and "--output" in result.stdout
