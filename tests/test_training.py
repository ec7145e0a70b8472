"""Models, SGD, the training loop and run folders: correctness, determinism, resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mnistkit.checkpoint import load_checkpoint
from mnistkit.data.dataset import Dataset, Split
from mnistkit.errors import OptionsError, PluginError, RunError, TrainingError
from mnistkit.gradcheck import check_gradients
from mnistkit.models.softmax import SoftmaxClassifier, SoftmaxOptions
from mnistkit.models.twolayer import TwoLayerNet, TwoLayerOptions
from mnistkit.optimizers.sgd import SGD, SGDOptions
from mnistkit.plugins import load_plugins
from mnistkit.run_folder import LAST_NPZ, load_run, read_record
from mnistkit.runs import Run, RunSpec
from mnistkit.training import TrainConfig


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    from mnistkit.datasets import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="module")
def small(mnist) -> Dataset:
    """3000 real training images (2500 train + 500 val) and 1000 test images."""
    return Dataset("mnist", Split(mnist.train.images[:3000], mnist.train.labels[:3000]),
                   Split(mnist.test.images[:1000], mnist.test.labels[:1000]),
                   source="first images of the bundled MNIST")


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False).registry


def spec(**overrides) -> RunSpec:
    config = dict(epochs=2, batch_size=64, seed=3)
    config.update(overrides.pop("config", {}))
    base = dict(model="twolayer", model_options={"hidden_size": 32}, val_size=500,
                optimizer_options={"lr": 0.1, "momentum": 0.9}, config=TrainConfig(**config))
    base.update(overrides)
    return RunSpec(**base)


def train(run: Run, stop=lambda: False) -> Run:
    for _ in run.train(stop):
        pass
    return run


@pytest.mark.parametrize("make", [
    lambda rng: TwoLayerNet(TwoLayerOptions(hidden_size=17, reg=0.1), rng),
    lambda rng: SoftmaxClassifier(SoftmaxOptions(reg=0.1, init_std=0.1), rng),
], ids=["twolayer", "softmax"])
def test_analytic_gradients_match_numerical_ones_in_float64(make, small):
    model = make(np.random.default_rng(0))
    x = small.train.images[:20].reshape(20, -1) / 255.0
    y = small.train.labels[:20].astype(np.intp)
    results = check_gradients(model, x, y)
    assert {r.name for r in results} == set(model.params)
    for result in results:
        assert result.relative_error < 1e-6, result


@pytest.mark.parametrize("model_name", ["twolayer", "softmax"])
def test_each_model_overfits_100_images(model_name, small, registry):
    entry = registry.get("model", model_name)
    model = entry.factory(entry.make_options({"reg": 0.0}), np.random.default_rng(0))
    x = (small.train.images[:100].reshape(100, -1) / np.float32(255)).astype(np.float32)
    y = small.train.labels[:100].astype(np.intp)
    sgd = SGD(model.params, SGDOptions(lr=0.5, momentum=0.9))
    for _ in range(300):
        _, grads = model.loss_and_grads(x, y)
        sgd.step(grads)
    assert np.mean(model.scores(x).argmax(1) == y) == 1.0


def test_models_train_in_float32(small):
    model = TwoLayerNet(TwoLayerOptions(hidden_size=8), np.random.default_rng(0))
    x = np.ones((4, 784), np.float32)
    loss, grads = model.loss_and_grads(x, np.array([0, 1, 2, 3]))
    assert isinstance(loss, float)
    assert all(g.dtype == np.float32 for g in grads.values())


def test_sgd_updates_follow_the_formulas():
    p = {"w": np.array([1.0, -2.0], np.float32)}
    g = {"w": np.array([0.5, 0.5], np.float32)}
    SGD(p, SGDOptions(lr=0.1)).step(g)
    np.testing.assert_allclose(p["w"], [0.95, -2.05])
    p = {"w": np.zeros(1, np.float32)}
    opt = SGD(p, SGDOptions(lr=1.0, momentum=0.5, nesterov=True))
    opt.step({"w": np.ones(1, np.float32)})  # v=-1, p += 0.5*v - 1 = -1.5
    np.testing.assert_allclose(p["w"], [-1.5])
    restored = SGD({"w": np.zeros(1, np.float32)}, SGDOptions(lr=1.0, momentum=0.5))
    restored.load_state_dict(opt.state_dict())
    np.testing.assert_array_equal(restored.state["velocity.w"], [-1.0])


def test_cosine_and_step_schedules():
    opt = SGD({"w": np.zeros(1, np.float32)}, SGDOptions(lr=1.0, schedule="cosine"))
    lrs = []
    for epoch in range(4):
        opt.start_epoch(epoch, 4)
        lrs.append(opt.lr)
    assert lrs[0] == 1.0 and lrs == sorted(lrs, reverse=True) and lrs[-1] > 0
    opt = SGD({"w": np.zeros(1, np.float32)}, SGDOptions(lr=1.0, schedule="step", gamma=0.1,
                                                          step_size=2))
    opt.start_epoch(3, 4)
    assert opt.lr == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [{"lr": "0"}, {"lr": "-1"}, {"momentum": "1"},
                                 {"nesterov": "true"}])
def test_invalid_sgd_options_are_rejected(bad, registry):
    with pytest.raises(OptionsError):
        registry.get("optimizer", "sgd").make_options(bad)


def test_training_reaches_good_accuracy_and_writes_the_run_folder(small, registry, tmp_path):
    train(Run.start(spec(), small, registry, tmp_path / "run"))
    record = read_record(tmp_path / "run")
    assert record["status"] == "finished"
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert record["metrics"]["test_accuracy"] > 0.85
    assert record["dataset"]["n_train"] == 2500 and record["dataset"]["n_val"] == 500
    assert {"run.json", "history.csv", "steps.csv", "best.npz", "last.npz"} <= {
        p.name for p in (tmp_path / "run").iterdir()}
    steps = (tmp_path / "run" / "steps.csv").read_text().splitlines()
    assert len(steps) == 1 + 2 * 40  # header + 2 epochs of ceil(2500 / 64) steps
    loaded = load_run(tmp_path / "run", registry, small)
    from mnistkit.evaluation import accuracy
    assert accuracy(loaded.model, small.test.images, small.test.labels) == \
        record["metrics"]["test_accuracy"]


def test_same_seed_gives_bit_identical_parameters(small, registry, tmp_path):
    a = train(Run.start(spec(), small, registry, tmp_path / "a"))
    b = train(Run.start(spec(), small, registry, tmp_path / "b"))
    c = train(Run.start(spec(config={"seed": 4}), small, registry, tmp_path / "c"))
    for key in a.model.params:
        assert np.array_equal(a.model.params[key], b.model.params[key])
    assert not np.array_equal(a.model.params["W1"], c.model.params["W1"])


@pytest.mark.parametrize("momentum", [0.9, 0.0], ids=["momentum", "plain-sgd-fused-step"])
@pytest.mark.parametrize("stop_after", [25, 40, 57])  # mid-epoch, at an epoch end, mid-epoch 2
def test_interrupted_then_resumed_equals_uninterrupted(stop_after, momentum, small, registry,
                                                       tmp_path):
    options = {"optimizer_options": {"lr": 0.1, "momentum": momentum}}
    whole = train(Run.start(spec(**options), small, registry, tmp_path / "whole"))
    assert whole.trainer._fused == (momentum == 0)  # twolayer.sgd_step takes plain SGD
    steps = iter(range(10_000))
    train(Run.start(spec(**options), small, registry, tmp_path / "part"),
                 stop=lambda: next(steps) >= stop_after)
    assert read_record(tmp_path / "part")["status"] == "interrupted"
    resumed = train(Run.resume(tmp_path / "part", small, registry))
    for key in whole.model.params:
        assert np.array_equal(whole.model.params[key], resumed.model.params[key]), key
    assert resumed.record["metrics"] == whole.record["metrics"]
    assert resumed.record["history"][-1]["train_loss"] == whole.record["history"][-1]["train_loss"]


def test_resume_with_momentum_restores_optimizer_state(small, registry, tmp_path):
    steps = iter(range(10_000))
    train(Run.start(spec(), small, registry, tmp_path / "r"), stop=lambda: next(steps) >= 10)
    groups = load_checkpoint(tmp_path / "r" / LAST_NPZ)
    assert set(groups["optimizer"]) == {"velocity.W1", "velocity.b1", "velocity.W2", "velocity.b2"}
    assert np.abs(groups["optimizer"]["velocity.W1"]).sum() > 0


class ExplodingModel:
    """Softmax model whose loss becomes NaN after a number of steps (for the guard)."""

    def __init__(self, options, rng, n_inputs=784, n_classes=10):
        self.inner = SoftmaxClassifier(SoftmaxOptions(), rng, n_inputs, n_classes)
        self.params, self.calls, self.fail_at = self.inner.params, 0, options.fail_at

    def loss_and_grads(self, x, y):
        self.calls += 1
        loss, grads = self.inner.loss_and_grads(x, y)
        return (float("nan") if self.calls >= self.fail_at else loss), grads

    def scores(self, x):
        return self.inner.scores(x)


@dataclasses.dataclass
class ExplodingOptions:
    fail_at: int = 50


class BadGradsModel(ExplodingModel):
    def loss_and_grads(self, x, y):
        loss, grads = self.inner.loss_and_grads(x, y)
        return loss, {"W": grads["W"]}


class TestPlugin:
    __name__ = "test-models"

    @staticmethod
    def mnistkit_register_models(register):
        register("exploding", ExplodingModel, options=ExplodingOptions)
        register("badgrads", BadGradsModel, options=ExplodingOptions)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(small, tmp_path):
    from mnistkit.hookspecs import hookimpl

    plugin = TestPlugin()
    plugin.mnistkit_register_models = hookimpl(TestPlugin.mnistkit_register_models)
    reg = load_plugins(extra=[plugin], entry_points=False).registry
    run = Run.start(spec(model="exploding", model_options={}), small, reg, tmp_path / "r")
    with pytest.raises(TrainingError, match=r"epoch 2, step 10: .*smaller"):
        train(run)
    record = read_record(tmp_path / "r")
    assert record["status"] == "diverged" and len(record["history"]) == 1
    kept = load_checkpoint(tmp_path / "r" / LAST_NPZ)
    assert np.isfinite(kept["params"]["W"]).all()
    assert kept["trainer"]["losses"].shape == (40,)  # the checkpoint of epoch 1

    bad = Run.start(spec(model="badgrads", model_options={}), small, reg, tmp_path / "b")
    with pytest.raises(PluginError, match="model 'badgrads'.*gradients for \\['W'\\]"):
        train(bad)


def test_bad_training_settings_fail_before_training(small, registry, tmp_path):
    with pytest.raises(OptionsError, match="--limit"):
        Run.start(spec(limit=2501), small, registry, tmp_path / "x")
    with pytest.raises(OptionsError, match="--batch-size"):
        Run.start(spec(config={"batch_size": 0}), small, registry, tmp_path / "x")
    with pytest.raises(OptionsError, match="--val-size"):
        Run.start(spec(val_size=3000), small, registry, tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        Run.start(spec(), small, registry, tmp_path / "full")


def test_sampling_with_replacement_and_steps_per_epoch(small, registry, tmp_path):
    run = train(Run.start(spec(config={"sampling": "replacement", "steps_per_epoch": 7,
                                       "epochs": 1}), small, registry, tmp_path / "r"))
    assert len(run.trainer.losses) == 7


class PoisonedGradient:
    """Softmax model with an extra parameter ``unused`` that the loss ignores; from step
    ``at`` its gradient is NaN (a finite loss never reveals it)."""

    def __init__(self, at: int):
        self.inner = SoftmaxClassifier(SoftmaxOptions(), np.random.default_rng(0))
        self.params = {**self.inner.params, "unused": np.zeros(3, np.float32)}
        self.at, self.calls = at, 0

    def loss_and_grads(self, x, y):
        self.calls += 1
        loss, grads = self.inner.loss_and_grads(x, y)
        bad = np.full(3, np.nan if self.calls >= self.at else 0.0, np.float32)
        return loss, {**grads, "unused": bad}

    def scores(self, x):
        return self.inner.scores(x)


def _trainer(small, model, epochs=2):
    from mnistkit.training import Trainer

    config = TrainConfig(epochs=epochs, batch_size=100)  # 30 steps an epoch
    return Trainer(model, SGD(model.params, SGDOptions(lr=0.1)), small.train, small.test,
                   config, np.random.default_rng(0))


def test_a_non_finite_gradient_the_loss_ignores_is_caught_before_the_epoch_is_kept(small):
    trainer = _trainer(small, PoisonedGradient(at=35))  # epoch 2, step 5
    events = []
    with pytest.raises(TrainingError, match="epoch 2, step 30: the loss or a gradient is not"):
        events.extend(trainer.run())
    assert sum(type(e).__name__ == "EpochFinished" for e in events) == 1


def test_a_stop_after_a_bad_update_raises_instead_of_handing_over_broken_parameters(small):
    trainer = _trainer(small, PoisonedGradient(at=3))
    steps = []
    stop = lambda: len(steps) == 3  # noqa: E731 - stop right after the 3rd (bad) update
    with pytest.raises(TrainingError, match="epoch 1, step 3: the loss or a gradient"):
        for event in trainer.run(stop):
            steps.append(event) if type(event).__name__ == "StepFinished" else None


def test_a_nan_gradient_is_blamed_on_its_own_step_not_the_next(small):
    class NanAt(SoftmaxClassifier):
        calls = 0

        def loss_and_grads(self, x, y):
            self.calls += 1
            loss, grads = super().loss_and_grads(x, y)
            if self.calls == 7:
                grads["W"][0, 0] = np.nan
            return loss, grads

    model = NanAt(SoftmaxOptions(), np.random.default_rng(0))
    with pytest.raises(TrainingError, match="epoch 1, step 7: the loss or a gradient is not"):
        list(_trainer(small, model).run())
    assert model.calls == 8  # found by the next step's loss: no extra work per step


@pytest.mark.parametrize("spread", [1.0, 30.0, 1e4])
def test_softmax_cross_entropy_matches_the_float64_formula(spread):
    from mnistkit.models.base import EXP_FLOOR, softmax_cross_entropy

    rng = np.random.default_rng(0)
    scores = (rng.standard_normal((64, 10)) * spread).astype(np.float32)
    y = rng.integers(0, 10, 64)
    z = scores.astype(np.float64) - scores.max(axis=1, keepdims=True)
    z = np.maximum(z, EXP_FLOOR)  # the documented floor: exp(-80) is as good as 0
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    expected_grad = (np.exp(log_p) - np.eye(10)[y]) / 64
    loss, grad = softmax_cross_entropy(scores.copy(), y)
    assert loss == pytest.approx(-log_p[np.arange(64), y].mean(), rel=1e-5)
    np.testing.assert_allclose(grad, expected_grad, atol=1e-7)
    assert grad.dtype == np.float32


def test_a_broken_sgd_step_is_named_on_the_first_step(small):
    class BrokenFusedStep(TwoLayerNet):
        def sgd_step(self, x, y, lr):
            return "not a number"

    model = BrokenFusedStep(TwoLayerOptions(hidden_size=8), np.random.default_rng(0))
    with pytest.raises(PluginError, match=r"model 'model': sgd_step failed on the first step "
                                          r"\(ValueError: could not convert"):
        list(_trainer(small, model).run())


def test_softmax_cross_entropy_with_classes_first_equals_the_usual_layout():
    from mnistkit.models.base import softmax_cross_entropy

    rng = np.random.default_rng(2)
    scores = (rng.standard_normal((16, 10)) * 5).astype(np.float32)
    y = rng.integers(0, 10, 16)
    loss_rows, grad_rows = softmax_cross_entropy(scores.copy(), y)
    loss_cols, grad_cols = softmax_cross_entropy(np.ascontiguousarray(scores.T), y, class_axis=0)
    assert loss_cols == pytest.approx(loss_rows, rel=1e-6)
    np.testing.assert_allclose(grad_cols.T, grad_rows, atol=1e-8)
    with pytest.raises(ValueError, match="class_axis"):
        softmax_cross_entropy(scores, y, class_axis=2)
