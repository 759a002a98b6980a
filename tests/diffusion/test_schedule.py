import math

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.diffusion import DiffusionSchedule


def test_linear_schedule_closed_forms():
    s = DiffusionSchedule()
    assert s.betas.dtype == np.float64 and s.betas.shape == (1000,)
    np.testing.assert_allclose(s.betas, 1e-4 + np.arange(1000) * (0.02 - 1e-4) / 999, rtol=1e-12)
    ab = 1.0
    for t in (0, 1, 10, 500, 999):
        ab = math.prod(1 - b for b in s.betas[: t + 1])
        np.testing.assert_allclose(s.alphas_cumprod[t], ab, rtol=1e-10)
        prev = 1.0 if t == 0 else math.prod(1 - b for b in s.betas[:t])
        np.testing.assert_allclose(s.alphas_cumprod_prev[t], prev, rtol=1e-10)
        beta = s.betas[t]
        np.testing.assert_allclose(s.posterior_mean_coef1[t],
                                   beta * math.sqrt(prev) / (1 - ab), rtol=1e-10)
        np.testing.assert_allclose(s.posterior_mean_coef2[t],
                                   (1 - prev) * math.sqrt(1 - beta) / (1 - ab), rtol=1e-10)
        np.testing.assert_allclose(s.posterior_variance[t], beta * (1 - prev) / (1 - ab),
                                   rtol=1e-10, atol=1e-300)
    assert s.posterior_variance[0] == 0.0
    assert s.posterior_log_variance_clipped[0] == s.posterior_log_variance_clipped[1]
    assert s.posterior_mean_coef1[0] == pytest.approx(1.0) and s.posterior_mean_coef2[0] == 0.0


def test_reconstruction_coefficient_matches_the_spec_table():
    # reference_spec §4.3: c_t = sqrt(1/ᾱ_t − 1)
    table = {0: 0.010, 100: 0.342, 300: 1.24, 500: 3.44, 700: 12.0, 900: 60.8, 999: 157.4}
    c = DiffusionSchedule().sqrt_recipm1_alphas_cumprod
    for t, value in table.items():
        assert c[t] == pytest.approx(value, rel=6e-3, abs=5e-4), t
    assert c[999] ** 2 == pytest.approx(2.48e4, rel=0.01)


def test_cosine_schedule_and_argument_checks():
    s = DiffusionSchedule(1000, "cosine")
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    np.testing.assert_allclose(s.alphas_cumprod[500], f(501) / f(0), rtol=1e-8)
    assert s.betas.max() <= 0.999
    with pytest.raises(ValueError, match="schedule"):
        DiffusionSchedule(1000, "quadratic")
    with pytest.raises(ValueError, match="num_timesteps"):
        DiffusionSchedule(1)


def test_tf_steps_round_trip_and_rounding(rng):
    s = DiffusionSchedule()
    x0 = rng.normal(size=(3, 4, 4, 3))
    eps = rng.normal(size=x0.shape)
    t = np.array([0, 437, 999])
    xt = s.q_sample(tf.constant(x0), t, eps)
    ab = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(xt, np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps, rtol=1e-12)
    np.testing.assert_allclose(s.predict_x0_from_eps(xt, t, eps), x0, atol=1e-9)
    np.testing.assert_allclose(s.predict_eps_from_x0(xt, t, x0)[1:], eps[1:], atol=1e-9)
    # posterior mean with the true x₀: c1 + c2·√ᾱ_t = √ᾱ_{t−1}
    abp = s.alphas_cumprod_prev[t].reshape(-1, 1, 1, 1)
    c2 = s.posterior_mean_coef2[t].reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(s.posterior_mean(x0, xt, t),
                               np.sqrt(abp) * x0 + c2 * np.sqrt(1 - ab) * eps, atol=1e-9)
    # eq. 10 inverts q(x_{t−1} | x₀) for the same ε
    x_prev = np.sqrt(abp) * x0 + np.sqrt(1 - abp) * eps
    np.testing.assert_allclose(s.predict_x0_from_prev(x_prev, t, eps), x0, atol=1e-9)
    # float32: constants gathered from float64 then cast, like guided-diffusion's .float()
    c32 = s.gather("sqrt_recipm1_alphas_cumprod", t, tf.zeros((3, 1, 1, 1), tf.float32))
    assert c32.dtype == tf.float32 and c32.shape == (3, 1, 1, 1)
    np.testing.assert_array_equal(np.asarray(c32).ravel(),
                                  s.sqrt_recipm1_alphas_cumprod[t].astype(np.float32))
    with pytest.raises(ValueError, match="unknown schedule constant"):
        s.gather("nope", t, xt)
