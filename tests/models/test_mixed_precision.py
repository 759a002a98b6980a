"""Restorers under ``mixed_float16``: Keras' practice of a float32 final layer.

Only the final layer changes (its dtype policy, no weights), only under a mixed policy: the
layers, their names and weights are those of the float32 model, so ``copy_weights`` and the
released weights map either way, and files saved with a float16 final layer load as saved.
"""

import keras
import numpy as np
import pytest

import tfrestore.models.dncnn
from tfrestore.models import EDSR, DnCNN, FFDNet, LiuDenoiser, UNet, cascade, copy_weights
from tfrestore.models.transfer import weight_shapes


def _segmenter():
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="seg_conv")(inp)
    return keras.Model(inp, keras.layers.Conv2D(2, 1, name="seg_logits")(x), name="segmenter")


def _image(shape):
    return np.random.default_rng(0).uniform(size=shape).astype("float32")


def _ffdnet_inputs(shape):
    return [_image(shape), np.full((shape[0], 1), 25 / 255, "float32")]


UNET = {"filters": 4, "levels": 2, "blocks_per_level": 1, "scales": 2}

# name -> (builder, inputs, names of the layers that run in float32 under mixed_float16)
CASES = {
    "dncnn": (lambda: DnCNN(channels=3, depth=3, filters=4), lambda: _image((2, 9, 7, 3)),
              {"subtract_noise"}),
    "dncnn_no_residual": (lambda: DnCNN(depth=3, filters=4, residual=False),
                          lambda: _image((2, 9, 7, 1)), {"conv3"}),
    "ffdnet": (lambda: FFDNet(channels=3, depth=3, filters=8),
               lambda: _ffdnet_inputs((2, 11, 8, 3)), {"crop_padding"}),
    "ffdnet_blind": (lambda: FFDNet(channels=1, depth=3, filters=8, sigma=0.1),
                     lambda: _image((2, 11, 8, 1)), {"crop_padding"}),
    "edsr": (lambda: EDSR(scale=2, depth=1, filters=8), lambda: _image((1, 5, 7, 3)),
             {"add_mean"}),
    "edsr_input_skip": (lambda: EDSR(scale=3, depth=1, filters=8, input_skip=True),
                        lambda: _image((1, 5, 7, 3)), {"input_skip"}),
    "edsr_no_mean": (lambda: EDSR(scale=2, depth=1, filters=8, rgb_mean=None),
                     lambda: _image((1, 5, 7, 3)), {"tail"}),
    "unet": (lambda: UNet(**UNET), lambda: _image((1, 8, 12, 3)), {"global_residual"}),
    "unet_all_scales": (
        lambda: UNet(**UNET, return_all_scales=True, shared_weights=False),
        lambda: _image((1, 8, 12, 3)), {"global_residual"},
    ),
    "unet_no_residual": (lambda: UNet(**UNET, residual=False), lambda: _image((1, 8, 12, 3)),
                         {"out_conv"}),
    "liu_valid": (lambda: LiuDenoiser(padding="valid"), lambda: _image((1, 12, 16, 3)),
                  {"sum"}),
    "liu_same": (lambda: LiuDenoiser(padding="same"), lambda: _image((1, 12, 16, 3)), {"sum"}),
    "cascade": (
        lambda: cascade(DnCNN(channels=3, depth=3, filters=4), _segmenter(),
                        preprocessing="torch"),
        lambda: _image((2, 16, 16, 3)), {"subtract_noise", "restored", "task"},
    ),
}


def _layers(model):
    return [
        la for la in model._flatten_layers(include_self=False)
        if not isinstance(la, (keras.Model, keras.layers.InputLayer))
    ]


def _build(builder, policy, seed=3):
    keras.utils.clear_session()  # the same automatic layer names in both builds
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(seed)
        return builder()
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("case", list(CASES))
def test_only_the_final_layer_runs_in_float32(case):
    builder, inputs, final = CASES[case]
    plain = _build(builder, "float32")
    mixed = _build(builder, "mixed_float16")
    assert {la.dtype_policy.name for la in _layers(plain)} == {"float32"}
    assert {la.name for la in _layers(mixed) if la.dtype_policy.name == "float32"} == final
    # the same layers and weights: released weights and copy_weights map either way
    assert [la.name for la in _layers(mixed)] == [la.name for la in _layers(plain)]
    assert weight_shapes(mixed) == weight_shapes(plain)
    assert copy_weights(mixed, plain) == list(weight_shapes(plain))
    x = inputs()
    out_plain = keras.tree.flatten(plain(x))
    out_mixed = keras.tree.flatten(mixed(x))
    assert [o.dtype.name for o in out_mixed] == ["float32"] * len(out_plain)
    for a, b in zip(out_mixed, out_plain, strict=True):
        scale = float(np.abs(np.asarray(b)).max()) or 1.0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-2 * scale)


def test_mixed_bfloat16_outputs_float32():
    model = _build(lambda: DnCNN(depth=3, filters=4), "mixed_bfloat16")
    assert model.get_layer("conv2").compute_dtype == "bfloat16"
    assert model(_image((1, 8, 8, 1))).dtype == "float32"


def test_a_float16_policy_is_not_mixed():
    # a plain float16 policy (float16 variables too) keeps float16 throughout
    model = _build(lambda: DnCNN(depth=3, filters=4), "float16")
    assert model.get_layer("subtract_noise").dtype_policy.name == "float16"


def test_files_saved_with_a_float16_final_layer_load_as_saved(tmp_path, monkeypatch):
    x = _image((2, 8, 8, 1))
    # a model as built before the float32 final layer
    with monkeypatch.context() as m:
        m.setattr(tfrestore.models.dncnn, "output_dtype", lambda: None)
        old = _build(lambda: DnCNN(depth=3, filters=4), "mixed_float16")
    assert old.get_layer("subtract_noise").dtype_policy.name == "mixed_float16"
    old.save(tmp_path / "old.keras")
    new = _build(lambda: DnCNN(depth=3, filters=4), "mixed_float16")
    new.save(tmp_path / "new.keras")
    for policy in ("float32", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        loaded_old = keras.saving.load_model(tmp_path / "old.keras")
        loaded_new = keras.saving.load_model(tmp_path / "new.keras")
        keras.config.set_dtype_policy("float32")
        assert loaded_old(x).dtype == "float16"
        np.testing.assert_array_equal(np.asarray(loaded_old(x)), np.asarray(old(x)))
        assert loaded_new(x).dtype == "float32"
        np.testing.assert_array_equal(np.asarray(loaded_new(x)), np.asarray(new(x)))
    # the old file's weights fit the new mixed model, layer by layer
    assert copy_weights(loaded_old, new) == list(weight_shapes(new))
