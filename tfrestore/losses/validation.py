"""Input validation shared by all tfrestore losses and metrics.

Checks that can be decided from static shapes raise ``ValueError`` at trace time.
Checks that need values (finiteness, value range, dynamic shapes) raise a Python
``ValueError`` when running eagerly and otherwise add a ``tf.debugging`` op whose
``InvalidArgumentError`` message names the argument and the expected form.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = [
    "check_image",
    "check_image_pair",
    "check_per_sample",
    "check_raw_dtype",
    "check_range",
    "check_min_size",
]


def _prefix(loss_name):
    return f"{loss_name}: " if loss_name else ""


def check_raw_dtype(x, arg, loss_name=None):
    """Reject integer/bool/string inputs before Keras silently casts them."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return
    dtype = tf.as_dtype(dtype) if not isinstance(dtype, tf.DType) else dtype
    if not dtype.is_floating:
        raise TypeError(
            f"{_prefix(loss_name)}`{arg}` must be a floating-point image tensor "
            f"(float16/bfloat16/float32/float64) with values in the documented range, "
            f"got dtype {dtype.name}. Convert uint8 images with "
            f"`tf.image.convert_image_dtype(x, tf.float32)` (maps 0..255 to [0, 1])."
        )


def check_image(x, arg, expected_channels=None, check_finite=True, loss_name=None, rank=4):
    """Validate a single NHWC image batch; returns ``x`` (with checks attached)."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        check_raw_dtype(x, arg, loss_name)
    if x.shape.rank is not None and x.shape.rank != rank:
        raise ValueError(
            f"{_prefix(loss_name)}`{arg}` must be a rank-{rank} NHWC image batch "
            f"(batch, height, width, channels), got shape {tuple(x.shape)} "
            f"(rank {x.shape.rank})."
        )
    if expected_channels is not None and x.shape.rank == rank:
        c = x.shape[-1]
        if c is not None and c != expected_channels:
            raise ValueError(
                f"{_prefix(loss_name)}`{arg}` must have {expected_channels} channels "
                f"(NHWC, channels last), got shape {tuple(x.shape)}. Is the tensor "
                f"channels-first (NCHW)?" if c not in (1, 3) else
                f"{_prefix(loss_name)}`{arg}` must have {expected_channels} channels "
                f"(NHWC, channels last), got {c} channels (shape {tuple(x.shape)})."
            )
    if check_finite:
        x = _check_finite(x, arg, loss_name)
    return x


def _check_finite(x, arg, loss_name):
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(x))):
            raise ValueError(
                f"{_prefix(loss_name)}`{arg}` contains NaN or Inf values; the loss "
                f"would propagate them into the weights. Check the data pipeline or "
                f"the model output (e.g. a diverging learning rate)."
            )
        return x
    # One scalar check beside the data path instead of CheckNumerics on the tensor
    # itself: a sum is the cheapest full pass (half the time of CheckNumerics), and
    # CheckNumerics' gradient checks the incoming gradient again (together 4-10 % of
    # an LPIPS step). A sum is NaN/Inf iff an entry is, unless finite float32 values
    # near 3e38 overflow it; 16-bit inputs are summed in float32, which cannot overflow.
    total = x if x.dtype in (tf.float32, tf.float64) else tf.cast(x, tf.float32)
    check = tf.debugging.check_numerics(
        tf.reduce_sum(total),
        f"{_prefix(loss_name)}`{arg}` contains NaN or Inf values (or values so large "
        f"that their sum overflows)",
    )
    with tf.control_dependencies([check]):
        return tf.identity(x)


def check_image_pair(
    y_true,
    y_pred,
    expected_channels=None,
    same_shape=True,
    check_finite=True,
    loss_name=None,
):
    """Validate ``(y_true, y_pred)`` NHWC image batches; returns both tensors."""
    y_true = check_image(y_true, "y_true", expected_channels, check_finite, loss_name)
    y_pred = check_image(y_pred, "y_pred", expected_channels, check_finite, loss_name)
    st, sp = y_true.shape, y_pred.shape
    if same_shape:
        if st.rank is not None and sp.rank is not None and not st.is_compatible_with(sp):
            raise ValueError(
                f"{_prefix(loss_name)}`y_true` and `y_pred` must have the same shape, "
                f"got y_true {tuple(st)} and y_pred {tuple(sp)}."
            )
        if not (st.is_fully_defined() and sp.is_fully_defined()):
            if tf.executing_eagerly():  # pragma: no cover - eager shapes are static
                pass
            else:
                with tf.control_dependencies(
                    [
                        tf.debugging.assert_equal(
                            tf.shape(y_true),
                            tf.shape(y_pred),
                            message=f"{_prefix(loss_name)}`y_true` and `y_pred` must "
                            f"have the same shape",
                        )
                    ]
                ):
                    y_pred = tf.identity(y_pred)
    else:
        # Distribution losses may compare different spatial sizes, never batches/channels.
        for axis, what in ((0, "batch size"), (3, "number of channels")):
            if st.rank == 4 and sp.rank == 4 and None not in (st[axis], sp[axis]):
                if st[axis] != sp[axis]:
                    raise ValueError(
                        f"{_prefix(loss_name)}`y_true` and `y_pred` must have the same "
                        f"{what}, got y_true {tuple(st)} and y_pred {tuple(sp)}."
                    )
    return y_true, y_pred


def check_min_size(x, min_height, min_width, arg, what, loss_name=None):
    """Raise if the spatial size of ``x`` is smaller than ``(min_height, min_width)``."""
    h, w = x.shape[1], x.shape[2]
    if (h is not None and h < min_height) or (w is not None and w < min_width):
        raise ValueError(
            f"{_prefix(loss_name)}`{arg}` is {h}x{w} pixels, smaller than {what} "
            f"({min_height}x{min_width}). Use larger crops or a smaller setting."
        )
    return x


def check_range(x, low, high, arg, loss_name=None, hint=""):
    """Check ``low <= x <= high`` (eager: ValueError; graph: assert op)."""
    if tf.executing_eagerly():
        lo, hi = float(tf.reduce_min(x)), float(tf.reduce_max(x))
        if lo < low or hi > high:
            raise ValueError(
                f"{_prefix(loss_name)}`{arg}` must have values in [{low}, {high}], got "
                f"min {lo:.4g}, max {hi:.4g}. {hint}".rstrip()
            )
        return x
    with tf.control_dependencies(
        [
            tf.debugging.assert_greater_equal(
                tf.reduce_min(x), tf.cast(low, x.dtype),
                message=f"{_prefix(loss_name)}`{arg}` must have values in [{low}, {high}]. {hint}",
            ),
            tf.debugging.assert_less_equal(
                tf.reduce_max(x), tf.cast(high, x.dtype),
                message=f"{_prefix(loss_name)}`{arg}` must have values in [{low}, {high}]. {hint}",
            ),
        ]
    ):
        return tf.identity(x)


def check_per_sample(values, y_pred, loss_name=None):
    """Make sure a loss produced per-sample values of shape ``(B,)``."""
    values = tf.convert_to_tensor(values)
    if values.shape.rank == 0:
        raise ValueError(
            f"{_prefix(loss_name)}compute() returned a scalar; tfrestore losses must "
            f"return per-sample values of shape (B,) so that Keras can apply "
            f"sample weights and MirroredStrategy scaling."
        )
    if values.shape.rank is not None and values.shape.rank > 1:
        values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
    return values
