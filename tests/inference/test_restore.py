"""Whole-image / tiled restoration helpers and per-image evaluation."""

import keras
import numpy as np
import pytest

from tfrestore.inference.evaluate import add_mean_row, evaluate_model, format_table, write_csv
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


def test_evaluate_model_rows_against_numpy_psnr():
    ident = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Identity()])
    rng = np.random.default_rng(3)
    clean = rng.random((24, 24, 3), dtype=np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    rows, notes = evaluate_model(ident, [("x", noisy, clean)], lpips=False)
    mse = np.mean((noisy - clean) ** 2)
    assert rows[0]["psnr_in"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)
    assert rows[0]["psnr_out"] == pytest.approx(rows[0]["psnr_in"], abs=1e-4)  # identity model
    assert notes == []


def test_super_resolution_baseline_is_bicubic():
    up = keras.Sequential([keras.Input((None, None, 3)), keras.layers.UpSampling2D(2)])
    clean = np.random.default_rng(4).random((16, 16, 3), dtype=np.float32)
    lr = clean[::2, ::2]
    rows, _, images = evaluate_model(up, [("x", lr, clean)], lpips=False, return_images=True)
    assert images[0][1].shape == clean.shape  # the upsampled baseline shown next to the output
    assert np.isfinite(rows[0]["psnr_in"]) and np.isfinite(rows[0]["psnr_out"])


def test_table_csv_and_files(tmp_path):
    rows = add_mean_row([{"image": "a", "psnr_in": 1.0}, {"image": "b", "psnr_in": 3.0}])
    assert rows[-1] == {"image": "mean", "psnr_in": 2.0}
    assert format_table(rows).splitlines()[-1].split() == ["mean", "2.0000"]
    text = open(write_csv(rows, tmp_path / "t.csv")).read().splitlines()
    assert text == ["image,psnr_in", "a,1.000000", "b,3.000000", "mean,2.000000"]
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
