"""Gaussian diffusion constants and the closed-form steps DiffLoss needs.

Constants are computed in float64 NumPy exactly as guided-diffusion does
(``gaussian_diffusion.py``) and cast to the tensor's dtype when gathered, so a
float32 computation rounds like the reference (which indexes the float64 arrays
and calls ``.float()``).

Notation (DDPM): β_t, α_t = 1 − β_t, ᾱ_t = ∏_{s≤t} α_s, ᾱ_{−1} = 1, t = 0 … T−1.

* forward: ``q_sample`` x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε
* ε → x₀: ``predict_x0_from_eps`` x̂₀ = x_t / √ᾱ_t − c_t ε̂ with c_t = √(1/ᾱ_t − 1)
* posterior q(x_{t−1} | x_t, x₀): mean ``coef1 · x₀ + coef2 · x_t``, variance β̃_t

>>> from tfrestore.diffusion import DiffusionSchedule
>>> s = DiffusionSchedule()  # linear, 1000 steps (ADM)
>>> round(float(s.betas[0]), 6), round(float(s.betas[-1]), 6)
(0.0001, 0.02)
>>> [round(float(s.sqrt_recipm1_alphas_cumprod[t]), 2) for t in (0, 500, 999)]
[0.01, 3.44, 157.41]
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfrestore.utils.validation import refuse_renamed

__all__ = ["DiffusionSchedule", "linear_betas", "cosine_betas"]


def linear_betas(num_timesteps=1000):
    """guided-diffusion's linear schedule (scaled so any T matches T = 1000)."""
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps=1000, max_beta=0.999):
    """Nichol & Dhariwal's cosine schedule (as in guided-diffusion)."""

    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
        for i in range(num_timesteps)
    ]
    return np.array(betas, dtype=np.float64)


_SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}

#: Former argument names (``schedule`` is the learning-rate schedule in training configs).
_RENAMED = {"schedule": "beta_schedule"}


