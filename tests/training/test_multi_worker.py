"""Multi-worker training (2 processes on 127.0.0.1) and step-level resume after SIGKILL.

The slow tests launch :mod:`mw_worker` subprocesses; all runs share one tiny
config (L1 + D2SM with a queue + PDL with per-call projections) and are compared
with one uninterrupted single-process run.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tfrestore.training import ConfigError, load_config, train
from tfrestore.training.backup import read_backup
from tfrestore.training.strategy import cluster_size, get_strategy, is_chief

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EPOCHS, STEPS, BATCH = 2, 3, 4


def base_config(**train_extra):
    return {
        "task": "denoise",
        "seed": 5,
        "model": {
            "type": "DnCNN",
            "args": {"depth": 3, "filters": 8, "channels": 3, "batch_norm": False},
        },
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
                    "queue_size": 16,
                    "image_size": [16, 16],
                },
            },
            {
                "type": "PDLoss",
                "loss_weight": 0.1,
                "args": {
                    "layers": "relu1_2",
                    "weights": None,
                    "projection": "random_sphere",
                    "projection_multiple": 1.0,
                },
            },
        ],
        "data": {
            "crop_size": 16,
            "batch_size": BATCH,
            "val": {"crop_size": 16, "batch_size": 2},
            "test": {"max_images": 1, "crop_size": 32},
        },
        "optimizer": {"type": "Adam", "learning_rate": 1e-2},
        "schedule": {"type": "cosine"},
        "train": {
            "epochs": EPOCHS,
            "steps_per_epoch": STEPS,
            "verbose": 0,
            "backup_every_steps": 2,
            **train_extra,
        },
        "metrics": {"lpips": False},
        "output": {"tensorboard": False},
    }


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def launch(tmp_path, cfg, out_dir, tag, n_workers=1, kill_at=None, cli=False):
    """Start ``n_workers`` mw_worker processes (a TF_CONFIG cluster when > 1);
    ``kill_at = (worker index, global step)`` makes that worker SIGKILL itself;
    ``cli``: run ``python -m tfrestore train`` instead."""
    cfg_path = tmp_path / f"{tag}.json"
    cfg_path.write_text(json.dumps(cfg))
    ports = free_ports(n_workers)
    procs = []
    for i in range(n_workers):
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        env.pop("TF_CONFIG", None)
        if n_workers > 1:
            env["TF_CONFIG"] = json.dumps(
                {
                    "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                    "task": {"type": "worker", "index": i},
                }
            )
        args = [sys.executable, os.path.join(HERE, "mw_worker.py"), str(cfg_path), str(out_dir),
                str(tmp_path / f"{tag}_{i}.npz")]
        if cli:
            args = [sys.executable, "-m", "tfrestore", "train", cfg["task"], "--config",
                    str(cfg_path), "--output-dir", str(out_dir), "--no-report"]
        if kill_at is not None and kill_at[0] == i:
            args.append(str(kill_at[1]))
        log = open(tmp_path / f"{tag}_{i}.log", "w")
        procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_all(procs, tmp_path, tag, timeout=240):
    deadline = time.time() + timeout
    rcs = []
    for i, p in enumerate(procs):
        try:
            rcs.append(p.wait(timeout=max(1.0, deadline - time.time())))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"{tag}: worker {i} did not finish:\n" + log_tail(tmp_path, tag, i))
    return rcs


def log_tail(tmp_path, tag, i):
    return (tmp_path / f"{tag}_{i}.log").read_text()[-3000:]


def load(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def weights_of(result):
    keys = sorted((k for k in result if k.startswith("w")), key=lambda k: int(k[1:]))
    return [result[k] for k in keys]


def max_weight_diff(a, b):
    wa, wb = weights_of(a), weights_of(b)
    assert len(wa) == len(wb) > 0
    return max(float(np.max(np.abs(x - y))) for x, y in zip(wa, wb))


def summarize(model, history):
    out = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    d2sm, pdl = model.loss.losses[1], model.loss.losses[2]
    pred, true, count = d2sm.queue_state()
    out.update(queue_pred=pred, queue_true=true, queue_count=np.asarray(count))
    out["pdl_draws"] = np.asarray(pdl._draws.numpy())
    out["loss"] = np.asarray(history["loss"])
    return out


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The uninterrupted one-process run every other run is compared with."""
    out = tmp_path_factory.mktemp("single")
    res = train(base_config(strategy="default"), output_dir=str(out / "run"), report=False)
    return summarize(res.model, res.history)


# --------------------------------------------------------------------------- fast checks


