"""DiffLoss: harness conformance, algebra against NumPy, gradient flow, weights."""

import json
import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.convert import TorchCheckpointError
from tfrestore.diffusion import ADMUNet, adm_state_dict_shapes
from tfrestore.diffusion import pretrained
from tfrestore.losses import MSE, DiffLoss, WeightedSum
from tfrestore.testing import TestCase
from tfrestore.testing.torch_writer import save_torch_state_dict
from tfrestore.utils import WeightsNotFoundError

# A smaller ADM than adm_tiny (same block types: scale-shift ResBlocks, ResBlock
# up/down sampling, legacy attention) so the harness' graph/XLA/Mirrored traces stay fast.
MICRO = dict(
    image_size=16, num_channels=32, num_res_blocks=1, channel_mult=[1, 2],
    attention_resolutions=[8], num_head_channels=16, learn_sigma=True,
    resblock_updown=True, use_scale_shift_norm=True,
)


def _random_state_dict(config, seed=0):
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in adm_state_dict_shapes(config).items():
        if len(shape) == 1:
            is_norm = "norm" in key or "layers.0" in key or key.startswith("out.0")
            base = 1.0 if key.endswith("weight") and is_norm else 0.0
            sd[key] = (base + 0.1 * rng.normal(size=shape)).astype("float32")
        else:
            fan_in = int(np.prod(shape[1:]))
            sd[key] = (rng.normal(size=shape) / np.sqrt(fan_in)).astype("float32")
    return sd


@pytest.fixture(scope="module")
def micro_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("micro") / "micro_adm.pt"
    save_torch_state_dict(_random_state_dict(MICRO), str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny(vectors_dir):
    cfg = json.loads((vectors_dir / "adm_tiny" / "config.json").read_text())
    return cfg, str(vectors_dir / "adm_tiny" / "model.pt")


def _pair(rng, shape):
    y = rng.uniform(size=shape).astype("float32")
    return y, np.clip(y + rng.normal(0, 0.1, size=shape), 0, 1).astype("float32")


# The conformance harness traces the loss (graph, XLA, 2 Mirrored fits): it uses an
# even smaller UNet without resampling levels (one ResBlock+attention per side).
NANO = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=[1],
            attention_resolutions=[16], num_head_channels=16)


class DiffLossTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._tmp = tempfile.TemporaryDirectory()
        cls.nano_weights = os.path.join(cls._tmp.name, "nano_adm.pt")
        save_torch_state_dict(_random_state_dict(NANO, seed=1), cls.nano_weights)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()
        super().tearDownClass()

    def test_harness_paper_mode(self):
        y, p = _pair(self.rng, (2, 16, 16, 3))
        kwargs = dict(mode="paper", unet=NANO, weights=self.nano_weights)
        bad = [
            (np.zeros((2, 16, 16, 1), "float32"), np.zeros((2, 16, 16, 1), "float32"),
             ValueError, "3 channels"),
            (np.zeros((2, 16, 16, 3), "float32"), np.full((2, 16, 16, 3), np.nan, "float32"),
             ValueError, "NaN"),
            (np.zeros((2, 16, 16, 3), "float32"), np.zeros((2, 16, 18, 3), "float32"),
             ValueError, "same shape"),
        ]
        res = self.run_loss_test(DiffLoss, kwargs, y, p, bad_inputs=bad)
        self.assertTrue(np.all(res["eager"] > 0))


