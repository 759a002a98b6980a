"""Fine-tuning: ``model.init`` (``--init``) initialises the model from a preset, a ``.keras`` or a
``.weights.h5`` file.

The runner's first validation (the end of epoch 1) shows the pretrained quality: the runs below
warm the learning rate up from 0 (cosine schedule, ``warmup_steps: 1``), so epoch 1's single step
changes no weight and its ``val_psnr`` is the source model's PSNR on the validation data, which
``model.evaluate`` of the source measures independently.
"""

import os

import keras
import numpy as np
import pytest
import yaml

from tfrestore.training import ConfigError, train
from tfrestore.training import data as tdata
from tfrestore.training.run_config import load_run_config

TINY = {"depth": 3, "filters": 8, "channels": 3, "batch_norm": False}


@pytest.fixture(scope="module")
def init_config(tiny_config):
    """``init_config(init=None, model_args=None, epochs=2, model_type="DnCNN")``: a
    ``tiny_config`` run whose epoch 1 is one step at learning rate 0 (warm-up from 0), then
    validation on three 32-pixel crops."""

    def make(init=None, model_args=None, epochs=2, model_type="DnCNN"):
        return tiny_config(
            seed=5,
            model={"type": model_type, "args": dict(model_args or TINY), "init": init},
            data={"val": {"crop_size": 32, "batch_size": 2, "max_images": 3}},
            optimizer={"type": "Adam", "learning_rate": 1e-2},
            schedule={"type": "cosine", "warmup_steps": 1},
            train={"epochs": epochs, "run_eagerly": True},
            metrics={"ssim": False},
        )

    return make


def _val_dataset(cfg):
    rc = load_run_config(cfg)
    return tdata.val_dataset(rc, tdata.build_degradation(rc))


def source_psnr(model, cfg):
    """The source model's PSNR on the run's validation data (Keras' own evaluate)."""
    from tfrestore.metrics import PSNR

    model.compile(loss="mae", metrics=[PSNR(data_range=1.0, name="psnr")])
    return model.evaluate(_val_dataset(cfg), verbose=0, return_dict=True)["psnr"]


@pytest.fixture(scope="module")
def sources(init_config, tmp_path_factory):
    """A small trained DnCNN saved as .keras and as .weights.h5 (no BN: a zero-learning-rate
    step then changes nothing, not even moving statistics)."""
    folder = tmp_path_factory.mktemp("source")
    cfg = init_config(epochs=1)
    cfg["schedule"] = {"type": "constant"}
    cfg["train"]["steps_per_epoch"] = 3
    cfg["seed"] = 11
    result = train(cfg, output_dir=str(folder / "run"), report=False)
    keras_path = str(folder / "run" / "final.keras")
    weights_path = str(folder / "source.weights.h5")
    result.model.save_weights(weights_path)
    return {"keras": keras_path, "weights": weights_path, "model": result.model}


@pytest.mark.parametrize("kind", ["keras", "weights"])
def test_first_validation_shows_the_source_psnr(init_config, kind, sources, tmp_path, capsys):
    cfg = init_config(init=sources[kind])
    reference = source_psnr(sources["model"], cfg)
    result = train(cfg, output_dir=str(tmp_path / "run"), report=False)
    first = result.history["val_psnr"][0]
    assert first == pytest.approx(reference, abs=1e-3), (first, reference)
    # ... and a random initialisation scores differently (the init mattered).
    fresh = train(init_config(), output_dir=str(tmp_path / "fresh"), report=False)
    assert abs(fresh.history["val_psnr"][0] - reference) > 0.1
    out = capsys.readouterr().out
    assert f"[tfrestore] init: weights from {sources[kind]}" in out
    with open(tmp_path / "run" / "config.yaml") as f:
        assert yaml.safe_load(f)["model"]["init"] == sources[kind]
    with open(tmp_path / "run" / "run.yaml") as f:
        assert yaml.safe_load(f)["init"].startswith(f"weights from {sources[kind]}")