class DiffusionSchedule:
    """Noise schedule with float64 constants and TF helpers for one-step algebra.

    Args:
        num_timesteps: int. Number of diffusion steps T (1000 for ADM).
        beta_schedule: ``"linear"`` (ADM ImageNet models) or ``"cosine"``: how the
            noise variances β_t grow with t (guided-diffusion's ``noise_schedule``;
            formerly ``schedule``, which raises ``TypeError``: in tfrestore configs
            ``schedule`` is the learning-rate schedule).

    Attributes (float64 NumPy arrays of length T): ``betas``, ``alphas``,
    ``alphas_cumprod``, ``alphas_cumprod_prev``, ``sqrt_alphas_cumprod``,
    ``sqrt_one_minus_alphas_cumprod``, ``sqrt_recip_alphas_cumprod``,
    ``sqrt_recipm1_alphas_cumprod`` (= c_t), ``sqrt_alphas_cumprod_prev``,
    ``sqrt_one_minus_alphas_cumprod_prev``, ``posterior_variance``,
    ``posterior_log_variance_clipped``, ``posterior_mean_coef1``,
    ``posterior_mean_coef2``, ``snr`` (ᾱ_t / (1 − ᾱ_t)).
    """

    def __init__(self, num_timesteps=1000, beta_schedule="linear", **kwargs):
        refuse_renamed(kwargs, _RENAMED, "DiffusionSchedule", allow_other=False)
        if beta_schedule not in _SCHEDULES:
            raise ValueError(
                f"`beta_schedule` must be one of {sorted(_SCHEDULES)}, got {beta_schedule!r}."
            )
        if not isinstance(num_timesteps, (int, np.integer)) or num_timesteps < 2:
            raise ValueError(f"`num_timesteps` must be an integer >= 2, got {num_timesteps!r}.")
        self.num_timesteps = int(num_timesteps)
        self.beta_schedule = beta_schedule
        betas = _SCHEDULES[beta_schedule](self.num_timesteps)
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.sqrt_alphas_cumprod_prev = np.sqrt(self.alphas_cumprod_prev)
        self.sqrt_one_minus_alphas_cumprod_prev = np.sqrt(1.0 - self.alphas_cumprod_prev)
        self.posterior_variance = (
            betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        )
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = (
            betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        )
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas) / (1.0 - self.alphas_cumprod)
        )
        self.snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)

    def __repr__(self):
        return (
            f"DiffusionSchedule(num_timesteps={self.num_timesteps}, "
            f"beta_schedule={self.beta_schedule!r})"
        )

    # ------------------------------------------------------------ gathering
    def gather(self, name, t, like):
        """``self.<name>[t]`` cast to ``like.dtype`` and shaped to broadcast
        against ``like`` (``(B, 1, 1, 1)`` for an NHWC batch)."""
        values = getattr(self, name, None)
        if not (isinstance(values, np.ndarray) and values.shape == (self.num_timesteps,)):
            raise ValueError(f"unknown schedule constant {name!r}")
        out = tf.gather(tf.constant(values, tf.float64), tf.cast(t, tf.int32))
        out = tf.cast(out, like.dtype)
        rank = like.shape.rank if like.shape.rank is not None else 4
        return tf.reshape(out, [-1] + [1] * (rank - 1))

    # --------------------------------------------------------------- steps
    def q_sample(self, x0, t, noise):
        """x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε."""
        x0 = tf.convert_to_tensor(x0)
        noise = tf.cast(noise, x0.dtype)
        return (
            self.gather("sqrt_alphas_cumprod", t, x0) * x0
            + self.gather("sqrt_one_minus_alphas_cumprod", t, x0) * noise
        )

    def predict_x0_from_eps(self, x_t, t, eps):
        """x̂₀ = x_t / √ᾱ_t − √(1/ᾱ_t − 1) · ε̂ (no clipping: clipping zeroes gradients)."""
        x_t = tf.convert_to_tensor(x_t)
        return (
            self.gather("sqrt_recip_alphas_cumprod", t, x_t) * x_t
            - self.gather("sqrt_recipm1_alphas_cumprod", t, x_t) * tf.cast(eps, x_t.dtype)
        )

    def predict_eps_from_x0(self, x_t, t, x0):
        """Inverse of :meth:`predict_x0_from_eps`."""
        x_t = tf.convert_to_tensor(x_t)
        return (
            self.gather("sqrt_recip_alphas_cumprod", t, x_t) * x_t - tf.cast(x0, x_t.dtype)
        ) / self.gather("sqrt_recipm1_alphas_cumprod", t, x_t)

    def posterior_mean(self, x0, x_t, t):
        """Mean of q(x_{t−1} | x_t, x₀) = coef1_t · x₀ + coef2_t · x_t."""
        x_t = tf.convert_to_tensor(x_t)
        return (
            self.gather("posterior_mean_coef1", t, x_t) * tf.cast(x0, x_t.dtype)
            + self.gather("posterior_mean_coef2", t, x_t) * x_t
        )

    def posterior_variance_at(self, t, like):
        """(β̃_t, log β̃_t clipped) gathered like :meth:`gather`."""
        return (
            self.gather("posterior_variance", t, like),
            self.gather("posterior_log_variance_clipped", t, like),
        )

    def predict_x0_from_prev(self, x_prev, t, noise):
        """x̂̂₀ = (x_{t−1} − √(1 − ᾱ_{t−1}) · ε) / √ᾱ_{t−1} (DiffLoss eq. 10; ᾱ_{−1} = 1)."""
        x_prev = tf.convert_to_tensor(x_prev)
        return (
            x_prev - self.gather("sqrt_one_minus_alphas_cumprod_prev", t, x_prev)
            * tf.cast(noise, x_prev.dtype)
        ) / self.gather("sqrt_alphas_cumprod_prev", t, x_prev)