def test_sizes_must_be_multiples_of_the_unet_downsampling(micro_weights):
    loss = DiffLoss(unet=MICRO, weights=micro_weights)
    bad = np.zeros((2, 15, 16, 3), "float32")
    with pytest.raises(ValueError, match=r"`y_true` is 15x16 pixels.*multiples of 2"):
        loss(bad, bad)
    tiny_factor = DiffLoss(unet="adm_tiny", weights=None)
    x = np.zeros((1, 34, 32, 3), "float32")
    with pytest.raises(ValueError, match="multiples of 4"):
        tiny_factor(x, x)
    # dynamic shapes: checked when the graph runs
    fn = tf.function(lambda a, b: loss.validate(a, b)[1],
                     input_signature=[tf.TensorSpec((None, None, None, 3))] * 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiples of 2"):
        fn(bad, bad)
    assert fn(bad[:, :14], bad[:, :14]).shape == (2, 14, 16, 3)


def _np_schedule():
    """Closed forms, written independently of tfrestore.diffusion."""
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.cumprod(1.0 - betas)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    return betas, ab, ab_prev


def test_terms_match_numpy_algebra_on_the_golden_tiny_unet(tiny, rng):
    cfg, path = tiny
    y, p = _pair(rng, (2, 32, 32, 3))
    t = np.array([0, 731])
    noise = rng.normal(size=y.shape).astype("float32")
    betas, ab, ab_prev = _np_schedule()
    r = lambda a: a[t].reshape(-1, 1, 1, 1)  # noqa: E731
    x, z = 2.0 * y.astype(np.float64) - 1.0, 2.0 * p.astype(np.float64) - 1.0
    xt = np.sqrt(r(ab)) * x + np.sqrt(1 - r(ab)) * noise
    zt = np.sqrt(r(ab)) * z + np.sqrt(1 - r(ab)) * noise

    losses = {m: DiffLoss(mode=m, unet=cfg, weights=path, t_weighting="none") for m in
              ("paper", "eps", "eps_xprev")}
    unet = losses["paper"]._holder.value
    out_x, h_x = (np.asarray(v, np.float64) for v in unet(xt.astype("float32"), t))
    out_z, h_z = (np.asarray(v, np.float64) for v in unet(zt.astype("float32"), t))
    ex, ez = out_x[..., :3], out_z[..., :3]
    c = np.sqrt(1 / r(ab) - 1)
    x0x, x0z = xt / np.sqrt(r(ab)) - c * ex, zt / np.sqrt(r(ab)) - c * ez
    c1 = r(betas) * np.sqrt(r(ab_prev)) / (1 - r(ab))
    c2 = (1 - r(ab_prev)) * np.sqrt(1 - r(betas)) / (1 - r(ab))
    px, pz = c1 * x0x + c2 * xt, c1 * x0z + c2 * zt
    xxx = (px - np.sqrt(1 - r(ab_prev)) * noise) / np.sqrt(r(ab_prev))
    xxz = (pz - np.sqrt(1 - r(ab_prev)) * noise) / np.sqrt(r(ab_prev))
    mse = lambda a, b: ((a - b) ** 2).mean(axis=(1, 2, 3))  # noqa: E731
    ref = {"x0": mse(x0x, x0z), "x0_hat_hat": mse(xxx, xxz), "h": mse(h_x, h_z),
           "eps": mse(ex, ez), "x_prev": mse(px, pz)}
    # §4.4 algebra: x̂₀ − ẑ₀ = (x − z) − c_t (ε̂_x − ε̂_z); the ε of eq. 10 cancels
    np.testing.assert_allclose(x0x - x0z, (x - z) - c * (ex - ez), atol=1e-9)
    np.testing.assert_allclose(
        xxx - xxz, (c1 * (x0x - x0z) + c2 * np.sqrt(r(ab)) * (x - z)) / np.sqrt(r(ab_prev)),
        atol=1e-9)
    k = r(betas) / np.sqrt(r(ab) * (1 - r(ab)))  # = (x − z) − k_t Δε, k_t ≤ 3.15
    np.testing.assert_allclose(xxx - xxz, (x - z) - k * (ex - ez), atol=1e-9)
    # at t = 0 the second reconstruction equals the first (ᾱ_{−1} = 1, c1 = 1, c2 = 0)
    np.testing.assert_allclose(xxx[0], x0x[0], atol=1e-9)

    got = {m: {k: np.asarray(v) for k, v in l.terms(y, p, t, noise).items()}
           for m, l in losses.items()}
    for key in ("x0", "x0_hat_hat", "h"):
        np.testing.assert_allclose(got["paper"][key], ref[key], rtol=2e-3, err_msg=key)
    np.testing.assert_allclose(got["eps"]["eps"], ref["eps"], rtol=2e-3)
    np.testing.assert_allclose(got["eps_xprev"]["x_prev"], ref["x_prev"], rtol=2e-3)
    np.testing.assert_allclose(
        got["paper"]["total"], ref["x0"] + ref["x0_hat_hat"] + 0.01 * ref["h"], rtol=2e-3)
    np.testing.assert_allclose(got["eps"]["total"], ref["eps"] + 1e-3 * ref["h"], rtol=2e-3)
    np.testing.assert_allclose(
        got["eps_xprev"]["total"], ref["eps"] + ref["x_prev"] + 0.01 * ref["h"], rtol=2e-3)
    assert np.all(ref["x0"] > 0) and np.all(ref["h"] > 0)


@pytest.mark.parametrize("mode", ["paper", "eps", "eps_xprev"])
def test_gradient_flows_through_the_unet_in_every_mode(micro_weights, rng, mode):
    y, p = _pair(rng, (2, 16, 16, 3))
    grads = {}
    for through in (True, False):
        loss = DiffLoss(mode=mode, unet=MICRO, weights=micro_weights,
                        gradient_through_unet=through)
        yp = tf.Variable(p)
        with tf.GradientTape() as tape:
            value = loss(y, yp)
        grads[through] = tape.gradient(value, yp)
        assert np.isfinite(float(value)) and float(value) > 0
    g = np.asarray(grads[True])
    assert np.all(np.isfinite(g)) and np.any(g != 0)
    # released-code behaviour: values reported, gradient exactly zero
    assert grads[False] is None or not np.any(np.asarray(grads[False]))


def test_gradient_matches_finite_differences(micro_weights, rng):
    loss = DiffLoss(mode="paper", unet=MICRO, weights=micro_weights, t_weighting="none")
    y, p = _pair(rng, (2, 16, 16, 3))
    t = np.array([40, 300])
    noise = rng.normal(size=y.shape).astype("float32")
    d = rng.normal(size=p.shape)
    d /= np.linalg.norm(d)
    yp = tf.Variable(p)
    with tf.GradientTape() as tape:
        v = tf.reduce_sum(loss.terms(y, yp, t, noise)["total"])
    analytic = float(np.sum(np.asarray(tape.gradient(v, yp), np.float64) * d))
    f = lambda q: float(tf.reduce_sum(loss.terms(y, q.astype("float32"), t, noise)["total"]))  # noqa
    eps = 1e-2
    numeric = (f(p + eps * d) - f(p - eps * d)) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=0.05)


