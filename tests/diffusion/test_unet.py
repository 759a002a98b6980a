import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.diffusion import (
    ADMUNet,
    adm_config,
    adm_state_dict_shapes,
    convert_adm,
    load_adm_weights,
    timestep_embedding,
)
from tfrestore.diffusion.layers import _AttentionBlock, _Resample


def _key_file(vectors_dir):
    lines = (vectors_dir / "adm256_uncond_state_dict_keys.txt").read_text().splitlines()
    out = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split(" ", 1)
        out.append((key, tuple(int(v) for v in shape.strip("()").split(",") if v.strip())))
    return out


def _torch_to_keras_shape(shape):
    if len(shape) == 4:
        return (shape[2], shape[3], shape[1], shape[0])
    if len(shape) == 3:
        return (shape[1], shape[0])
    if len(shape) == 2:
        return (shape[1], shape[0])
    return shape


@pytest.fixture(scope="module")
def tiny_unet(vectors_dir):
    cfg = json.loads((vectors_dir / "adm_tiny" / "config.json").read_text())
    unet = ADMUNet(**adm_config(cfg))
    load_adm_weights(unet, convert_adm(vectors_dir / "adm_tiny" / "model.pt", cfg))
    return cfg, unet


def test_golden_vector_parity(tiny_unet, vectors_dir):
    _, unet = tiny_unet
    io = np.load(vectors_dir / "adm_tiny" / "io.npz")
    out, h = unet(io["x"], io["t"])
    assert out.shape == io["out"].shape and h.shape == io["h"].shape
    np.testing.assert_allclose(np.asarray(out), io["out"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(h), io["h"], atol=1e-4, rtol=0)


def test_full_size_layout_matches_the_official_key_file_without_variables(vectors_dir):
    ref = _key_file(vectors_dir)
    shapes = adm_state_dict_shapes("adm_256_uncond")
    assert len(ref) == 566
    assert list(shapes.items()) == ref  # same keys, shapes and order
    assert sum(int(np.prod(s)) for s in shapes.values()) == 552_814_086


@pytest.mark.slow
def test_full_size_model_variables_correspond_one_to_one(vectors_dir):
    unet = ADMUNet.from_preset("adm_256_uncond")
    table = unet.torch_variables()
    ref = _key_file(vectors_dir)
    assert list(table) == [k for k, _ in ref]
    for key, shape in ref:
        assert tuple(table[key][0].shape) == _torch_to_keras_shape(shape), key
    assert len(unet.weights) == 566 and unet.count_params() == 552_814_086
    assert {id(v) for v, _ in table.values()} == {id(v) for v in unet.weights}


def test_tiny_model_variables_correspond_one_to_one(tiny_unet, vectors_dir):
    from tfrestore.convert import load_torch_state_dict

    cfg, unet = tiny_unet
    table = unet.torch_variables()
    ckpt = load_torch_state_dict(vectors_dir / "adm_tiny" / "model.pt")
    assert list(table) == list(ckpt) == list(adm_state_dict_shapes(cfg))
    assert {id(v) for v, _ in table.values()} == {id(v) for v in unet.weights}
    assert len(table) == len(unet.weights)
    for key, (var, _) in table.items():
        assert tuple(var.shape) == _torch_to_keras_shape(ckpt[key].shape), key


def test_timestep_embedding_is_cos_first():
    t = np.array([0, 1, 731])
    emb = np.asarray(timestep_embedding(t, 8))
    freqs = np.exp(-np.log(10000) * np.arange(4) / 4)
    ref = np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], axis=1)
    np.testing.assert_allclose(emb, ref, atol=2e-4)
    np.testing.assert_allclose(emb[0], [1, 1, 1, 1, 0, 0, 0, 0])
    assert timestep_embedding(t, 7).shape == (3, 7)


