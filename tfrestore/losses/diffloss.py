"""DiffLoss (Tan & Zhao, 2024): a frozen diffusion UNet as a training constraint.

Both images are diffused to the same random step ``t`` with a shared noise ε
(x_t = √ᾱ_t x + √(1−ᾱ_t) ε), the frozen ε-predicting UNet (ADM 256×256
unconditional by default) runs on both, and the restored branch is pulled towards
the clean one (under ``stop_gradient``) in reconstruction space and in the
bottleneck ("h-space") features. With ``n`` the per-sample mean of squares:

* ``mode="paper"``: ``L = w(t)·n(x̂₀ − ẑ₀) + n(x̂̂₀ − ẑ̂̂₀) + λ·n(h_x − h_z)``, λ = 0.01;
* ``mode="eps"`` (released code): ``L = n(ε̂_x − ε̂_z) + λ·n(h_x − h_z)``, λ = 1e-3;
* ``mode="eps_xprev"``: ``L = n(ε̂_x − ε̂_z) + n(x̂_{t−1} − ẑ_{t−1}) + λ·n(h)``, λ = 0.01.

``w(t) = min(1, SNR_t)`` by default bounds the x̂₀ term at large ``t``. The paper's
outer weight γ = 0.001 and pixel term are written ``MSE() + 0.001 * DiffLoss()``.
Each call runs the UNet twice at the input resolution: use 256×256 crops (H, W
multiples of 32), a GPU, and ``recompute=True`` and/or ``mixed_float16``. Build
the loss inside ``strategy.scope()`` (else the first call under the strategy
raises ``OutsideScopeError``); its random stream (t, ε) is saved with the model.
See docs/diffloss.md for the equations, the t-weighting and the released code.

Example (tiny random UNet; real use: ``DiffLoss()`` loads the converted
``adm_256_uncond`` weights, see :func:`tfrestore.diffusion.resolve_adm_weights`):
>>> import numpy as np
>>> from tfrestore.losses import MSE, DiffLoss
>>> loss = DiffLoss(unet="adm_tiny", weights=None)
>>> y = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
>>> loss.call(y, y).numpy().tolist()  # identical images -> 0
[0.0, 0.0]
>>> total = MSE() + 0.001 * DiffLoss(unet="adm_tiny", weights=None)
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf

from tfrestore.diffusion.schedule import DiffusionSchedule
from tfrestore.losses import _counter
from tfrestore.losses.base import RestorationLoss
from tfrestore.utils import rng, validation
from tfrestore.utils.hidden import Hidden

__all__ = ["DiffLoss"]

_MODES = ("paper", "eps", "eps_xprev")
_DEFAULT_LAMBDA = {"paper": 0.01, "eps": 1e-3, "eps_xprev": 0.01}
_WEIGHTINGS = ("min_snr", "alpha_bar", "none")
_CRITERIA = ("mse", "l2_norm")
#: Former argument names (a config's top-level ``schedule:`` is the learning-rate schedule).
_RENAMED = {"schedule": "beta_schedule"}


def _is_serialized_keras_object(d):
    return isinstance(d, dict) and "class_name" in d and "config" in d


@keras.saving.register_keras_serializable(package="tfrestore")
class DiffLoss(RestorationLoss):
    """Diffusion-model constraint loss (DiffLoss), per-sample ``(B,)`` values.

    Inputs are NHWC RGB images in ``data_range`` with H, W multiples of 32 for
    the ADM UNet; prediction and target have the same shape. See docs/diffloss.md.

    Args:
        mode: str. ``"paper"`` (default: x̂₀, x̂̂₀ and h terms), ``"eps"`` (the
            released code: ε̂ and h) or ``"eps_xprev"`` (ε̂, x̂_{t−1} and h).
        unet: str, dict or ``keras.Model``. A preset (``"adm_256_uncond"``,
            default, or ``"adm_tiny"``), a dict of ADM hyper-parameters
            (guided-diffusion flags), or a model mapping ``(x_t, t)`` to ``(out,
            h)`` with ε̂ in the first image channels of ``out`` (a functional model
            with two inputs is called as ``unet([x_t, t])``, any other as
            ``unet(x_t, t)``). A model is frozen and used as is; ``from_config``
            restores its weights only when ``weights`` is a path.
        weights: str or None. ``"default"`` (the preset's official weights:
            path → ``$TFRESTORE_WEIGHTS_DIR`` → Keras cache → download and
            conversion; for a model instance: keep its weights), None (random
            init, tests), or a path (``.weights.h5``, ``.npz``, or a PyTorch
            ``.pt``/``.pth`` converted on load).
        lambda_h: float >= 0 or None. h-space weight λ; None → 0.01 (``"paper"``,
            ``"eps_xprev"``) or 1e-3 (``"eps"``).
        t_range: ``(t_min, t_max)`` or None. Inclusive range of the sampled steps,
            ``0 <= t_min <= t_max < num_timesteps``. Defaults to all steps.
        t_weighting: str. Weight ``w(t)`` of the x̂₀ term: ``"min_snr"`` (default,
            ``min(1, SNR_t)``), ``"alpha_bar"`` (``ᾱ_t``) or ``"none"`` (the
            literal paper; then restrict ``t_range``).
        criterion: str. ``"mse"`` (default, per-sample mean of squares) or
            ``"l2_norm"`` (Euclidean norm of the difference); ``"l2"`` is refused
            as ambiguous.
        gradient_through_unet: bool. False reproduces the released code's
            ``torch.no_grad()``: values but exactly zero gradient (ablation only).
            Defaults to True.
        data_range: float or ``(low, high)``. Range of the inputs (``r`` means
            ``[0, r]``), mapped to the UNet's [−1, 1]; a ``y_true`` more than half
            this range outside it raises. Defaults to 1.0.
        num_timesteps: int. Diffusion steps the UNet was trained with (1000).
        beta_schedule: str. Its noise (β_t) schedule, ``"linear"`` for ADM or
            ``"cosine"`` (:class:`~tfrestore.diffusion.DiffusionSchedule`). Formerly
            ``schedule``, which raises ``TypeError`` (a config's ``schedule:`` is the
            learning-rate schedule); models saved with ``"schedule"`` still load.
        recompute: bool. Build the ADM UNet with ``tf.recompute_grad`` per block
            (less activation memory, ~1 extra forward). Defaults to False.
        seed: int. Seed of t and ε (with a per-call counter saved with the model).
    """

    def __init__(
        self,
        mode="paper",
        unet="adm_256_uncond",
        weights="default",
        lambda_h=None,
        t_range=None,
        t_weighting="min_snr",
        criterion="mse",
        gradient_through_unet=True,
        data_range=1.0,
        num_timesteps=1000,
        beta_schedule="linear",
        recompute=False,
        seed=0,
        name="diff_loss",
        **kwargs,
    ):
        validation.refuse_renamed(kwargs, _RENAMED, "DiffLoss")
        super().__init__(name=name, **kwargs)
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {list(_MODES)}, got {mode!r}.")
        if t_weighting not in _WEIGHTINGS:
            raise ValueError(
                f"`t_weighting` must be one of {list(_WEIGHTINGS)}, got {t_weighting!r}."
            )
        if criterion not in _CRITERIA:
            hint = (
                " (ambiguous here: 'mse' is the mean of squares, 'l2' in the other "
                "losses; 'l2_norm' the Euclidean norm)" if criterion == "l2" else ""
            )
            raise ValueError(
                f"`criterion` must be one of {list(_CRITERIA)}, got {criterion!r}{hint}."
            )
        self.mode = mode
        self.lambda_h = float(_DEFAULT_LAMBDA[mode] if lambda_h is None else lambda_h)
        if self.lambda_h < 0:
            raise ValueError(f"`lambda_h` must be >= 0, got {lambda_h!r}.")
        self.schedule = DiffusionSchedule(num_timesteps, beta_schedule)
        self.num_timesteps, self.beta_schedule = int(num_timesteps), beta_schedule
        if t_range is None:
            t_range = (0, self.num_timesteps - 1)
        if (
            not isinstance(t_range, (list, tuple)) or len(t_range) != 2
            or not all(isinstance(v, numbers.Integral) for v in t_range)
            or not 0 <= t_range[0] <= t_range[1] < self.num_timesteps
        ):
            raise ValueError(
                f"`t_range` must be integers (t_min, t_max) with 0 <= t_min <= t_max <= "
                f"{self.num_timesteps - 1}, got {t_range!r}."
            )
        self.t_range = [int(t_range[0]), int(t_range[1])]
        self.t_weighting, self.criterion = t_weighting, criterion
        self.gradient_through_unet = bool(gradient_through_unet)
        self.data_range = list(validation.as_range(data_range, owner=name))
        self.range_fix = "or set `data_range=(low, high)` to the range of your images"
        self.recompute = bool(recompute)
        if not isinstance(seed, numbers.Integral):
            raise TypeError(f"`seed` must be an integer, got {seed!r}.")
        self.seed = int(seed)
        self.weights = None if weights is None else (
            weights if weights == "default" else str(weights)
        )
        self.unet_spec = self._build_unet(unet, self.weights)
        if isinstance(unet, keras.Model) and self.weights == "default":
            # the instance's own weights cannot be referenced from a config
            self.weights = None
        # One stream position per call, shared by all replicas (only replica 0's
        # update is kept, all replicas read the same value); saved with the model
        # so that a resumed run continues the stream instead of replaying it.
        self._step = _counter.new_counter("diffloss_rng_step")

    # ------------------------------------------------------------ the UNet
    def _build_unet(self, unet, weights):
        from tfrestore.diffusion.config import adm_config
        from tfrestore.diffusion.pretrained import get_adm_unet
        from tfrestore.diffusion.unet import ADMUNet

        if isinstance(unet, keras.Model):
            model = unet
            if weights not in (None, "default"):
                if isinstance(model, ADMUNet):
                    from tfrestore.diffusion.adm_weights import load_adm_weights

                    load_adm_weights(model, weights)
                else:
                    model.load_weights(weights)
            # Any model returning (out, h) works; its config is only needed by
            # get_config (model saving), so it is serialized there, not here.
            spec = dict(model.hparams) if isinstance(model, ADMUNet) else None
        elif _is_serialized_keras_object(unet):
            model = keras.saving.deserialize_keras_object(unet)
            if weights not in (None, "default"):
                model.load_weights(weights)
            spec = unet
        elif isinstance(unet, (str, dict)):
            if isinstance(unet, str):
                adm_config(unet)  # unknown preset -> clear ValueError
                spec = unet
            else:
                spec = adm_config(unet)
            model = get_adm_unet(spec, weights=weights, recompute=self.recompute)
        else:
            raise TypeError(
                "`unet` must be an ADM preset name, a dict of ADM hyper-parameters or a "
                f"keras.Model returning (out, h); got {type(unet).__name__}."
            )
        model.trainable = False
        self._holder = Hidden(model)
        self.expected_channels = int(getattr(model, "in_channels", 3))
        self._downsampling = getattr(model, "downsampling_factor", None)
        self._functional_two_inputs = (
            not isinstance(model, ADMUNet) and len(getattr(model, "inputs", None) or []) == 2
        )
        return spec

    def _unet(self, x_t, t):
        model = self._holder.value
        if self._functional_two_inputs:
            out, h = model([x_t, t], training=False)
        else:
            out, h = model(x_t, t, training=False)
        return tf.cast(out, tf.float32), tf.cast(h, tf.float32)

    # ---------------------------------------------------------- validation
    def validate(self, y_true, y_pred):
        y_true, y_pred = super().validate(y_true, y_pred)
        f = self._downsampling
        if f:
            for arg, x in (("y_true", y_true), ("y_pred", y_pred)):
                h, w = x.shape[1], x.shape[2]
                if (h is not None and h % f) or (w is not None and w % f):
                    raise ValueError(
                        f"{self.name}: `{arg}` is {h}x{w} pixels; the diffusion UNet "
                        f"downsamples by {f}, so height and width must be multiples of {f} "
                        f"(e.g. 256x256 crops for adm_256_uncond). Crop or pad the images."
                    )
            if not (y_pred.shape[1] is not None and y_pred.shape[2] is not None):
                shape = tf.shape(y_pred)
                with tf.control_dependencies([tf.debugging.assert_equal(
                    tf.math.floormod(shape[1:3], f), 0,
                    message=f"{self.name}: height and width must be multiples of {f}",
                )]):
                    y_pred = tf.identity(y_pred)
        return y_true, y_pred

    # ------------------------------------------------------------- sampling
    def _replica_offset(self, batch):
        """Global row of this replica's first sample (0 without a strategy)."""
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return tf.constant(0, tf.int64)
        sizes = tf.cast(ctx.all_gather(tf.reshape(batch, [1]), axis=0), tf.int64)
        rid = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
        before = tf.range(tf.shape(sizes)[0]) < rid
        return tf.reduce_sum(tf.where(before, sizes, tf.zeros_like(sizes)))

    def sample(self, like):
        """Draw ``(t, noise)`` for a batch shaped like ``like`` and advance the
        call counter: t int32 ``(B,)`` uniform in ``t_range``, noise N(0, I) float32.

        Values depend only on ``(seed, counter, global sample index)``, so
        eager, graph, XLA and every replica of a strategy agree."""
        _counter.check_in_scope(self._step, self.name)
        shape = tf.shape(like)
        offset = self._replica_offset(shape[0])
        step = tf.convert_to_tensor(self._step.value, tf.int64)
        t = rng.randint(shape[:1], self.t_range[0], self.t_range[1] + 1, self.seed, step,
                        stream=1, row_offset=offset)
        noise = rng.normal(shape, self.seed, step, stream=2, row_offset=offset)
        self._step.assign_add(1)
        return t, noise

    # ---------------------------------------------------------------- terms
    def _to_model_range(self, x):
        lo, hi = self.data_range
        return (x - lo) * (2.0 / (hi - lo)) - 1.0

    def _n(self, d):
        axes = list(range(1, d.shape.rank))
        if self.criterion == "mse":
            return tf.reduce_mean(tf.square(d), axis=axes)
        return tf.sqrt(tf.reduce_sum(tf.square(d), axis=axes) + 1e-12)

    def t_weight(self, t):
        """Weight of the x̂₀ term at steps ``t`` (float32 ``(B,)``)."""
        if self.t_weighting == "none":
            return tf.ones_like(tf.cast(t, tf.float32))
        table = (np.minimum(1.0, self.schedule.snr) if self.t_weighting == "min_snr"
                 else self.schedule.alphas_cumprod)
        return tf.cast(tf.gather(tf.constant(table, tf.float64), t), tf.float32)

    def terms(self, y_true, y_pred, t, noise):
        """Per-sample terms for given steps ``t`` (B,) and noise (like ``y_pred``):
        a dict with ``"total"`` (the loss) and the individual terms of the mode
        (``x0``, ``x0_hat_hat``, ``eps``, ``x_prev``, ``h``; unweighted)."""
        s = self.schedule
        x = tf.stop_gradient(self._to_model_range(tf.cast(y_true, tf.float32)))
        z = self._to_model_range(tf.cast(y_pred, tf.float32))
        if not self.gradient_through_unet:
            z = tf.stop_gradient(z)  # released code: the whole block under no_grad
        t = tf.cast(t, tf.int32)
        noise = tf.cast(noise, tf.float32)
        x_t = s.q_sample(x, t, noise)
        z_t = s.q_sample(z, t, noise)
        out_x, h_x = self._unet(x_t, t)
        out_x, h_x = tf.stop_gradient(out_x), tf.stop_gradient(h_x)
        out_z, h_z = self._unet(z_t, t)
        c = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
        eps_x, eps_z = out_x[..., :c], out_z[..., :c]
        terms = {"h": self._n(h_x - h_z)}
        if self.mode == "eps":
            terms["eps"] = self._n(eps_x - eps_z)
            total = terms["eps"] + self.lambda_h * terms["h"]
        else:
            x0_x = s.predict_x0_from_eps(x_t, t, eps_x)
            x0_z = s.predict_x0_from_eps(z_t, t, eps_z)
            prev_x = s.posterior_mean(x0_x, x_t, t)
            prev_z = s.posterior_mean(x0_z, z_t, t)
            if self.mode == "paper":
                xx_x = s.predict_x0_from_prev(prev_x, t, noise)
                xx_z = s.predict_x0_from_prev(prev_z, t, noise)
                terms["x0"] = self._n(x0_x - x0_z)
                terms["x0_hat_hat"] = self._n(xx_x - xx_z)
                total = (self.t_weight(t) * terms["x0"] + terms["x0_hat_hat"]
                         + self.lambda_h * terms["h"])
            else:
                terms["eps"] = self._n(eps_x - eps_z)
                terms["x_prev"] = self._n(prev_x - prev_z)
                total = terms["eps"] + terms["x_prev"] + self.lambda_h * terms["h"]
        terms["total"] = total
        return terms

    def compute(self, y_true, y_pred):
        t, noise = self.sample(tf.cast(y_pred, tf.float32))
        return tf.cast(self.terms(y_true, y_pred, t, noise)["total"], y_pred.dtype)

    # -------------------------------------------------------------- state
    @property
    def step(self):
        """Calls so far (the position of the ``(seed, counter)`` random stream)."""
        return int(keras.ops.convert_to_numpy(self._step))

    def _state_variables(self):
        return {"rng_step": self._step}

    def save_own_variables(self, store):
        _counter.save(store, self._state_variables())

    def load_own_variables(self, store):
        _counter.load(store, self._state_variables())

    # ------------------------------------------------------------- config
    def _unet_config(self):
        if self.unet_spec is not None:
            return self.unet_spec
        model = self._holder.value
        try:
            return keras.saving.serialize_keras_object(model)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ValueError(
                f"{self.name}: the `unet` model {type(model).__name__} cannot be serialized "
                f"({type(exc).__name__}: {first}), so this loss has no config "
                f"(get_config / model.save of a model compiled with it). Training works "
                f"without it; to save, give {type(model).__name__} a get_config() and "
                f"register it with @keras.saving.register_keras_serializable(), or save "
                f"the restorer with save_weights()."
            ) from exc

    @classmethod
    def from_config(cls, config):
        # configs saved before the rename store the noise schedule as "schedule"
        return super().from_config(validation.renamed_config(config, _RENAMED))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "unet": self._unet_config(),
                "weights": self.weights,
                "lambda_h": self.lambda_h,
                "t_range": list(self.t_range),
                "t_weighting": self.t_weighting,
                "criterion": self.criterion,
                "gradient_through_unet": self.gradient_through_unet,
                "data_range": list(self.data_range),
                "num_timesteps": self.num_timesteps,
                "beta_schedule": self.beta_schedule,
                "recompute": self.recompute,
                "seed": self.seed,
            }
        )
        return config