def test_strategy_kinds_and_cluster_helpers(monkeypatch):
    cluster = {"worker": ["a:1", "b:2"]}
    assert cluster_size({"cluster": cluster}) == 2
    assert is_chief({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    assert not is_chief({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
    assert cluster_size({"cluster": with_chief}) == 2
    assert not is_chief({"cluster": with_chief, "task": {"type": "worker", "index": 0}})
    assert is_chief({"cluster": with_chief, "task": {"type": "chief", "index": 0}})
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        cluster_size()
    monkeypatch.delenv("TF_CONFIG")
    assert is_chief() and cluster_size() == 0
    with pytest.raises(ValueError, match="multi_worker"):
        get_strategy("multiworker")


def test_config_accepts_multi_worker_and_backup_frequency():
    cfg = load_config(base_config(strategy="multi_worker"))
    assert cfg["train"]["strategy"] == "multi_worker"
    assert cfg["train"]["backup_every_steps"] == 2
    with pytest.raises(ConfigError, match="train.backup_every_steps"):
        load_config(base_config(backup_every_steps=0))
    with pytest.raises(ConfigError, match="train.strategy"):
        load_config(base_config(strategy="multi-worker"))


def tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse", metrics=["mae"])
    return model


def tiny_data():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4)).astype("float32")
    y = rng.normal(size=(24, 2)).astype("float32")
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    val_ds = tf.data.Dataset.from_tensor_slices((x[:8], y[:8])).batch(4)
    return train_ds, val_ds


def test_custom_loop_matches_fit_and_calls_the_callbacks(tmp_path):
    """fit_multi_worker under the default strategy: same weights and logs as fit."""
    import keras
    import tensorflow as tf

    from tfrestore.training.multi_worker import fit_multi_worker

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.events = []

        def on_epoch_begin(self, epoch, logs=None):
            self.events.append(("epoch", epoch))

        def on_train_batch_end(self, batch, logs=None):
            self.events.append(("batch", batch, sorted(logs)))

        def on_test_begin(self, logs=None):
            self.events.append(("test",))

    train_ds, val_ds = tiny_data()
    ref = tiny_model()
    rec_fit = Record()
    hist = ref.fit(train_ds, epochs=2, steps_per_epoch=3, validation_data=val_ds,
                   callbacks=[rec_fit], verbose=0, shuffle=False)
    model = tiny_model()
    rec = Record()
    csv = keras.callbacks.CSVLogger(str(tmp_path / "h.csv"))
    got = fit_multi_worker(model, tf.distribute.get_strategy(), train_ds, epochs=2,
                           steps_per_epoch=3, validation_data=val_ds, callbacks=[rec, csv],
                           verbose=0)
    for a, b in zip(ref.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert set(got.history) == set(hist.history)
    for k in hist.history:
        np.testing.assert_allclose(got.history[k], hist.history[k], rtol=1e-5)
    assert rec.events == rec_fit.events
    assert len((tmp_path / "h.csv").read_text().splitlines()) == 3


def test_step_backup_writes_consistent_backups(tmp_path):
    from tfrestore.training.backup import StepBackup, restore_metrics

    train_ds, _ = tiny_data()
    model = tiny_model()
    backup = tmp_path / "backup"
    cb = StepBackup(str(backup), steps_per_epoch=3, every_steps=2)
    model.fit(train_ds, epochs=2, steps_per_epoch=3, callbacks=[cb], verbose=0, shuffle=False)
    # Global steps 2 and 4 (mid-epoch) and both epoch ends (not step 6 twice).
    assert cb.saved == [(0, 2), (1, 0), (1, 1), (2, 0)]
    state = read_backup(str(backup))
    assert (state.epoch, state.step, state.metrics) == (2, 0, {})
    assert sorted(os.listdir(backup)) == ["step-000000006.weights.h5", "training_metadata.json"]
    # A mid-epoch backup records the running metric sums, restorable by path.
    cb.save(1, 1)
    state = read_backup(str(backup))
    assert state.step == 1 and set(state.metrics) == {v.path for v in model.metrics_variables}
    model.reset_metrics()
    assert restore_metrics(model, state.metrics)
    assert not restore_metrics(model, {"nothing/total": 1.0})
    # Metadata naming a weights file that is gone (killed mid-write): no backup.
    os.remove(state.weights)
    assert read_backup(str(backup)) is None


def test_pdl_draw_counter_is_saved_with_the_weights(tmp_path):
    """A resumed run continues PDL's projection stream instead of repeating it."""
    import keras

    from tfrestore.losses import PDLoss

    def make():
        model = keras.Sequential(
            [keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 3, padding="same")]
        )
        loss = PDLoss(layers="relu1_2", weights=None, projection="random_sphere")
        model.compile(optimizer="adam", loss=loss)
        return model

    model = make()
    model.loss._draws.assign(7)
    model.save_weights(str(tmp_path / "m.weights.h5"))
    other = make()
    other.load_weights(str(tmp_path / "m.weights.h5"))
    assert int(other.loss._draws.numpy()) == 7


def test_diffloss_rng_counter_is_saved_with_the_weights(tmp_path):
    import keras

    from tfrestore.losses import DiffLoss

    keras.utils.set_random_seed(0)
    xi, ti = keras.Input((None, None, 3)), keras.Input((), dtype="int32")
    temb = keras.layers.Reshape((1, 1, 4))(keras.layers.Embedding(1000, 4)(ti))
    h = keras.layers.Conv2D(4, 3, padding="same")(xi) + temb
    unet = keras.Model([xi, ti], keras.layers.Conv2D(6, 3, padding="same")(h))

    def make():
        model = keras.Sequential(
            [keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 3, padding="same")]
        )
        model.compile(optimizer="adam", loss=DiffLoss(unet=unet, weights=None))
        return model

    model = make()
    model.loss._step.assign(5)
    model.save_weights(str(tmp_path / "d.weights.h5"))
    other = make()
    other.load_weights(str(tmp_path / "d.weights.h5"))
    assert int(other.loss._step.numpy()) == 5


def test_tf_config_from_the_slurm_allocation(monkeypatch):
    from tfrestore.training.strategy import set_tf_config_from_slurm, slurm_tasks

    for var in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "TF_CONFIG"):
        # setenv first: monkeypatch then restores the variable the code under test sets.
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    assert slurm_tasks() == 0 and set_tf_config_from_slurm() is None
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[07-08]")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "1(x2)")
    monkeypatch.setenv("TFRESTORE_PORT_BASE", "23456")
    expected = {
        "cluster": {"worker": ["node07:23456", "node08:23456"]},
        "task": {"type": "worker", "index": 1},
    }
    assert set_tf_config_from_slurm() == expected
    assert json.loads(os.environ["TF_CONFIG"]) == expected
    assert cluster_size() == 2 and not is_chief()
    assert set_tf_config_from_slurm() is None  # an existing TF_CONFIG wins