def test_relative_path_and_variables_are_expanded(
    init_config, sources, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(os.path.dirname(sources["keras"]))
    monkeypatch.setenv("TFRESTORE_TEST_INIT_DIR", os.path.dirname(sources["weights"]))
    train(init_config(init="final.keras", epochs=1), output_dir=str(tmp_path / "a"), report=False)
    assert f"init: weights from {sources['keras']} (3 layers)" in capsys.readouterr().out
    train(
        init_config(init="$TFRESTORE_TEST_INIT_DIR/source.weights.h5", epochs=1),
        output_dir=str(tmp_path / "b"),
        report=False,
    )
    assert f"init: weights from {sources['weights']} (all layers)" in capsys.readouterr().out


def _save_functional(path, names_shapes):
    """A .keras model of 3x3 convolutions named and sized as given (a chain from 3 channels)."""
    from tfrestore.models import RestorationModel

    inp = keras.Input((None, None, 3))
    x = inp
    for name, filters in names_shapes:
        x = keras.layers.Conv2D(filters, 3, padding="same", name=name)(x)
    RestorationModel(inp, x).save(path)
    return path


def test_mismatches_name_model_init_the_layer_and_both_shapes(init_config, sources, tmp_path):
    run = tmp_path / "run"

    def fails(init, match, **kw):
        with pytest.raises(ConfigError, match=match) as info:
            train(init_config(init=init, **kw), output_dir=str(run), report=False)
        msg = str(info.value)
        assert msg.startswith("config key 'model.init'"), msg
        assert "check model.args" in msg or "no such file" in msg, msg  # what to do
        assert not (run / "history.csv").exists() and not (run / "config.yaml").exists()
        return msg

    wide = dict(TINY, filters=16)
    msg = fails(sources["keras"], r"layer 'conv1'", model_args=wide)
    assert "[(3, 3, 3, 8), (8,)]" in msg and "[(3, 3, 3, 16), (16,)]" in msg
    msg = fails(sources["weights"], r"layer 'conv1'", model_args=wide)
    assert "(3, 3, 3, 8)" in msg and "(3, 3, 3, 16)" in msg and "same architecture" in msg
    # A target layer the source lacks (conv3), a source layer the target lacks (extra).
    lacking = _save_functional(str(tmp_path / "lacking.keras"), [("conv1", 8), ("conv2", 8)])
    fails(lacking, r"layer 'conv3': the target has weights \[\(3, 3, 8, 3\)\] that the source")
    extra = _save_functional(
        str(tmp_path / "extra.keras"), [("conv1", 8), ("conv2", 8), ("extra", 8)]
    )
    # DnCNN's conv3 (no bias, 3 filters) differs from the chain's conv3 -> named 'extra' here.
    fails(extra, r"layer 'conv3'.*and 1 more")
    # Missing files, unsupported suffixes.
    fails(str(tmp_path / "missing.keras"), r"no such file: .*missing\.keras")
    fails("~/no-such-dir/x.weights.h5", r"no such file: " + os.path.expanduser("~"))
    with pytest.raises(ConfigError, match=r"'model.init': .*neither a .keras nor a .weights.h5"):
        train(init_config(init="dir/model.pth"), output_dir=str(run), report=False)


def test_a_source_layer_the_target_lacks(init_config, tmp_path):
    # The target: conv1 (3 -> 8) and conv2 (8 -> 3), as DnCNN depth 2 without BN (conv2 no bias).
    from tfrestore.models import RestorationModel

    inp = keras.Input((None, None, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inp)
    b = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv2")(a)
    c = keras.layers.Conv2D(4, 1, name="head")(a)
    RestorationModel(inp, [b, c]).save(str(tmp_path / "src.keras"))
    args = dict(TINY, depth=2)
    with pytest.raises(
        ConfigError, match=r"'model.init' .*layer 'head': the source has weights \[\(1, 1, 8, 4\)"
    ):
        train(
            init_config(init=str(tmp_path / "src.keras"), model_args=args),
            output_dir=str(tmp_path / "run"),
            report=False,
        )


class Killed(Exception):
    pass


class KillAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed(epoch)


def test_resume_does_not_reinitialise(init_config, sources, tmp_path, capsys):
    import shutil

    src = str(tmp_path / "copy.keras")
    shutil.copy(sources["keras"], src)
    cfg = init_config(init=src, epochs=3)
    cfg["train"]["steps_per_epoch"] = 2
    full = train(cfg, output_dir=str(tmp_path / "full"), report=False)
    run = str(tmp_path / "killed")
    with pytest.raises(Killed):
        train(cfg, output_dir=run, report=False, callbacks=[KillAtEpoch(2)])
    os.remove(src)  # a resumed run needs the backup, not the init source
    capsys.readouterr()
    resumed = train(cfg, output_dir=run, report=False)
    out = capsys.readouterr().out
    assert resumed.initial_epoch == 2
    assert "init: not applied: resuming from the backup" in out
    assert "weights from" not in out
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    with open(os.path.join(run, "config.yaml")) as f:
        assert yaml.safe_load(f)["model"]["init"] == src


def test_cli_init_sets_the_key(sources, tmp_path, capsys):
    from tfrestore.cli import main

    argv = ["train", "denoise", "--config", "denoise_demo", "--init", sources["keras"]]
    assert main(argv + ["--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["init"] == sources["keras"]
    missing = str(tmp_path / "nope.keras")
    code = main(
        ["train", "denoise", "--config", "denoise_demo", "--init", missing, "-o", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "model.init" in err and missing in err, err


# --------------------------------------------------------------------------- presets


def test_unknown_preset_lists_the_names(init_config, tmp_path):
    with pytest.raises(ConfigError, match=r"'model.init': unknown preset 'ffdnet_colour'.*"
                       r"did you mean 'ffdnet_color'.*available: ffdnet_color"):
        train(init_config(init="ffdnet_colour"), output_dir=str(tmp_path), report=False)


@pytest.fixture
def ffdnet_color_weights(weights_dir, monkeypatch):
    if not (weights_dir / "FFDNet_color.mat").is_file():
        pytest.skip(f"FFDNet_color.mat (the ffdnet_color preset) is not in {weights_dir}")
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(weights_dir))


def ffdnet_map_config(init_config, init):
    cfg = init_config(init=init, model_args={"channels": 3, "sigma_input": "map"},
                      model_type="FFDNet")
    cfg["data"]["degradation"] = {
        "type": "gaussian_noise", "args": {"sigma": "50/255", "sigma_map": True}
    }
    cfg["data"]["val"] = {"crop_size": 64, "batch_size": 2, "max_images": 2}
    return cfg


@pytest.mark.weights
def test_ffdnet_color_preset_initialises_a_noise_map_ffdnet(
    init_config, ffdnet_color_weights, tmp_path, capsys
):
    """The preset takes a scalar noise level, the config's FFDNet a map: the same weights, so
    the first validation shows the preset's PSNR (measured with its own scalar input)."""
    from tfrestore.metrics import psnr
    from tfrestore.models import from_preset

    cfg = ffdnet_map_config(init_config, "ffdnet_color")
    preset = from_preset("ffdnet_color")
    values = []
    for (noisy, sigma_map), clean in _val_dataset(cfg):
        restored = preset([noisy, sigma_map[:, 0, 0, :]], training=False)
        values += list(np.asarray(psnr(clean, restored, data_range=1.0)))
    reference = float(np.mean(values))
    result = train(cfg, output_dir=str(tmp_path), report=False)
    first = result.history["val_psnr"][0]
    assert first == pytest.approx(reference, abs=1e-3), (first, reference)
    assert reference > 24  # a trained denoiser on sigma 50 (the noisy input is ~14 dB)
    assert "init: weights from preset ffdnet_color (12 layers)" in capsys.readouterr().out


@pytest.mark.weights
def test_preset_of_another_architecture_is_refused(init_config, ffdnet_color_weights, tmp_path):
    cfg = ffdnet_map_config(init_config, "ffdnet_color")
    cfg["model"]["args"]["channels"] = 1
    cfg["data"]["channels"] = 1
    with pytest.raises(ConfigError, match=r"'model.init' \(preset ffdnet_color\): layer 'conv1'"
                       r".*\(3, 3, 13, 96\).*\(3, 3, 5, 64\)"):
        train(cfg, output_dir=str(tmp_path), report=False)
