"""The training runner: resume after a kill, MirroredStrategy, mixed precision, logging."""

import importlib.util
import os

import keras
import numpy as np
import pytest

from tfrestore.training import ConfigError, resume_epoch, train


class Killed(Exception):
    """Simulates the process being killed at the start of an epoch."""


class KillAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed(f"killed at epoch {epoch}")


#: The resume check's run (on ``tiny_config``): three epochs of two steps of a 3-layer DnCNN on
#: L1 plus a queue loss, whose queue and count must survive the kill (random VGG16 features,
#: tiny), under a cosine schedule.
RESUME = {
    "seed": 3,
    "model": {"args": {"depth": 3, "filters": 8, "channels": 3, "batch_norm": False}},
    "losses": [
        {"type": "L1"},
        {
            "type": "D2SMLoss",
            "loss_weight": 0.5,
            "args": {
                "backbone": "vgg16",
                "layers": "relu1_2",
                "weights": None,
                "patch_size": None,
                "queue_size": 8,
                "image_size": [16, 16],
            },
        },
    ],
    "data": {"batch_size": 4},
    "optimizer": {"type": "Adam", "learning_rate": 1e-2},
    "schedule": {"type": "cosine"},
}


def d2sm_state(model):
    d2sm = model.loss.losses[1]
    pred, true, count = d2sm.queue_state()
    return pred, true, count


def check_resume(cfg, tmp_path, strategy):
    full = train(cfg, output_dir=str(tmp_path / "full"), strategy=strategy, report=False)
    assert full.initial_epoch == 0 and len(full.history["loss"]) == 3

    run = str(tmp_path / "killed")
    with pytest.raises(Killed):
        train(cfg, output_dir=run, strategy=strategy, report=False, callbacks=[KillAtEpoch(2)])
    assert resume_epoch(os.path.join(run, "backup")) == 2
    resumed = train(cfg, output_dir=run, strategy=strategy, report=False)
    assert resumed.initial_epoch == 2
    assert not os.path.exists(os.path.join(run, "backup"))

    for a, b in zip(full.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    qa, qb = d2sm_state(full.model), d2sm_state(resumed.model)
    assert qa[2] == qb[2] == 3 * 2 * 4  # epochs x steps x global batch rows; none from validation
    np.testing.assert_allclose(qb[0], qa[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(qb[1], qa[1], rtol=1e-4, atol=1e-5)
    # The history spans the whole run (the interrupted epochs included) and matches.
    np.testing.assert_allclose(resumed.history["loss"], full.history["loss"], rtol=1e-4)
    assert resumed.history["epoch"] == [0.0, 1.0, 2.0]
    # Learning rate logged after each epoch: cosine decay over the 6 steps from 1e-2 to the
    # default floor of 1 % of the peak (alpha = 0.01).
    cosine = [0.5 * (1 + np.cos(np.pi * 2 * (e + 1) / 6)) for e in range(3)]
    expected = [1e-2 * ((1 - 0.01) * c + 0.01) for c in cosine]
    np.testing.assert_allclose(resumed.history["learning_rate"], expected, atol=1e-7)


def test_resume_after_kill_matches_uninterrupted_run(tiny_config, tmp_path):
    """Weights, optimizer, D2SM queue and data stream all resume (graph mode, one replica)."""
    cfg = tiny_config(**RESUME, train={"epochs": 3, "steps_per_epoch": 2})
    check_resume(cfg, tmp_path, None)


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run_mirrored(tiny_config, tmp_path, strategy):
    """The same with 2 replicas (the queue gathers the global batch); ~1 min on 2 cores."""
    cfg = tiny_config(**RESUME, train={"epochs": 3, "steps_per_epoch": 2, "run_eagerly": True})
    check_resume(cfg, tmp_path, strategy)


def test_resume_refuses_a_changed_config(tiny_config, tmp_path):
    cfg = tiny_config(train={"epochs": 2, "run_eagerly": True})
    run = str(tmp_path / "run")
    with pytest.raises(Killed):
        train(cfg, output_dir=run, report=False, callbacks=[KillAtEpoch(1)])
    differ = r"interrupted run \(epoch 1\).*keys differ: data.crop_size"
    with pytest.raises(ConfigError, match=differ):
        train(cfg, output_dir=run, report=False, overrides=["data.crop_size=32"])
    # --overwrite discards the backup (here before a config error stops the run).
    with pytest.raises(
        ConfigError, match="'metrics.monitor' is 'val_psnr', which this run does not"
    ):
        train(cfg, output_dir=run, report=False, overrides=["metrics.psnr=false"], overwrite=True)
    assert resume_epoch(os.path.join(run, "backup")) == 0


def test_mixed_precision_run_on_two_replicas(tiny_config, tmp_path, strategy):
    cfg = tiny_config(
        losses=[{"type": "L1"}, {"type": "SSIMLoss", "loss_weight": 0.1}],
        train={"steps_per_epoch": 2, "mixed_precision": True, "run_eagerly": True},
    )
    result = train(cfg, output_dir=str(tmp_path), report=False, strategy=strategy)
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards
    assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert result.model.get_layer("conv1").dtype_policy.name == "mixed_float16"
    # Keras' mixed-precision practice: the final layer runs in float32 (float32 outputs)
    assert result.model.layers[-1].dtype_policy.name == "float32"
    assert (
        np.isfinite(result.history["loss"]).all() and np.isfinite(result.history["val_psnr"]).all()
    )
    with open(tmp_path / "run.yaml") as f:
        info = f.read()
    assert "dtype_policy: mixed_float16" in info and "MirroredStrategy, 2 replica(s)" in info


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed"
)
def test_tensorboard_scalars_and_images(tiny_config, tmp_path):
    import tensorflow as tf

    cfg = tiny_config(
        output={"tensorboard": True, "image_summaries": 2}, train={"run_eagerly": True}
    )
    train(cfg, output_dir=str(tmp_path), report=False)
    tags = set()
    for root, _, files in os.walk(tmp_path / "logs"):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                tags.update(v.tag for v in event.summary.value)
    assert {"degraded", "restored", "clean"} <= tags
    assert any("loss" in t for t in tags) and any("psnr" in t for t in tags)


def test_validation_lpips_callback_adds_the_mean_to_the_logs():
    import tensorflow as tf

    from tfrestore.training.callbacks import ValidationLPIPS

    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Identity()])
    rng = np.random.default_rng(0)
    x = rng.random((3, 8, 8, 3), dtype=np.float32)
    y = rng.random((3, 8, 8, 3), dtype=np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    fake = lambda a, b: tf.reduce_mean(tf.abs(a - b), axis=[1, 2, 3])  # noqa: E731
    cb = ValidationLPIPS(ds, fake)
    cb.set_model(model)
    logs = {}
    cb.on_epoch_end(0, logs)
    assert logs["val_lpips"] == pytest.approx(float(np.mean(np.abs(x - y))), rel=1e-5)


@pytest.mark.weights
def test_lpips_is_validated_when_its_weights_are_available(
    tiny_config, tmp_path, weights_dir, monkeypatch
):
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(weights_dir))
    cfg = tiny_config(
        data={"val": {"crop_size": 64, "batch_size": 2}},
        metrics={"lpips": True, "monitor": "val_lpips", "mode": "min"},
        train={"run_eagerly": True},
    )
    result = train(cfg, output_dir=str(tmp_path), report=False)
    assert 0.0 < result.history["val_lpips"][0] < 1.5
    assert os.path.isfile(tmp_path / "best.keras")