# --------------------------------------------------------------------------- slow: subprocesses


@pytest.mark.slow
def test_step_resume_after_sigkill_matches_uninterrupted_run(tmp_path, single_run):
    """A one-process run SIGKILLed mid-epoch resumes at its last backup step."""
    cfg = base_config(strategy="default")
    run = tmp_path / "run"
    (proc,) = launch(tmp_path, cfg, run, "killed", kill_at=(0, STEPS + 2))
    rcs = wait_all([proc], tmp_path, "killed")
    assert rcs == [-signal.SIGKILL], log_tail(tmp_path, "killed", 0)
    state = read_backup(str(run / "backup"))
    # Backups every 2 steps: the last one before the kill (global step 5) is step 4,
    # i.e. one step into the second epoch, not that epoch's start.
    assert (state.epoch, state.step) == (1, 1)

    resumed = train(cfg, output_dir=str(run), report=False)
    assert resumed.initial_epoch == 1
    got = summarize(resumed.model, resumed.history)
    diff = max_weight_diff(got, single_run)
    print(f"step resume: max |weight diff| vs uninterrupted = {diff:.3g}")
    assert diff < 1e-5
    assert int(got["queue_count"]) == int(single_run["queue_count"]) == EPOCHS * STEPS * BATCH
    np.testing.assert_allclose(got["queue_pred"], single_run["queue_pred"], atol=1e-5)
    assert int(got["pdl_draws"]) == int(single_run["pdl_draws"])
    # The resumed epoch's mean includes the steps run before the kill.
    np.testing.assert_allclose(got["loss"], single_run["loss"], rtol=1e-5)
    assert not (run / "backup").exists()


