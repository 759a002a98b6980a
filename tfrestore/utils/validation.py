"""Input validation shared by all tfrestore losses and metrics.

Checks that can be decided from static shapes raise ``ValueError`` at trace time.
Checks that need values (finiteness, value range, dynamic shapes) raise a Python
``ValueError`` when running eagerly and otherwise add a ``tf.debugging`` op whose
``InvalidArgumentError`` message names the argument and the expected form.
"""

from __future__ import annotations

import functools
import numbers

import tensorflow as tf

__all__ = [
    "check_choice",
    "check_image",
    "check_image_pair",
    "check_per_sample",
    "check_sample_weight",
    "check_raw_dtype",
    "check_range",
    "check_values",
    "check_min_size",
    "check_noise_level",
    "as_range",
    "static_hw",
    "refuse_renamed",
    "refuses_renamed",
    "renamed_config",
    "RANGE_TOLERANCE",
]


def refuse_renamed(kwargs, renamed, owner, *, allow_other=True):
    """Raise ``TypeError`` if ``kwargs`` holds an argument name that was renamed.

    ``renamed`` maps old names to new ones; the message names the new one. With
    ``allow_other=False`` any other leftover keyword is refused as Python would.

    >>> refuse_renamed({"weights": [1.0]}, {"weights": "loss_weights"}, "WeightedSum")
    Traceback (most recent call last):
    ...
    TypeError: WeightedSum: `weights` was renamed `loss_weights` (in tfrestore ...
    """
    for old, new in renamed.items():
        if old in kwargs:
            note = ""
            if old == "weights":
                note = " (in tfrestore `weights` only means pretrained weights)"
            raise TypeError(f"{owner}: `{old}` was renamed `{new}`{note}.")
    if not allow_other and kwargs:
        raise TypeError(f"{owner}() got an unexpected keyword argument {next(iter(kwargs))!r}")


def refuses_renamed(renamed, owner=None):
    """Decorator: the function refuses the old keyword names in ``renamed`` (old -> new)
    with :func:`refuse_renamed`'s ``TypeError`` naming the new one. Its signature (as
    ``inspect.signature`` and ``help`` show it) stays the function's own; the map is
    kept as ``renamed_arguments`` (for config checkers that read the signature).

    >>> @refuses_renamed({"noise_level": "sigma"})
    ... def denoise(x, sigma=None):
    ...     return sigma
    >>> denoise(1, sigma=2)
    2
    >>> denoise(1, noise_level=2)
    Traceback (most recent call last):
    ...
    TypeError: denoise: `noise_level` was renamed `sigma`.
    >>> denoise.renamed_arguments
    {'noise_level': 'sigma'}
    """

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            refuse_renamed(
                {k: None for k in kwargs if k in renamed}, renamed, owner or fn.__name__
            )
            return fn(*args, **kwargs)

        wrapper.renamed_arguments = dict(renamed)
        return wrapper

    return decorate


def renamed_config(config, renamed):
    """A copy of a saved ``config`` with old argument names mapped to the new ones, so
    ``.keras`` files written before a rename still load (``from_config``).

    >>> renamed_config({"weights": [1.0], "name": "x"}, {"weights": "loss_weights"})
    {'name': 'x', 'loss_weights': [1.0]}
    """
    config = dict(config)
    for old, new in renamed.items():
        if old in config:
            value = config.pop(old)
            config.setdefault(new, value)
    return config


def _prefix(loss_name):
    return f"{loss_name}: " if loss_name else ""


def as_range(data_range, arg="data_range", owner=None):
    """``(low, high)`` floats of a ``data_range``: a number ``r`` means ``[0, r]``,
    a pair is ``(low, high)``; None stays None (unchecked).

    >>> as_range(255), as_range((-1, 1)), as_range(None)
    ((0.0, 255.0), (-1.0, 1.0), None)
    """
    if data_range is None:
        return None
    if isinstance(data_range, (list, tuple)) and len(data_range) == 2:
        try:
            low, high = float(data_range[0]), float(data_range[1])
        except (TypeError, ValueError):
            low = high = float("nan")
    elif isinstance(data_range, numbers.Real) and not isinstance(data_range, bool):
        low, high = 0.0, float(data_range)
    else:
        low = high = float("nan")
    if not low < high or high - low == float("inf"):
        raise ValueError(
            f"{_prefix(owner)}`{arg}` must be a positive number r (images in [0, r]) or a "
            f"pair (low, high) with low < high, got {data_range!r}."
        )
    return low, high
def check_choice(value, choices, arg, hint=""):
    """Raise ``ValueError`` naming ``arg`` unless ``value`` is one of ``choices``.

    >>> check_choice("mean", ("mean", "sum"), "channel_reduction")
    'mean'
    """
    if value not in choices:
        raise ValueError(f"`{arg}` must be one of {tuple(choices)}, got {value!r}.{hint}")
    return value


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