def test_t_weighting_and_lambda_defaults(micro_weights, rng):
    y, p = _pair(rng, (2, 16, 16, 3))
    t = np.array([100, 900])
    noise = rng.normal(size=y.shape).astype("float32")
    _, ab, _ = _np_schedule()
    snr = ab / (1 - ab)
    expected_w = {"none": np.ones(2), "min_snr": np.minimum(1.0, snr[t]), "alpha_bar": ab[t]}
    for weighting, w in expected_w.items():
        loss = DiffLoss(unet=MICRO, weights=micro_weights, t_weighting=weighting, lambda_h=0.5)
        np.testing.assert_allclose(np.asarray(loss.t_weight(t)), w, rtol=1e-6)
        terms = {k: np.asarray(v) for k, v in loss.terms(y, p, t, noise).items()}
        np.testing.assert_allclose(
            terms["total"], w * terms["x0"] + terms["x0_hat_hat"] + 0.5 * terms["h"], rtol=1e-5)
    assert expected_w["min_snr"][0] == 1.0 and expected_w["min_snr"][1] < 1e-3
    assert DiffLoss(unet=MICRO, weights=None).lambda_h == 0.01
    assert DiffLoss(mode="eps", unet=MICRO, weights=None).lambda_h == 1e-3
    assert DiffLoss(mode="eps_xprev", unet=MICRO, weights=None).lambda_h == 0.01
    assert DiffLoss(unet=MICRO, weights=None).t_range == [0, 999]


