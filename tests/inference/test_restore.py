"""Whole-image / tiled restoration helpers, model files."""

import keras
import numpy as np
import pytest

from tfrestore.inference.restore import (
    find_model_file,
    input_requirements,
    predict_image,
    save_image,
)
from tfrestore.models import FFDNet, UNet


@pytest.fixture(scope="module")
def unet():
    keras.utils.set_random_seed(0)
    return UNet(filters=4, levels=2, blocks_per_level=1, scales=1)  # needs sizes divisible by 2


def test_padding_to_the_architecture_multiple(unet):
    assert input_requirements(unet) == (2, 0)
    img = np.random.default_rng(0).random((21, 30, 3), dtype=np.float32)
    out = predict_image(unet, img)
    assert out.shape == img.shape
    padded = np.pad(img, ((0, 1), (0, 0), (0, 0)), mode="reflect")
    np.testing.assert_allclose(out, np.asarray(unet(padded[None]))[0, :21], atol=1e-6)


def test_tiled_prediction_aligns_tiles_for_strided_networks(unet):
    from tfrestore.inference.tiling import receptive_field

    rf = receptive_field(unet)
    assert rf is not None and rf > 9  # a U-Net sees much more than its 3x3 kernels
    img = np.random.default_rng(1).random((64, 100, 3), dtype=np.float32)
    whole = predict_image(unet, img)
    tiled = predict_image(unet, img, tile_size=rf + 15, overlap=rf + 1, receptive_field=rf)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_two_input_model_gets_its_noise_level():
    keras.utils.set_random_seed(0)
    net = FFDNet(channels=3, depth=3, filters=8)
    img = np.random.default_rng(2).random((16, 20, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="pass the noise level `sigma`"):
        predict_image(net, img)
    out = predict_image(net, img, sigma=25 / 255)
    ref = np.asarray(net([img[None], np.full((1, 1), 25 / 255, np.float32)]))[0]
    np.testing.assert_allclose(out, ref, atol=1e-6)
    with pytest.raises(ValueError, match="tile size 12 px is too small .* at least 16 px"):
        predict_image(net, img, sigma=25 / 255, tile_size=12, overlap=6)
    with pytest.warns(UserWarning, match="overlap raised from 6 to 14 px"):
        tiled = predict_image(net, img, sigma=25 / 255, tile_size=16, overlap=6)
    np.testing.assert_allclose(tiled, out, atol=1e-6)


def test_save_image_and_find_model_file(tmp_path):
    save_image(tmp_path / "x.jpg", np.zeros((4, 4, 3)))
    assert (tmp_path / "x.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    with pytest.raises(ValueError, match="NaN"):
        save_image(tmp_path / "y.png", np.full((4, 4, 1), np.nan))
    (tmp_path / "final.keras").write_bytes(b"")
    assert find_model_file(str(tmp_path)).endswith("final.keras")
    (tmp_path / "best.keras").write_bytes(b"")
    assert find_model_file(str(tmp_path)).endswith("best.keras")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="best.keras or final.keras"):
        find_model_file(str(tmp_path / "empty"))


def test_load_model_takes_a_preset_name(weights_dir, monkeypatch, tmp_path):
    from tfrestore.inference.restore import load_model

    if not (weights_dir / "FFDNet_gray.mat").is_file():
        pytest.skip("FFDNet_gray.mat not available")
    monkeypatch.chdir(tmp_path)
    model = load_model("ffdnet_gray")
    assert model.name == "ffdnet_gray" and len(model.inputs) == 2
    with pytest.raises(FileNotFoundError, match="did you mean the preset 'ffdnet_gray'"):
        load_model("ffdnet_grey")
    with pytest.raises(FileNotFoundError, match="nor a preset name"):
        load_model("runs/none")