def check_image(x, arg, expected_channels=None, check_finite=True, loss_name=None, rank=4,
                data_range=None, range_fix=""):
    """Validate a single NHWC image batch; returns ``x`` (with checks attached).

    ``data_range`` (``r`` for [0, r], or ``(low, high)``) additionally rejects values far
    outside it (see :func:`check_values`).
    """
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
    return check_values(x, arg, check_finite, data_range, loss_name, range_fix)


#: Values up to this fraction of the range outside it are accepted (resampling
#: and colour augmentation overshoot slightly); 0..255 and [-1, 1] images given
#: to a [0, 1] loss are far beyond it.
RANGE_TOLERANCE = 0.5


def _nonfinite_message(arg, loss_name):
    return (
        f"{_prefix(loss_name)}`{arg}` contains NaN or Inf values; the loss "
        f"would propagate them into the weights. Check the data pipeline or "
        f"the model output (e.g. a diverging learning rate)."
    )


def _range_message(arg, loss_name, data_range, fix, lo=None, hi=None):
    low, high = (float(v) for v in data_range)
    margin = RANGE_TOLERANCE * (high - low)
    got = f"has values in [{lo:.4g}, {hi:.4g}]:" if lo is not None else "has values"
    return (
        f"{_prefix(loss_name)}`{arg}` {got} far outside the range [{low:g}, {high:g}] "
        f"this loss expects (values in [{low - margin:g}, {high + margin:g}] are "
        f"accepted). Float images in 0..255? Divide them by 255 (uint8 images: "
        f"`tf.image.convert_image_dtype(x, tf.float32)`)"
        + (f"; {fix}" if fix else "") + "."
    )


def _value_stats(x, with_sum=True):
    """``(min, max, sum)`` of ``x``: three reductions, no elementwise temporaries.

    Min/max give the range and catch +-Inf; NaN needs the sum, because min/max
    ignore NaN on some devices and under XLA. Summed in float32 so that a large
    float16 batch cannot overflow; a float32 sum of in-range values cannot.
    """
    lo, hi = tf.reduce_min(x), tf.reduce_max(x)
    if not with_sum:
        return lo, hi, tf.constant(0.0)
    wide = x if x.dtype in (tf.float32, tf.float64) else tf.cast(x, tf.float32)
    return lo, hi, tf.cast(tf.reduce_sum(wide), tf.float32)


def check_values(x, arg, check_finite=True, data_range=None, loss_name=None, range_fix=""):
    """Finiteness and value-range check of ``x`` from one ``(min, max, sum)`` pass.

    ``data_range`` (``r`` for [0, r], or ``(low, high)``, see :func:`as_range`):
    values more than ``RANGE_TOLERANCE`` x the range
    outside it raise (catches 0..255 images given to a [0, 1] loss, accepts the
    over/undershoot of unclipped outputs). ``range_fix`` is appended to the error
    (e.g. the argument that declares another range). Eager: ``ValueError``; in a
    graph: an assert op (``InvalidArgumentError`` with min and max). Three
    reductions cost less than ``tf.debugging.check_numerics`` alone.
    """
    data_range = as_range(data_range, owner=loss_name)
    if not check_finite and data_range is None:
        return x
    lo, hi, total = _value_stats(x, with_sum=check_finite)
    lo32, hi32 = tf.cast(lo, tf.float32), tf.cast(hi, tf.float32)
    if data_range is not None:
        low, high = (float(v) for v in data_range)
        margin = RANGE_TOLERANCE * (high - low)
    if tf.executing_eagerly():
        if int(tf.size(x)) == 0:  # an empty replica batch is valid
            return x
        vmin, vmax, vsum = tf.stack([lo32, hi32, total]).numpy().tolist()  # one transfer
        finite = all(abs(v) < float("inf") for v in (vmin, vmax, vsum))
        if check_finite and not finite:
            raise ValueError(_nonfinite_message(arg, loss_name))
        if data_range is not None and finite and not (
            vmin >= low - margin and vmax <= high + margin
        ):
            raise ValueError(_range_message(arg, loss_name, data_range, range_fix, vmin, vmax))
        return x
    empty = tf.equal(tf.size(x), 0)
    finite = tf.reduce_all(tf.math.is_finite(tf.stack([lo32, hi32, total])))
    if data_range is not None:
        in_range = tf.logical_and(lo32 >= low - margin, hi32 <= high + margin)
    asserts = []
    if check_finite:
        asserts.append(tf.debugging.Assert(
            tf.logical_or(empty, finite),
            [_nonfinite_message(arg, loss_name) + " min, max, sum:", lo, hi, total],
        ))
    if data_range is not None:
        # NaN/Inf is reported by the finiteness check (or the loss-value check)
        asserts.append(tf.debugging.Assert(
            tf.logical_or(tf.logical_or(empty, tf.logical_not(finite)), in_range),
            [_range_message(arg, loss_name, data_range, range_fix) + f" min, max of {arg}:",
             lo, hi],
        ))
    with tf.control_dependencies(asserts):
        return tf.identity(x)


