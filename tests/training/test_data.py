"""Config ``data`` section -> pipelines: a bad degradation or a damaged training image is named
with its config key, before training (a truncated file) or when training stops (damage inside
a file)."""

import numpy as np
import pytest

from tfrestore.data import ImageFileError, write_image
from tfrestore.training import ConfigError, train


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_training_image_in_a_config_names_the_key_and_file(tiny_config, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(tmp_path / f"{i}.png", rng.uniform(size=(32, 32, 3)))
    _truncate(tmp_path / "0.png")
    cfg = tiny_config()
    cfg["data"]["train"] = {"source": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"training images.*0\.png"):
        train(cfg, output_dir=str(tmp_path / "run"), report=False)


def test_damage_inside_a_training_file_is_named_when_training_stops(tiny_config, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(tmp_path / f"{i}.png", rng.uniform(size=(32, 32, 3)))
    data = bytearray((tmp_path / "1.png").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    (tmp_path / "1.png").write_bytes(bytes(data))
    cfg = tiny_config()
    cfg["data"]["train"] = {"source": str(tmp_path)}
    with pytest.raises(ImageFileError, match=r"data\.train\.source.*1\.png.*remove or replace"):
        train(cfg, output_dir=str(tmp_path / "run"), report=False)


def test_unknown_degradation_argument_is_a_config_error_naming_the_key(tiny_config, tmp_path):
    cfg = tiny_config()
    cfg["data"]["degradation"] = {"type": "gaussian_noise", "args": {"sigmaa": 0.1}}
    with pytest.raises(ConfigError, match=r"config key 'data\.degradation': .*'sigmaa'"):
        train(cfg, output_dir=str(tmp_path / "run"), report=False)