def _attention_reference(x, wqkv, bqkv, wproj, bproj, gamma, beta, heads, legacy):
    """NumPy ADM AttentionBlock in the PyTorch layout (weights (out, in))."""
    b, hh, ww, c = x.shape
    xs = x.reshape(b, -1, c)  # (B, T, C)
    g = xs.reshape(b, -1, 32, c // 32)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = g.var(axis=(1, 3), keepdims=True)
    xn = ((g - mean) / np.sqrt(var + 1e-5)).reshape(b, -1, c) * gamma + beta
    qkv = xn @ wqkv.T + bqkv  # (B, T, 3C)
    d = c // heads
    if legacy:
        qkv = qkv.reshape(b, -1, heads, 3, d)
        q, k, v = qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]
    else:
        qkv = qkv.reshape(b, -1, 3, heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    a = np.einsum("bhts,bshd->bthd", w, v).reshape(b, -1, c)
    return (xs + a @ wproj.T + bproj).reshape(x.shape)


@pytest.mark.parametrize("legacy", [True, False])
def test_attention_matches_numpy_reference(rng, legacy):
    c, heads = 64, 4
    block = _AttentionBlock(c, heads, legacy_order=legacy)
    block.build()
    wqkv = rng.normal(size=(3 * c, c)) / 8
    bqkv = rng.normal(size=3 * c) * 0.1
    wproj = rng.normal(size=(c, c)) / 8
    bproj = rng.normal(size=c) * 0.1
    gamma, beta = 1 + 0.1 * rng.normal(size=c), 0.1 * rng.normal(size=c)
    block.norm.gamma.assign(gamma)
    block.norm.beta.assign(beta)
    block.qkv.kernel.assign(wqkv.T)
    block.qkv.bias.assign(bqkv)
    block.proj_out.kernel.assign(wproj.T)
    block.proj_out.bias.assign(bproj)
    x = rng.normal(size=(2, 4, 4, c))
    ref = _attention_reference(x, wqkv, bqkv, wproj, bproj, gamma, beta, heads, legacy)
    np.testing.assert_allclose(np.asarray(block(x.astype("float32"))), ref, atol=2e-5)


def test_conv_downsample_pads_like_torch(rng):
    layer = _Resample(32, up=False, use_conv=True)
    layer.build()
    x = rng.normal(size=(1, 6, 6, 32)).astype("float32")
    w = np.asarray(layer.conv.kernel)
    xp = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    ref = np.zeros((1, 3, 3, 32))
    for i in range(3):
        for j in range(3):
            ref[0, i, j] = np.einsum("hwc,hwco->o", xp[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3], w)
    np.testing.assert_allclose(np.asarray(layer(x)), ref + np.asarray(layer.conv.bias), atol=1e-4)


def test_conv_resampling_variant_builds_with_matching_keys():
    cfg = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=[1, 2],
               attention_resolutions=[8], num_heads=2, num_head_channels=-1,
               resblock_updown=False, use_scale_shift_norm=False, learn_sigma=False)
    unet = ADMUNet(**cfg)
    shapes = adm_state_dict_shapes(cfg)
    assert "input_blocks.2.0.op.weight" in shapes and "output_blocks.1.2.conv.weight" in shapes
    assert list(unet.torch_variables()) == list(shapes)
    out, h = unet(np.zeros((2, 16, 16, 3), "float32"), np.array([3, 4]))
    assert out.shape == (2, 16, 16, 3) and h.shape == (2, 8, 8, 64)
    cfg["conv_resample"] = False
    assert not any(".op." in k for k in adm_state_dict_shapes(cfg))


MICRO = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=[1, 2],
             attention_resolutions=[8], num_head_channels=16)


def test_recompute_gives_identical_values_and_gradients(rng):
    plain = ADMUNet(**MICRO)
    remat = ADMUNet(**MICRO, recompute=True)
    remat.set_weights(plain.get_weights())
    x = tf.constant(rng.normal(size=(2, 16, 16, 3)).astype("float32"))
    t = np.array([5, 600])

    def grad(unet):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out, h = unet(x, t)
            value = tf.reduce_sum(out ** 2) + tf.reduce_sum(h)
        return value, tape.gradient(value, x)

    v1, g1 = tf.function(lambda: grad(plain))()
    v2, g2 = tf.function(lambda: grad(remat))()
    np.testing.assert_allclose(float(v2), float(v1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g2), np.asarray(g1), rtol=1e-3, atol=1e-4)
    assert float(tf.reduce_max(tf.abs(g1))) > 1.0


def test_mixed_float16_keeps_norms_and_softmax_in_float32(rng):
    reference = ADMUNet(**MICRO)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = ADMUNet(**MICRO)
    finally:
        keras.config.set_dtype_policy("float32")
    mixed.set_weights(reference.get_weights())
    norms = [la for la in mixed._flatten_layers() if type(la).__name__ == "_GroupNorm32"]
    assert norms and all(la.compute_dtype == "float32" for la in norms)
    convs = [la for la in mixed._flatten_layers() if isinstance(la, keras.layers.Conv2D)]
    assert any(la.compute_dtype == "float16" for la in convs)
    x = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    t = np.array([10, 900])
    out16, h16 = mixed(x, t)
    out32, h32 = reference(x, t)
    assert out16.dtype == tf.float32 and h16.dtype == tf.float32
    np.testing.assert_allclose(np.asarray(out16), np.asarray(out32), atol=0.05)
    h_scale = float(tf.reduce_max(tf.abs(h32)))
    np.testing.assert_allclose(np.asarray(h16), np.asarray(h32), atol=0.05 * h_scale)


def test_config_round_trip_and_presets():
    unet = ADMUNet(**MICRO, recompute=True)
    config = unet.get_config()
    clone = ADMUNet.from_config(config)
    assert clone.hparams == unet.hparams and clone.recompute
    de = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(unet))
    assert type(de) is ADMUNet and de.hparams == unet.hparams
    assert adm_config("adm_256_uncond")["channel_mult"] == [1, 1, 2, 2, 4, 4]
    assert adm_config(dict(image_size=64, num_channels=64))["channel_mult"] == [1, 2, 3, 4]
    assert adm_config(dict(attention_resolutions="32,16,8"))["attention_resolutions"] == [32, 16, 8]
    assert ADMUNet(**MICRO).downsampling_factor == 2


def test_bad_configs():
    with pytest.raises(ValueError, match="Unknown ADM preset 'adm_64'"):
        ADMUNet.from_preset("adm_64")
    with pytest.raises(ValueError, match="class-conditional"):
        adm_config(dict(class_cond=True))
    with pytest.raises(ValueError, match="Unknown ADM hyper-parameter.*num_chanels"):
        adm_config(dict(num_chanels=64))
    with pytest.raises(ValueError, match="num_head_channels"):
        ADMUNet(**dict(MICRO, num_head_channels=24))
    with pytest.raises(ValueError, match="channel_mult"):
        adm_config(dict(image_size=48))
