"""Motion blur: random camera-shake or linear kernels, one per image.

``per_image_conv`` and ``line_kernels`` also draw rain streaks (``rain``).
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfrestore.data.degradations import base
from tfrestore.utils import validation

__all__ = ["motion_kernel", "motion_blur", "MotionBlur"]

#: old argument name -> new one (``size`` is an output size in tfrestore, as in
#: ``tf.image.resize``; a kernel's side is ``kernel_size``, as in Keras ``Conv2D``).
_RENAMED = {"size": "kernel_size"}


def per_image_conv(x, kernels):
    """``out[b] = x[b] (*) kernels[b]`` (true 2-D convolution, reflect padding).

    Uses one depthwise convolution over the batch folded into channels, so every
    image gets its own kernel without a Python loop.
    """
    k = kernels.shape[-1]
    pad = k // 2
    for axis, dim in (("height", x.shape[1]), ("width", x.shape[2])):
        if dim is not None and dim <= pad:
            raise ValueError(
                f"image {axis} {dim} is too small for a {k}x{k} kernel (reflect padding needs "
                f"more than {pad} pixels); use larger images or a smaller kernel/length."
            )
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    xp = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    hp, wp = h + 2 * pad, w + 2 * pad
    folded = tf.reshape(tf.transpose(xp, [1, 2, 0, 3]), [1, hp, wp, b * c])
    kern = tf.reverse(tf.cast(kernels, x.dtype), [1, 2])  # correlation -> convolution
    kern = tf.repeat(tf.transpose(kern, [1, 2, 0]), c, axis=2)  # (k, k, b*c)
    out = tf.nn.depthwise_conv2d(folded, kern[..., None], [1, 1, 1, 1], "VALID")
    return tf.transpose(tf.reshape(out, [h, w, b, c]), [2, 0, 1, 3])


def line_kernels(length, angle_deg, kernel_size, thickness=1.0):
    """Anti-aliased line segments (peak 1) centred in ``kernel_size x kernel_size`` grids.

    ``angle_deg`` is measured from the vertical axis (0 = vertical, positive leans right
    going down). Shapes: ``length``/``angle_deg`` (B,) -> (B, kernel_size, kernel_size).
    """
    r = (kernel_size - 1) / 2.0
    coords = tf.range(kernel_size, dtype=tf.float32) - r
    yy, xx = tf.meshgrid(coords, coords, indexing="ij")
    theta = angle_deg * (math.pi / 180.0)
    dy, dx = tf.cos(theta)[:, None, None], tf.sin(theta)[:, None, None]
    along = yy[None] * dy + xx[None] * dx
    perp = tf.abs(-yy[None] * dx + xx[None] * dy)
    half = length[:, None, None] / 2.0
    w_perp = tf.clip_by_value(thickness / 2.0 + 0.5 - perp, 0.0, 1.0)
    w_along = tf.clip_by_value(half + 0.5 - tf.abs(along), 0.0, 1.0)
    return w_perp * w_along


def motion_kernel(
    seed,
    batch=None,
    *,
    kernel_size=15,
    length=(5.0, 15.0),
    kind="trajectory",
    angle=(0.0, 180.0),
    curvature=0.5,
    **kwargs,
):
    """Random motion-blur kernels (non-negative, sum 1), ``(kernel_size, kernel_size)`` or
    ``(B, kernel_size, kernel_size)``.

    ``kernel_size`` is the odd side of the kernel grid (formerly ``size``: that keyword
    raises ``TypeError``); ``length`` must not exceed it.

    ``kind="linear"``: an anti-aliased straight segment of ``length`` pixels at ``angle``
    degrees. ``kind="trajectory"``: a camera-shake path (a random walk with momentum,
    64 steps; its velocity drifts by ``curvature`` x N(0, 1) per step, after Boracchi &
    Foi 2012), rescaled so that its longest extent is ``length`` pixels and splatted
    bilinearly onto the grid.

    Example:
        >>> k = motion_kernel(seed=[3, 4], kernel_size=9, length=7, kind="linear", angle=0.0)
        >>> round(float(tf.reduce_sum(k)), 5), int(tf.argmax(tf.reduce_sum(k, axis=0)))
        (1.0, 4)
    """
    fn = "motion_kernel"
    validation.refuse_renamed(kwargs, _RENAMED, fn, allow_other=False)
    size = int(kernel_size)
    if size < 3 or size % 2 == 0:
        raise ValueError(f"{fn}: `kernel_size` must be an odd integer >= 3, got {size}.")
    rl = base.check_range(length, "length", fn, low=0.0, high=float(size))
    ran = base.check_range(angle, "angle", fn)
    if kind not in ("linear", "trajectory"):
        raise ValueError(f"{fn}: `kind` must be 'linear' or 'trajectory', got {kind!r}.")
    single = batch is None
    b = 1 if single else batch
    s = base.split_seed(base.as_seed(seed), 4)
    ln = base.sample(rl, b, s[0])
    ang = base.sample(ran, b, s[1])
    if kind == "linear":
        k = line_kernels(tf.maximum(ln, 1.0), ang, size)
    else:
        steps = 64
        theta = ang * (math.pi / 180.0)
        v0 = tf.stack([tf.cos(theta), tf.sin(theta)], axis=-1)[:, None, :]  # (b, 1, 2)
        drift = curvature * tf.random.stateless_normal(tf.stack([b, steps, 2]), s[2])
        vel = v0 + tf.cumsum(drift, axis=1) / math.sqrt(steps)
        pos = tf.cumsum(vel, axis=1)
        pos = pos - 0.5 * (
            tf.reduce_max(pos, axis=1, keepdims=True) + tf.reduce_min(pos, axis=1, keepdims=True)
        )
        extent = tf.reduce_max(tf.abs(pos), axis=[1, 2], keepdims=True)
        pos = pos / tf.maximum(extent, 1e-6) * tf.reshape(ln, [-1, 1, 1]) / 2.0
        r = (size - 1) / 2.0
        pos = tf.clip_by_value(pos + r, 0.0, size - 1.0 - 1e-4)
        cell = tf.floor(pos)
        frac = pos - cell
        ib = tf.cast(cell, tf.int32)

        def axis_weights(i):
            f = frac[..., i]
            return (1.0 - f)[..., None] * tf.one_hot(ib[..., i], size) + f[..., None] * tf.one_hot(
                ib[..., i] + 1, size
            )

        k = tf.einsum("bti,btj->bij", axis_weights(0), axis_weights(1))
    k = k / tf.reduce_sum(k, axis=[1, 2], keepdims=True)
    return k[0] if single else k


def motion_blur(
    images,
    seed,
    *,
    kernel_size=15,
    length=(5.0, 15.0),
    kind="trajectory",
    angle=(0.0, 180.0),
    curvature=0.5,
    kernel=None,
    return_params=False,
    **kwargs,
):
    """Blur every image with its own random motion kernel (see ``motion_kernel``).

    Args:
        images: HWC or NHWC float in [0, 1]; H and W must exceed ``kernel_size // 2``.
        seed: int or int tensor (2,). Stateless seed.
        kernel_size, length, kind, angle, curvature: int, float or (float, float), str,
            float or (float, float), float. The ``motion_kernel`` parameters
            (``kernel_size`` was formerly ``size``: that keyword raises ``TypeError``, and
            ``MotionBlur`` configs saved with it still load).
        kernel: float tensor (k, k) or (B, k, k), or None. A fixed or per-image kernel
            instead of random ones.
        return_params: bool. Also return ``{"kernel": (B, k, k) or (k, k)}``.

    Borders are reflect-padded. The blur is a true convolution with the returned kernel.

    Example:
        >>> x = tf.random.stateless_uniform((2, 32, 32, 3), seed=[0, 1])
        >>> y, p = motion_blur(x, seed=[5, 6], return_params=True)
        >>> y.shape, tuple(p["kernel"].shape)
        (TensorShape([2, 32, 32, 3]), (2, 15, 15))
    """
    fn = "motion_blur"
    validation.refuse_renamed(kwargs, _RENAMED, fn, allow_other=False)
    x, single = base.as_batch(images, fn)
    b = tf.shape(x)[0]
    if kernel is None:
        k = motion_kernel(
            seed,
            b,
            kernel_size=kernel_size,
            length=length,
            kind=kind,
            angle=angle,
            curvature=curvature,
        )
    else:
        k = tf.cast(tf.convert_to_tensor(kernel), tf.float32)
        if k.shape.rank == 2:
            k = tf.broadcast_to(k[None], tf.concat([[b], tf.shape(k)], 0))
        if k.shape.rank != 3 or k.shape[-1] != k.shape[-2] or (k.shape[-1] or 0) % 2 == 0:
            raise ValueError(
                f"{fn}: `kernel` must be (k, k) or (B, k, k) with odd k, got {tuple(k.shape)}."
            )
    out = per_image_conv(x, k)
    return base.finish(out, single, return_params, kernel=k)


MotionBlur = base.function_wrapper(
    motion_blur,
    "motion_blur",
    "MotionBlur",
    "``motion_blur`` (random kernels) as a configurable object.",
    renamed=_RENAMED,
)