@pytest.mark.slow
def test_two_workers_match_one_process(tmp_path, single_run):
    """2 worker processes on the same global batch train like one process."""
    run = tmp_path / "mw"
    procs = launch(tmp_path, base_config(strategy="multi_worker"), run, "mw", n_workers=2)
    rcs = wait_all(procs, tmp_path, "mw")
    assert rcs == [0, 0], log_tail(tmp_path, "mw", 0) + log_tail(tmp_path, "mw", 1)
    w0, w1 = load(tmp_path / "mw_0.npz"), load(tmp_path / "mw_1.npz")
    assert max_weight_diff(w0, w1) == 0.0  # replicas stay identical
    diff = max_weight_diff(w0, single_run)
    qdiff = float(np.max(np.abs(w0["queue_pred"] - single_run["queue_pred"])))
    print(f"2 workers vs 1 process: max |weight diff| = {diff:.3g}, queue diff = {qdiff:.3g}")
    assert diff < 1e-5 and qdiff < 1e-5
    # The queue holds the global batch (both workers' rows), on every worker.
    assert int(w0["queue_count"]) == int(w1["queue_count"]) == EPOCHS * STEPS * BATCH
    np.testing.assert_array_equal(w0["queue_true"], single_run["queue_true"])
    np.testing.assert_array_equal(w1["queue_pred"], w0["queue_pred"])
    assert int(w0["pdl_draws"]) == int(w1["pdl_draws"]) == int(single_run["pdl_draws"])
    np.testing.assert_allclose(w0["loss"], single_run["loss"], rtol=1e-5)
    # Only the chief wrote the run directory; the completed run left no backup.
    assert sorted(os.listdir(run)) == sorted(
        ["best.keras", "config.yaml", "final.keras", "history.csv", "run.yaml"]
    )
    assert len((run / "history.csv").read_text().splitlines()) == 1 + EPOCHS


@pytest.mark.slow
def test_two_workers_resume_after_a_worker_is_killed(tmp_path, single_run):
    """Worker 1 dies after global step 5; the chief, waiting on a collective, is
    killed too; both restart with the same command and resume mid-epoch."""
    cfg = base_config(strategy="multi_worker")
    run = tmp_path / "mw_killed"
    procs = launch(tmp_path, cfg, run, "k", n_workers=2, kill_at=(1, STEPS + 2))
    try:
        assert procs[1].wait(timeout=240) == -signal.SIGKILL, log_tail(tmp_path, "k", 1)
    finally:
        procs[0].kill()
        procs[0].wait()
    state = read_backup(str(run / "backup"))
    assert (state.epoch, state.step) == (1, 1)  # the chief's last backup, mid-epoch
    # The restart goes through the command line: `tfrestore train` with TF_CONFIG set.
    procs = launch(tmp_path, cfg, run, "r", n_workers=2, cli=True)
    rcs = wait_all(procs, tmp_path, "r")
    assert rcs == [0, 0], log_tail(tmp_path, "r", 0) + log_tail(tmp_path, "r", 1)
    assert "resuming an interrupted run at epoch 2, step 2" in log_tail(tmp_path, "r", 0)
    import keras

    final = keras.saving.load_model(str(run / "final.keras"))  # the chief's
    r0 = summarize(final, {"loss": single_run["loss"]})
    # The uninterrupted reference: the one-process run (2 workers equal it, see above).
    rdiff = max_weight_diff(r0, single_run)
    print(f"2 workers killed + resumed vs uninterrupted: max |weight diff| = {rdiff:.3g}")
    assert rdiff < 1e-5
    np.testing.assert_allclose(r0["queue_pred"], single_run["queue_pred"], atol=1e-5)
    assert int(r0["queue_count"]) == int(single_run["queue_count"])
    assert int(r0["pdl_draws"]) == int(single_run["pdl_draws"])
    np.testing.assert_allclose(r0["loss"], single_run["loss"], rtol=1e-5)
    assert not (run / "backup").exists()


class Killed(Exception):
    pass


@pytest.mark.slow
def test_step_resume_under_mirrored_strategy(tmp_path, strategy, single_run):
    """Mid-epoch resume of a model.fit run on 2 replicas (in-process kill)."""
    import keras

    class KillAtStep(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch * STEPS + batch + 1 == STEPS + 2:
                raise Killed()

    cfg = base_config()
    run = tmp_path / "killed"
    with pytest.raises(Killed):
        train(cfg, output_dir=str(run), strategy=strategy, report=False, callbacks=[KillAtStep()])
    state = read_backup(str(run / "backup"))
    assert (state.epoch, state.step) == (1, 1)
    resumed = train(cfg, output_dir=str(run), strategy=strategy, report=False)
    got = summarize(resumed.model, resumed.history)
    # Reference: the uninterrupted one-process run (2 replicas on the same global
    # batch train the same model).
    diff = max_weight_diff(got, single_run)
    print(f"mirrored step resume vs uninterrupted: max |weight diff| = {diff:.3g}")
    assert diff < 1e-5
    np.testing.assert_allclose(got["queue_pred"], single_run["queue_pred"], atol=1e-5)
    assert int(got["queue_count"]) == int(single_run["queue_count"])
    assert int(got["pdl_draws"]) == int(single_run["pdl_draws"])
    np.testing.assert_allclose(got["loss"], single_run["loss"], rtol=1e-5)