class CtrlC(keras.callbacks.Callback):
    """Ctrl-C after ``batch`` (None: before the first step)."""

    def __init__(self, batch=None):
        super().__init__()
        self.batch = batch

    def on_train_begin(self, logs=None):
        if self.batch is None:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            raise KeyboardInterrupt


def test_ctrl_c_says_the_same_command_resumes(tiny_config, tmp_path):
    from tfrestore.training import runner

    cfg = tiny_config()
    cfg["train"] = {"epochs": 2, "steps_per_epoch": 2, "verbose": 0, "run_eagerly": True,
                    "backup_every_steps": 1}
    run = str(tmp_path / "run")
    with pytest.raises(runner.TrainingInterrupted) as info:
        train(cfg, output_dir=run, report=False, callbacks=[CtrlC(None)])
    assert str(info.value).startswith("interrupted before any backup was written")
    with pytest.raises(runner.TrainingInterrupted) as info:
        train(cfg, output_dir=run, report=False, callbacks=[CtrlC(0)])
    message = str(info.value)
    assert message == ("interrupted; run the same command again to resume from the last "
                       f"backup, at epoch 1, step 2 (run directory {run})"), message
    assert isinstance(info.value, KeyboardInterrupt)  # Python callers' except KeyboardInterrupt
    resumed = train(cfg, output_dir=run, report=False)  # the same call resumes
    assert resumed.initial_epoch == 0 and os.path.isfile(os.path.join(run, "final.keras"))


def test_mixed_precision_without_a_gpu_is_warned_about():
    from tfrestore.training.runner import mixed_precision_warning

    assert mixed_precision_warning(["/physical_device:GPU:0"]) is None
    text = mixed_precision_warning([])
    assert "no GPU" in text and "slower than in float32" in text and "\n" not in text