def test_sampling_is_reproducible_in_range_and_advances(micro_weights):
    like = tf.zeros((8, 16, 16, 3))
    a = DiffLoss(unet=MICRO, weights=None, t_range=(5, 9), seed=3)
    b = DiffLoss(unet=MICRO, weights=None, t_range=(5, 9), seed=3)
    c = DiffLoss(unet=MICRO, weights=None, t_range=(5, 9), seed=4)
    ta, na = zip(*[a.sample(like) for _ in range(20)])
    tb, nb = zip(*[b.sample(like) for _ in range(20)])
    tc, nc = c.sample(like)
    ts = np.concatenate([np.asarray(x) for x in ta])
    assert ts.min() == 5 and ts.max() == 9 and set(ts.tolist()) == {5, 6, 7, 8, 9}
    np.testing.assert_array_equal(ts, np.concatenate([np.asarray(x) for x in tb]))
    np.testing.assert_array_equal(na[7], nb[7])
    assert not np.array_equal(na[0], na[1])  # the counter advances
    assert not np.array_equal(na[0], nc)  # the seed matters
    noise = np.concatenate([np.asarray(x) for x in na]).ravel()
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1) < 0.01
    assert abs(np.mean(np.abs(noise) < 1) - 0.6827) < 0.01


def test_replicas_draw_their_rows_of_the_global_batch(strategy):
    with strategy.scope():
        loss = DiffLoss(unet=MICRO, weights=None, seed=7)
    single = DiffLoss(unet=MICRO, weights=None, seed=7)
    like = tf.zeros((4, 16, 16, 3))
    t_ref, n_ref = single.sample(like)
    dist = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(like).batch(4))
    local = next(iter(dist))
    t_d, n_d = strategy.run(loss.sample, args=(local,))
    t_d = np.concatenate([np.asarray(v) for v in strategy.experimental_local_results(t_d)])
    n_d = np.concatenate([np.asarray(v) for v in strategy.experimental_local_results(n_d)])
    np.testing.assert_array_equal(t_d, np.asarray(t_ref))
    np.testing.assert_allclose(n_d, np.asarray(n_ref), atol=1e-6)


def test_data_range_mapping(micro_weights, rng):
    y, p = _pair(rng, (2, 16, 16, 3))
    a = DiffLoss(unet=MICRO, weights=micro_weights).call(y, p)
    b = DiffLoss(unet=MICRO, weights=micro_weights, data_range=(-1, 1)).call(2 * y - 1, 2 * p - 1)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)
    c = DiffLoss(unet=MICRO, weights=micro_weights, data_range=255).call(255 * y, 255 * p)
    np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-4)
    with pytest.raises(ValueError, match=r"`data_range` must be a positive number r"):
        DiffLoss(unet=MICRO, weights=None, data_range=(1, 0))


def test_criterion_names(micro_weights):
    with pytest.raises(ValueError, match=r"`criterion`.*'l2'.*ambiguous.*'l2_norm'"):
        DiffLoss(unet=MICRO, weights=None, criterion="l2")
    loss = DiffLoss(unet=MICRO, weights=None, criterion="l2_norm")
    assert loss.get_config()["criterion"] == "l2_norm"
    assert DiffLoss.from_config(loss.get_config()).criterion == "l2_norm"