def check_image_pair(
    y_true,
    y_pred,
    expected_channels=None,
    same_shape=True,
    check_finite=True,
    loss_name=None,
    data_range=None,
    range_fix="",
):
    """Validate ``(y_true, y_pred)`` NHWC image batches; returns both tensors.

    ``data_range`` is enforced on ``y_true`` only: a wrongly scaled data pipeline
    (0..255 floats) shows there, while ``y_pred`` is an unclipped model output
    whose transient excursions must not stop a training run.
    """
    y_true = check_image(y_true, "y_true", expected_channels, check_finite, loss_name,
                         data_range=data_range, range_fix=range_fix)
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


def check_sample_weight(sample_weight, y_pred, check_finite=True, loss_name=None):
    """``sample_weight`` checked against the batch: one entry per sample (a scalar is
    broadcast) and, with ``check_finite``, no NaN or Inf (a NaN weight makes the loss NaN).

    Static lengths raise ``ValueError`` at trace time; lengths known only at run time and the
    finiteness check in a graph raise ``InvalidArgumentError``. Returns ``sample_weight``.
    """
    sw = tf.convert_to_tensor(sample_weight)
    y = tf.convert_to_tensor(tf.nest.flatten(y_pred)[0])
    if sw.shape.rank is not None and sw.shape.rank >= 1:
        n, b = sw.shape[0], y.shape[0] if y.shape.rank else None
        message = (
            f"{_prefix(loss_name)}`sample_weight` has {{n}} entries but the batch has {{b}} "
            f"samples (`y_pred` shape {tuple(y.shape)}); give one weight per sample, shape (B,)"
        )
        if n is not None and b is not None:
            if n != b:
                raise ValueError(message.format(n=n, b=b) + f", here ({b},).")
        else:
            with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(sw)[0], tf.shape(y)[0],
                message=message.format(n="a different number of", b="another number of"),
            )]):
                sw = tf.identity(sw)
    if check_finite:
        wide = sw if sw.dtype.is_floating else tf.cast(sw, tf.float32)
        checked = check_values(wide, "sample_weight", check_finite=True, loss_name=loss_name)
        if checked is not wide:  # a graph: keep the assertion on the path
            with tf.control_dependencies([checked]):
                sw = tf.identity(sw)
    return sw


def static_hw(x, what, fix):
    """``(height, width)`` of an NHWC batch as ints, for code that needs them at trace time.

    ``ValueError`` when either is unknown: ``what`` says who needs them, ``fix`` how to
    provide them.
    """
    h, w = x.shape[1], x.shape[2]
    if h is None or w is None:
        raise ValueError(
            f"{what} needs a static image height and width (got shape {tuple(x.shape)}); {fix}"
        )
    return int(h), int(w)


def check_noise_level(value, name, owner, data_range=1.0):
    """Refuse a noise level (a standard deviation, or a ``(low, high)`` pair) above the images'
    data range: ``sigma=25`` for images in [0, 1] is the ``25/255`` of a paper, not noise 25
    times the signal. Returns ``value``; tensors are not checked (use a Python number).

    >>> check_noise_level(25 / 255, "sigma", "GaussianNoise")
    0.09803921568627451
    >>> check_noise_level(25, "sigma", "GaussianNoise", data_range=255)
    25
    >>> check_noise_level(25, "sigma", "GaussianNoise")
    Traceback (most recent call last):
    ...
    ValueError: GaussianNoise: `sigma` 25 is above the data range 1 ... did you mean 25/255? ...
    """
    pair = isinstance(value, (tuple, list))
    items = list(value) if pair else [value]
    try:
        floats = [float(v) for v in items]
    except (TypeError, ValueError):
        return value  # not a plain number (a tensor, a typo): other checks report it
    if not floats or max(floats) <= float(data_range):
        return value

    def frac(v):
        return "0" if v == 0 else f"{v:g}/255"

    mean = f"({', '.join(frac(v) for v in floats)})" if pair else frac(floats[0])
    shown = f"({', '.join(f'{v:g}' for v in floats)})" if pair else f"{floats[0]:g}"
    raise ValueError(
        f"{owner}: `{name}` {shown} is above the data range {float(data_range):g} of the images "
        f"(noise levels are standard deviations in image units, images in "
        f"[0, {float(data_range):g}]); did you mean {mean}? (for images in [0, 255] pass "
        "data_range=255)"
    )
