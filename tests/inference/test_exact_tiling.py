"""Issue 19: tiled inference with a too-small --tile/--overlap must not silently differ from
whole-image inference. For every shipped network a user's too-small overlap is either raised
to the receptive field (output equal to the whole image) or refused."""

import keras
import numpy as np
import pytest

from tfrestore.inference.restore import measured_receptive_field, plan_inference, predict_image
from tfrestore.models import EDSR, FFDNet, DnCNN, LiuDenoiser, UNet


def _models():
    keras.utils.set_random_seed(0)
    return {
        "dncnn": (DnCNN(channels=3, depth=3, filters=4, batch_norm=False), {}),
        "ffdnet": (FFDNet(channels=3, depth=3, filters=8), {"sigma": 25 / 255}),
        "ffdnet_map": (FFDNet(channels=1, depth=3, filters=8, sigma_input="map"),
                       {"sigma": 15 / 255}),
        "liu_same": (LiuDenoiser(channels=3, padding="same"), {}),
        "edsr": (EDSR(channels=3, scale=2, depth=1, filters=8), {}),
        "unet": (UNet(channels=3, filters=4, levels=2, blocks_per_level=1, scales=2), {}),
    }


MODELS = _models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_too_small_overlap_is_raised_or_refused(name):
    model, kw = MODELS[name]
    c = model.inputs[0].shape[-1]
    rf = measured_receptive_field(model, **kw)
    # odd sizes: the padding to the size multiple must match too
    h, w = 2 * rf + 13, 3 * rf + 7
    img = np.random.default_rng(1).random((h, w, c), dtype=np.float32)
    whole = predict_image(model, img, tile_size=None, **kw)
    # a tile far too small for the receptive field: refused, naming the smallest tile
    with pytest.raises(ValueError, match=r"too small .* use tiles of at least \d+ px"):
        predict_image(model, img, tile_size=max(rf // 2, 4), overlap=2, **kw)
    # a big enough tile with too small an overlap: the overlap is raised, the result exact
    notes = []
    tile = rf + 24
    tiled = predict_image(model, img, tile_size=tile, overlap=2, on_note=notes.append, **kw)
    assert notes and notes[0].startswith(f"overlap raised from 2 to {rf - 1} px"), notes
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() < 1e-5, name
    plan = plan_inference(model, img.shape, tile_size=tile, overlap=2, **kw)
    assert plan.overlap == rf - 1 and plan.tile_size == (tile, tile)


def test_valid_padded_liu_refuses_tiles():
    model = LiuDenoiser(channels=3, padding="valid")
    img = np.zeros((44, 44, 3), np.float32)
    with pytest.raises(ValueError, match="valid padding.*size-preserving"):
        predict_image(model, img, tile_size=24, overlap=2)


def test_extra_input_maps_are_tiled_with_the_image():
    """A degradation's sigma map (FFDNet 'map' input) is cut into tiles with the image."""
    model, _ = MODELS["ffdnet_map"]
    rng = np.random.default_rng(2)
    img = rng.random((70, 90, 1), dtype=np.float32)
    smap = np.full((1, 70, 90, 1), 20 / 255, np.float32)
    smap[:, 30:, 40:] = 40 / 255  # spatially varying
    whole = predict_image(model, img, tile_size=None, extra_inputs=[smap])
    rf = measured_receptive_field(model, sigma=0.1)
    tiled = predict_image(model, img, tile_size=rf + 9, extra_inputs=[smap])
    assert np.abs(tiled - whole).max() < 1e-5


def test_receptive_field_covers_every_output_phase():
    """A strided network's outputs of different phases reach differently far: the measured
    field bounds the farthest one (the Liu denoiser's reach is 22 px at phase 3)."""
    model, _ = MODELS["liu_same"]
    rf = measured_receptive_field(model)
    assert rf >= 2 * 22 + 1