def test_loss_algebra_and_fit_leave_the_unet_frozen(micro_weights, rng, tmp_path):
    y, p = _pair(rng, (4, 16, 16, 3))
    diff = DiffLoss(unet=MICRO, weights=micro_weights)
    total = MSE() + 0.001 * diff
    assert isinstance(total, WeightedSum) and total.loss_weights == [1.0, 0.001]
    unet = diff._holder.value
    before = [w.copy() for w in unet.get_weights()]
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(inp))
    # eager keeps this test fast; graph-mode fit is covered by the harness (Mirrored check)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=total, run_eagerly=True)
    w0 = [w.copy() for w in model.get_weights()]
    model.fit(p, y, batch_size=4, epochs=2, verbose=0)
    assert len(model.trainable_weights) == 2  # the UNet is not part of the model
    assert any(not np.array_equal(a, b) for a, b in zip(w0, model.get_weights()))
    for a, b in zip(before, unet.get_weights()):
        np.testing.assert_array_equal(a, b)
    # checkpoints hold the restorer only: they load into a model without the loss
    model.save_weights(tmp_path / "r.weights.h5")
    inp = keras.Input((16, 16, 3))
    fresh = keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(inp))
    fresh.load_weights(tmp_path / "r.weights.h5")
    assert os.path.getsize(tmp_path / "r.weights.h5") < 100_000


def test_any_eps_unet_can_be_plugged_in(rng, tmp_path, generic_unet):
    unet = generic_unet()
    unet.save_weights(tmp_path / "g.weights.h5")
    y, p = _pair(rng, (2, 16, 16, 3))
    loss = DiffLoss(unet=unet, weights=str(tmp_path / "g.weights.h5"))
    yp = tf.Variable(p)
    with tf.GradientTape() as tape:
        v = loss(y, yp)
    g = np.asarray(tape.gradient(v, yp))
    assert np.all(np.isfinite(g)) and np.any(g != 0)
    config = loss.get_config()
    assert config["unet"]["class_name"] == "Functional"
    clone = DiffLoss.from_config(config)
    assert clone.get_config() == config
    np.testing.assert_allclose(np.asarray(clone.call(y, p)),
                               np.asarray(DiffLoss(unet=unet, weights=None).call(y, p)), rtol=1e-5)


def test_bad_arguments_and_files(micro_weights, tiny, tmp_path):
    from tfrestore.diffusion import ADMConversionError

    with pytest.raises(ValueError, match="Unknown ADM preset 'adm_512'.*adm_256_uncond"):
        DiffLoss(unet="adm_512", weights=None)
    with pytest.raises(ValueError, match="`mode`"):
        DiffLoss(mode="x0", unet=MICRO, weights=None)
    with pytest.raises(ValueError, match="`t_range`"):
        DiffLoss(unet=MICRO, weights=None, t_range=(0, 1000))
    with pytest.raises(ValueError, match="`t_weighting`"):
        DiffLoss(unet=MICRO, weights=None, t_weighting="snr")
    with pytest.raises(ValueError, match="weights='default' needs a preset"):
        DiffLoss(unet=MICRO)
    with pytest.raises(TypeError, match="`unet`"):
        DiffLoss(unet=42)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(TorchCheckpointError, match="not a PyTorch zip checkpoint"):
        DiffLoss(unet=MICRO, weights=str(corrupt))
    with pytest.raises(ADMConversionError, match="missing keys"):
        DiffLoss(unet=MICRO, weights=tiny[1])  # adm_tiny checkpoint, micro flags
    with pytest.raises(WeightsNotFoundError):
        DiffLoss(unet=MICRO, weights=str(tmp_path / "nope.weights.h5"))


def test_offline_error_names_the_files(monkeypatch, tmp_path):
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    info = dict(pretrained.PRETRAINED_ADM["adm_256_uncond"])
    info["origin"] = "http://127.0.0.1:9/256x256_diffusion_uncond.pt"  # refused at once
    monkeypatch.setitem(pretrained.PRETRAINED_ADM, "adm_256_uncond", info)
    with pytest.raises(WeightsNotFoundError) as err:
        DiffLoss()  # fails before building the 552M-parameter UNet
    msg = str(err.value)
    assert "256x256_diffusion_uncond.pt" in msg and "adm_256_uncond.weights.h5" in msg
    assert "TFRESTORE_WEIGHTS_DIR" in msg


