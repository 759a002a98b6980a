"""Builders: a config is data -- a ``module:function`` string is imported only when allowed."""

import os
import sys
import textwrap

import numpy as np
import pytest

from tfrestore.training import ConfigError, load_config, train
from tfrestore.training.builders import build_loss, build_model, resolve_model_builder
from tfrestore.training.config import dump_config

PKG = "r19_user_models"


@pytest.fixture
def no_system(monkeypatch):
    """os.system fails the test if anything calls it."""
    calls = []

    def boom(command):
        calls.append(command)
        raise AssertionError(f"os.system was called with {command!r}")

    monkeypatch.setattr(os, "system", boom)
    return calls


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A user's package on sys.path with a model builder in a sub-module."""
    root = tmp_path / "src"
    (root / PKG).mkdir(parents=True)
    (root / PKG / "__init__.py").write_text("")
    (root / PKG / "nets.py").write_text(
        textwrap.dedent(
            """
            from tfrestore.models import DnCNN

            def tiny(channels=3, filters=4):
                return DnCNN(channels=channels, depth=2, filters=filters, batch_norm=False)
            """
        )
    )
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
        monkeypatch.delitem(sys.modules, name)
    yield f"{PKG}.nets:tiny"
    for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
        sys.modules.pop(name, None)


def _filters(model):
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)).filters


@pytest.fixture
def config_for(tiny_config):
    """``config_for(model_type, args=None)``: ``tiny_config`` with that model."""
    return lambda model_type, args=None: tiny_config(
        model={"type": model_type, "args": {} if args is None else args}
    )


def test_module_function_in_model_type_is_refused_naming_key_string_and_option(no_system):
    with pytest.raises(ConfigError) as e:
        build_model({"type": "os:system", "args": {"command": "echo pwned"}})
    msg = str(e.value)
    assert "'model.type'" in msg and "'os:system'" in msg and "--allow-import os" in msg
    assert "allowed_imports=('os',)" in msg and "DnCNN" in msg
    assert no_system == []


def test_train_refuses_before_any_work(config_for, tmp_path, no_system):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"'model.type' is 'os:system'.*--allow-import os"):
        train(config_for("os:system", {"command": "echo pwned"}), output_dir=str(run))
    assert not run.exists() and no_system == []


def test_refusal_imports_nothing(user_package):
    with pytest.raises(ConfigError, match=f"--allow-import {PKG}"):
        resolve_model_builder(user_package)
    assert PKG not in sys.modules
    # a package whose name merely starts with an allowed one is not allowed
    with pytest.raises(ConfigError, match="--allow-import"):
        resolve_model_builder(user_package, allowed_imports=("r19_user",))
    assert PKG not in sys.modules


def test_loss_and_degradation_types_resolve_only_from_registries(no_system):
    with pytest.raises(ConfigError, match=r"losses\[0\].type.*unknown loss 'os:system'"):
        build_loss([{"type": "os:system", "loss_weight": 1.0, "args": {"command": "x"},
                     "fallback": []}])
    from tfrestore.data import get_degradation

    with pytest.raises(ValueError, match="Unknown degradation type 'os:system'"):
        get_degradation({"type": "os:system", "command": "x"})
    # a Keras-serialised object inside loss args never imports a non-Keras module
    bad = {"module": "os", "class_name": "system", "config": {"command": "x"},
           "registered_name": None}
    with pytest.raises(Exception):  # noqa: B017 - Keras' own refusal
        build_loss([{"type": "PerceptualLoss", "loss_weight": 1.0, "fallback": [],
                     "args": {"weights": None, "feature_extractor": bad}}])
    assert no_system == []


def test_allow_import_opt_in_builds_the_users_model(user_package):
    model = build_model({"type": user_package, "args": {"filters": 6}},
                        allowed_imports=(PKG,))
    assert model.count_params() > 0 and _filters(model) == 6
    assert build_model({"type": user_package}, allowed_imports=(f"{PKG}.nets",)) is not None


def test_allowed_imports_must_be_package_names():
    with pytest.raises(ValueError, match=r"allowed_imports: 'os:system' is not a Python package"):
        resolve_model_builder("DnCNN", allowed_imports=("os:system",))


def test_a_dict_config_may_give_the_builder_itself(config_for, user_package):
    from r19_user_models.nets import tiny

    cfg = load_config(config_for(tiny, {"filters": 5}))
    assert cfg["model"]["type"] is tiny
    assert _filters(build_model(cfg["model"])) == 5
    assert "type: r19_user_models.nets:tiny" in dump_config(cfg)


def test_yaml_cannot_give_a_non_string(config_for):
    with pytest.raises(ConfigError, match="'model.type' must be a string or a callable"):
        load_config(config_for(3))


def test_cli_allow_import_trains_the_users_model(config_for, tmp_path, user_package,
                                                  monkeypatch):
    from tfrestore.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(dump_config(load_config(config_for(user_package))))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    run = tmp_path / "run"
    args = ["train", "denoise", "-c", str(cfg), "-o", str(run), "--no-report"]
    assert main(args) == 2  # refused without the opt-in
    assert not run.exists()
    assert main(args + ["--allow-import", PKG]) == 0
    assert (run / "final.keras").is_file()


def test_corrupt_loss_weights_use_the_configured_fallback(tmp_path, capsys):
    path = tmp_path / "vgg16.npz"
    np.savez(path, **{"features.0.weight": np.ones((64, 3, 3, 3), "float32")})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    terms = [
        {
            "type": "PerceptualLoss",
            "loss_weight": 1.0,
            "args": {"weights": str(path), "layers": ["relu1_2"]},
            "fallback": [{"type": "L1", "loss_weight": 0.5, "args": {}, "fallback": []}],
        }
    ]
    loss, used = build_loss(terms)
    assert used == [
        {"type": "L1", "loss_weight": 0.5, "args": {}, "fallback_for": "PerceptualLoss"}
    ]
    out = capsys.readouterr().out
    assert "cannot be built" in out and "vgg16.npz" in out and "damaged or truncated" in out


def test_a_renamed_model_argument_in_a_config_names_the_new_key():
    with pytest.raises(ConfigError, match=r"'model.args.noise_level_input' was renamed"):
        build_model({"type": "FFDNet", "args": {"noise_level_input": "map"}})