def test_default_weights_resolution_converts_and_caches(monkeypatch, tmp_path, tiny, vectors_dir):
    wdir, khome = tmp_path / "weights", tmp_path / "keras"
    wdir.mkdir()
    (wdir / "adm_tiny_original.pt").write_bytes(open(tiny[1], "rb").read())
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(wdir))
    monkeypatch.setenv("KERAS_HOME", str(khome))
    monkeypatch.setitem(pretrained.PRETRAINED_ADM, "adm_tiny", dict(
        converted="adm_tiny.weights.h5", original="adm_tiny_original.pt", origin=None,
        file_hash=None, description="tiny test UNet"))
    assert pretrained.resolve_adm_weights("adm_tiny").endswith("adm_tiny_original.pt")
    loss = DiffLoss(unet="adm_tiny", weights="default")
    io = np.load(vectors_dir / "adm_tiny" / "io.npz")
    out, _ = loss._holder.value(io["x"], io["t"])
    np.testing.assert_allclose(np.asarray(out), io["out"], atol=1e-4)
    cached = khome / "models" / "adm_tiny.weights.h5"
    assert cached.is_file()
    assert pretrained.resolve_adm_weights("adm_tiny") == str(cached)
    assert loss.get_config()["unet"] == "adm_tiny" and loss.get_config()["weights"] == "default"


def test_adm_instance_round_trips_through_its_config(micro_weights, rng):
    unet = ADMUNet(**MICRO)
    y, p = _pair(rng, (2, 16, 16, 3))
    kept = DiffLoss(unet=unet)  # weights="default": keep the instance's weights
    assert kept.get_config()["weights"] is None
    assert kept.get_config()["unet"] == unet.hparams
    loaded = DiffLoss(unet=unet, weights=micro_weights)  # loads into the instance
    config = loaded.get_config()
    assert config["weights"] == micro_weights
    clone = DiffLoss.from_config(config)
    assert clone._holder.value is not unet and not clone._holder.value.trainable
    np.testing.assert_allclose(np.asarray(clone.call(y, p)),
                               np.asarray(DiffLoss(unet=unet, weights=None).call(y, p)), rtol=1e-5)


# ---------------------------------------------------- value range and subclassed UNets
def _images(shape=(3, 32, 32, 3), seed=0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.05, 0.95, size=shape).astype("float32")
    return y, np.clip(y + rng.normal(0, 0.05, shape), 0, 1).astype("float32")


def test_diffloss_range_follows_data_range(generic_unet):
    def _diffloss(**kw):
        return DiffLoss(unet=generic_unet(), mode="eps", **kw)

    y, p = _images((2, 16, 16, 3))
    with pytest.raises(ValueError, match=r"`y_true` .* far outside the range \[0, 1\].*"
                                         r"set `data_range=\(low, high\)`"):
        _diffloss()(255.0 * y, 255.0 * p)
    a = _diffloss().call(y, p)
    b = _diffloss(data_range=255).call(255.0 * y, 255.0 * p)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4)


class _SubclassedEpsNet(keras.Model):
    """A subclassed eps-UNet without get_config (its __init__ takes arguments)."""

    def __init__(self, width, scale):
        super().__init__()
        self.scale = scale
        self.conv = keras.layers.Conv2D(width, 3, padding="same")
        self.head = keras.layers.Conv2D(3, 3, padding="same")

    def call(self, x, t, training=False):
        h = self.conv(x) + tf.cast(t, tf.float32)[:, None, None, None] * 1e-3
        return self.head(h) * self.scale, h


def test_diffloss_accepts_a_subclassed_unet_without_get_config():
    y, p = _images((2, 16, 16, 3))
    loss = DiffLoss(unet=_SubclassedEpsNet(8, 1.0), mode="eps")  # constructing used to fail
    yp = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(loss(y, yp))
    grad = np.asarray(tape.gradient(value, yp))
    assert np.isfinite(float(value)) and np.any(grad != 0)
    with pytest.raises(ValueError, match=r"`unet` model _SubclassedEpsNet cannot be serialized"
                                         r".*get_config\(\)"):
        loss.get_config()
