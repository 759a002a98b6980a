"""Synthetic image degradations as pure TensorFlow ops.

Every function takes an HWC image or an NHWC batch of float images in [0, 1] and an
explicit ``seed``: a shape-[2] integer tensor (or a Python int ``s``, meaning
``[s, 0]``) fed to ``tf.random.stateless_*`` ops, so the result depends only on
the inputs and the seed (identical run to run, usable inside ``tf.data.map`` and
``tf.function``). Random parameters given as a ``(low, high)`` pair are drawn per
image from ``U[low, high]``; a single number fixes them. With
``return_params=True`` a function also returns a dict of the parameters it drew.

Functions: ``add_gaussian_noise`` (fixed or blind sigma, sigma map for FFDNet),
``bicubic_downsample`` (MATLAB-exact, from ``tfrestore.data.resize``),
``add_haze``, ``add_rain``, ``low_light``, ``jpeg_compress``, ``motion_blur``.
Each has a configurable, serialisable class wrapper (``GaussianNoise``, ...,
``Compose``) that the dataset builders in ``tfrestore.data`` accept; build one
from a config dict with ``get_degradation({"type": "gaussian_noise", ...})``.

Only ``jpeg_compress`` runs on the CPU (TF has no GPU JPEG encoder); everything else
is plain tensor math that runs on any device.
"""

from __future__ import annotations

import math
import numbers

import tensorflow as tf

from tfrestore.data.resize import bicubic_downsample

__all__ = [
    "as_seed",
    "add_gaussian_noise",
    "bicubic_downsample",
    "add_haze",
    "add_rain",
    "low_light",
    "jpeg_compress",
    "motion_blur",
    "motion_kernel",
    "Degradation",
    "Identity",
    "GaussianNoise",
    "BicubicDownsample",
    "Haze",
    "Rain",
    "LowLight",
    "JPEG",
    "MotionBlur",
    "Compose",
    "get_degradation",
]


# ----------------------------------------------------------------------------- helpers


def as_seed(seed):
    """Normalise ``seed`` (int, pair, or shape-[2] tensor) to a shape-[2] int64 tensor.

    Example:
        >>> as_seed(7).numpy().tolist()
        [7, 0]
    """
    if isinstance(seed, bool) or seed is None:
        raise TypeError(
            "`seed` must be an int or a shape-[2] integer tensor for stateless random ops, "
            f"got {seed!r}."
        )
    if isinstance(seed, numbers.Integral):
        return tf.constant([int(seed), 0], tf.int64)
    s = tf.convert_to_tensor(seed)
    if not s.dtype.is_integer:
        raise TypeError(f"`seed` must be integer-valued, got dtype {s.dtype.name}.")
    if s.shape.rank != 1 or (s.shape[0] is not None and s.shape[0] != 2):
        raise ValueError(f"`seed` must have shape [2], got shape {tuple(s.shape)}.")
    return tf.cast(s, tf.int64)


def _split(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(seed, n), num=n)


def _as_batch(images, fn):
    x = tf.convert_to_tensor(images)
    if not x.dtype.is_floating:
        raise TypeError(
            f"{fn}: `images` must be float in [0, 1], got dtype {x.dtype.name}; convert with "
            f"`tf.image.convert_image_dtype(images, tf.float32)`."
        )
    if x.shape.rank == 3:
        return x[None], True
    if x.shape.rank == 4:
        return x, False
    raise ValueError(
        f"{fn}: `images` must be an HWC image or an NHWC batch (rank 3 or 4), "
        f"got shape {tuple(x.shape)}."
    )


def _check_range(value, name, fn, low=None, high=None):
    """Validate a fixed value or a (low, high) pair; returns (lo, hi) floats."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{fn}: `{name}` must be a number or a (low, high) pair, got {value!r}."
            )
        lo, hi = float(value[0]), float(value[1])
    else:
        lo = hi = float(value)
    if lo > hi:
        raise ValueError(f"{fn}: `{name}` range must satisfy low <= high, got {value!r}.")
    if (low is not None and lo < low) or (high is not None and hi > high):
        raise ValueError(f"{fn}: `{name}` must lie in [{low}, {high}], got {value!r}.")
    return lo, hi


def _sample(rng, batch, seed, dtype=tf.float32):
    lo, hi = rng
    if lo == hi:
        return tf.fill([batch], tf.constant(lo, dtype))
    return tf.random.stateless_uniform([batch], seed, lo, hi, dtype=dtype)


def _bcast(v, x):
    return tf.reshape(tf.cast(v, x.dtype), [-1, 1, 1, 1])


def _finish(out, params, single, return_params):
    if single:
        out = out[0]
        params = {k: v[0] for k, v in params.items()}
    return (out, params) if return_params else out


def _per_image_conv(x, kernels):
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


def _line_kernels(length, angle_deg, size, thickness=1.0):
    """Anti-aliased line segments (peak 1) centred in ``size x size`` grids.

    ``angle_deg`` is measured from the vertical axis (0 = vertical, positive leans right
    going down). Shapes: ``length``/``angle_deg`` (B,) -> (B, size, size).
    """
    r = (size - 1) / 2.0
    coords = tf.range(size, dtype=tf.float32) - r
    yy, xx = tf.meshgrid(coords, coords, indexing="ij")
    theta = angle_deg * (math.pi / 180.0)
    dy, dx = tf.cos(theta)[:, None, None], tf.sin(theta)[:, None, None]
    along = yy[None] * dy + xx[None] * dx
    perp = tf.abs(-yy[None] * dx + xx[None] * dy)
    half = length[:, None, None] / 2.0
    w_perp = tf.clip_by_value(thickness / 2.0 + 0.5 - perp, 0.0, 1.0)
    w_along = tf.clip_by_value(half + 0.5 - tf.abs(along), 0.0, 1.0)
    return w_perp * w_along


# ----------------------------------------------------------------------------- noise


def add_gaussian_noise(images, seed, sigma=25.0 / 255.0, *, clip=False, return_params=False):
    """Additive white Gaussian noise with fixed or blind (per-image uniform) sigma.

    Args:
        images: HWC or NHWC float images in [0, 1].
        seed: shape-[2] int tensor (or int) for the stateless random ops.
        sigma: noise std in image units (``25/255`` for "sigma 25"), or a ``(min, max)``
            pair for blind denoising: sigma ~ U[min, max] per image (the D2SM/FFDNet
            setting is ``(0, 75/255)``).
        clip: clip the noisy image to [0, 1] (the DnCNN/FFDNet benchmarks do not clip).
        return_params: also return ``{"sigma": (B,) or (), "sigma_map": (..., H, W, 1)}``;
            ``sigma_map`` is the constant noise-level map FFDNet takes as extra input.

    Example:
        >>> x = tf.fill((64, 64, 3), 0.5)
        >>> y, p = add_gaussian_noise(x, seed=[1, 2], sigma=(0.0, 75 / 255), return_params=True)
        >>> tuple(p["sigma_map"].shape), bool(0 <= float(p["sigma"]) <= 75 / 255)
        ((64, 64, 1), True)
    """
    fn = "add_gaussian_noise"
    x, single = _as_batch(images, fn)
    rng = _check_range(sigma, "sigma", fn, low=0.0)
    seed = as_seed(seed)
    s_sigma, s_noise = _split(seed, 2)
    shape = tf.shape(x)
    sig = _sample(rng, shape[0], s_sigma)
    noise = tf.random.stateless_normal(shape, s_noise, dtype=x.dtype)
    out = x + _bcast(sig, x) * noise
    if clip:
        out = tf.clip_by_value(out, 0.0, 1.0)
    params = {}
    if return_params:
        params = {
            "sigma": sig,
            "sigma_map": tf.broadcast_to(_bcast(sig, x), tf.concat([shape[:3], [1]], 0)),
        }
    return _finish(out, params, single, return_params)


# ----------------------------------------------------------------------------- haze


def _depth_proxy(kind, b, h, w, seed):
    rows = tf.linspace(1.0, 0.0, h)  # top of the frame far (1), bottom near (0)
    ramp = tf.broadcast_to(rows[None, :, None, None], tf.stack([b, h, w, 1]))
    if kind == "vertical":
        return ramp
    if kind == "uniform":
        return tf.ones(tf.stack([b, h, w, 1]))
    if kind == "random":
        coarse = tf.random.stateless_uniform([b, 4, 4, 1], seed)
        field = tf.image.resize(coarse, tf.stack([h, w]), method="bicubic")
        lo = tf.reduce_min(field, axis=[1, 2, 3], keepdims=True)
        hi = tf.reduce_max(field, axis=[1, 2, 3], keepdims=True)
        field = (field - lo) / tf.maximum(hi - lo, 1e-6)
        return 0.5 * ramp + 0.5 * field
    raise ValueError(
        f"add_haze: `depth` must be 'vertical', 'uniform', 'random' or a depth tensor, "
        f"got {kind!r}."
    )


def add_haze(
    images,
    seed,
    *,
    beta=(0.6, 1.8),
    airlight=(0.7, 1.0),
    depth="random",
    return_params=False,
):
    """Haze from the atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``.

    Args:
        images: clear images ``J``, HWC or NHWC float in [0, 1].
        seed: stateless seed.
        beta: scattering coefficient (per image, fixed or ``(low, high)``).
        airlight: grey atmospheric light ``A`` in [0, 1] (per image).
        depth: the scene depth ``d`` (relative units, ~[0, 1]). Without a depth sensor a
            proxy is used: ``"vertical"`` (linear ramp, 1 at the top row to 0 at the
            bottom: sky/far at the top as in street and landscape photos),
            ``"uniform"`` (``d = 1``, homogeneous haze, ``t = exp(-beta)``) or
            ``"random"`` (default: the mean of the vertical ramp and a smooth random
            field, a 4x4 uniform grid upsampled bicubically and rescaled to [0, 1]).
            A tensor ``(H, W, 1)`` / ``(B, H, W, 1)`` gives a real depth map.
        return_params: also return ``{"transmission", "airlight", "beta", "depth"}``.

    Example:
        >>> hazy, p = add_haze(tf.zeros((16, 16, 3)), seed=3, return_params=True)
        >>> bool(tf.reduce_all(hazy >= 0)), tuple(p["transmission"].shape)
        (True, (16, 16, 1))
    """
    fn = "add_haze"
    x, single = _as_batch(images, fn)
    rb = _check_range(beta, "beta", fn, low=0.0)
    ra = _check_range(airlight, "airlight", fn, low=0.0, high=1.0)
    s_beta, s_air, s_depth = _split(as_seed(seed), 3)
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    if isinstance(depth, str):
        d = _depth_proxy(depth, b, h, w, s_depth)
    else:
        d = tf.cast(tf.convert_to_tensor(depth), tf.float32)
        if d.shape.rank == 3:
            d = d[None]
        if d.shape.rank != 4 or (d.shape[-1] is not None and d.shape[-1] != 1):
            raise ValueError(
                f"{fn}: a `depth` tensor must be (H, W, 1) or (B, H, W, 1), got {tuple(d.shape)}."
            )
        d = tf.broadcast_to(d, tf.stack([b, h, w, 1]))
    bet = _sample(rb, b, s_beta)
    air = _sample(ra, b, s_air)
    t = tf.cast(tf.exp(-_bcast(bet, d) * d), x.dtype)
    out = x * t + _bcast(air, x) * (1.0 - t)
    params = {"transmission": t, "airlight": air, "beta": bet, "depth": d} if return_params else {}
    return _finish(out, params, single, return_params)


# ----------------------------------------------------------------------------- rain


def add_rain(
    images,
    seed,
    *,
    density=(0.002, 0.008),
    length=(10.0, 25.0),
    angle=(-20.0, 20.0),
    intensity=(0.5, 0.9),
    thickness=1.0,
    return_params=False,
):
    """Synthetic rain streaks: sparse random drops smeared along a line, screen-blended.

    Drops are Bernoulli(``density``) pixels with uniform brightness; they are convolved
    with an anti-aliased line of length ``length`` pixels tilted by ``angle`` degrees
    from the vertical, clipped to [0, 1], scaled by ``intensity`` and blended with
    ``out = 1 - (1 - image) (1 - streaks)`` (stays in [0, 1]). One angle per image,
    as in real rain.

    Args:
        images: HWC or NHWC float in [0, 1].
        seed: stateless seed.
        density: fraction of pixels that start a streak (per image).
        length: streak length in pixels (per image, at most 63).
        angle: tilt in degrees from vertical (per image).
        intensity: streak brightness (per image).
        thickness: streak width in pixels.
        return_params: also return ``{"streaks" (.., H, W, 1), "density", "length",
            "angle", "intensity"}``.

    Example:
        >>> rainy = add_rain(tf.zeros((2, 32, 32, 3)), seed=[0, 5])
        >>> bool(tf.reduce_max(rainy) > 0), bool(tf.reduce_max(rainy) <= 1)
        (True, True)
    """
    fn = "add_rain"
    x, single = _as_batch(images, fn)
    rd = _check_range(density, "density", fn, low=0.0, high=1.0)
    rl = _check_range(length, "length", fn, low=1.0, high=63.0)
    ran = _check_range(angle, "angle", fn, low=-90.0, high=90.0)
    ri = _check_range(intensity, "intensity", fn, low=0.0, high=1.0)
    s = _split(as_seed(seed), 7)
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    dens, ln, ang, inten = (_sample(r, b, si) for r, si in zip((rd, rl, ran, ri), s[:4]))
    drops = tf.cast(
        tf.random.stateless_uniform(tf.stack([b, h, w, 1]), s[4]) < tf.reshape(dens, [-1, 1, 1, 1]),
        tf.float32,
    )
    drops = drops * tf.random.stateless_uniform(tf.stack([b, h, w, 1]), s[5], 0.5, 1.0)
    ksize = 2 * int(math.ceil(rl[1] / 2.0)) + 1
    kernels = _line_kernels(ln, ang, ksize, thickness)
    streaks = tf.clip_by_value(_per_image_conv(drops, kernels), 0.0, 1.0) * _bcast(inten, drops)
    streaks = tf.cast(streaks, x.dtype)
    out = 1.0 - (1.0 - x) * (1.0 - streaks)
    params = (
        {"streaks": streaks, "density": dens, "length": ln, "angle": ang, "intensity": inten}
        if return_params
        else {}
    )
    return _finish(out, params, single, return_params)


# ----------------------------------------------------------------------------- low light


def low_light(
    images,
    seed,
    *,
    gamma=(1.5, 3.0),
    exposure=(0.1, 0.5),
    shot_noise=(1e-3, 1e-2),
    read_noise=(1e-3, 1e-2),
    exact_poisson=False,
    clip=True,
    return_params=False,
):
    """Low-light images: gamma darkening, exposure scaling and Poisson-Gaussian noise.

    ``y = exposure * x ** gamma``; noise with variance ``shot_noise * y + read_noise**2``
    (Foi et al. 2008 Poisson-Gaussian model: ``shot_noise`` is the gain ``a`` so that
    ``y / a`` is a photon count, ``read_noise`` the std of the signal-independent part).
    By default the Poisson part uses the usual heteroscedastic Gaussian approximation
    (runs on any device); ``exact_poisson=True`` samples ``a * Poisson(y / a)`` instead.

    Args:
        images: HWC or NHWC float in [0, 1].
        seed: stateless seed.
        gamma, exposure, shot_noise, read_noise: per-image values or ``(low, high)``.
        exact_poisson: exact Poisson sampling (``tf.random.stateless_poisson``).
        clip: clip the result to [0, 1].
        return_params: also return ``{"gamma", "exposure", "shot_noise", "read_noise", "clean"}``
            where ``clean`` is the noise-free dark image.

    Example:
        >>> dark = low_light(tf.fill((8, 8, 3), 0.8), seed=1, shot_noise=0.0, read_noise=0.0,
        ...                  gamma=2.0, exposure=0.5)
        >>> round(float(dark[0, 0, 0]), 4)
        0.32
    """
    fn = "low_light"
    x, single = _as_batch(images, fn)
    rg = _check_range(gamma, "gamma", fn, low=0.0)
    re_ = _check_range(exposure, "exposure", fn, low=0.0)
    rs = _check_range(shot_noise, "shot_noise", fn, low=0.0)
    rr = _check_range(read_noise, "read_noise", fn, low=0.0)
    s = _split(as_seed(seed), 6)
    shape = tf.shape(x)
    b = shape[0]
    gam, exp_, shot, read = (_sample(r, b, si) for r, si in zip((rg, re_, rs, rr), s[:4]))
    y = _bcast(exp_, x) * tf.pow(tf.clip_by_value(x, 0.0, 1.0), _bcast(gam, x))
    a = _bcast(shot, x)
    read_n = _bcast(read, x) * tf.random.stateless_normal(shape, s[5], dtype=x.dtype)
    if exact_poisson:
        safe_a = tf.maximum(a, 1e-12)
        counts = tf.random.stateless_poisson(shape, s[4], lam=y / safe_a, dtype=x.dtype)
        shot_part = tf.where(a > 0, counts * safe_a, y)
        out = shot_part + read_n
    else:
        out = y + tf.sqrt(a * y) * tf.random.stateless_normal(shape, s[4], dtype=x.dtype) + read_n
    if clip:
        out = tf.clip_by_value(out, 0.0, 1.0)
    params = (
        {"gamma": gam, "exposure": exp_, "shot_noise": shot, "read_noise": read, "clean": y}
        if return_params
        else {}
    )
    return _finish(out, params, single, return_params)


# ----------------------------------------------------------------------------- JPEG


def jpeg_compress(images, seed, *, quality=(30, 95), return_params=False):
    """JPEG compression artefacts (encode + decode at a random integer quality).

    Args:
        images: HWC or NHWC float in [0, 1] with 1 or 3 channels.
        seed: stateless seed (only used to draw the quality).
        quality: JPEG quality in [0, 100], fixed or ``(low, high)`` (inclusive, per image).
        return_params: also return ``{"quality": int32}``.

    Runs on the CPU (TF's JPEG codec); use it in ``tf.data`` pipelines.

    Example:
        >>> x = tf.random.stateless_uniform((16, 16, 3), seed=[0, 0])
        >>> y = jpeg_compress(x, seed=0, quality=10)
        >>> y.shape, bool(tf.reduce_mean(tf.abs(y - x)) > 0.01)
        (TensorShape([16, 16, 3]), True)
    """
    fn = "jpeg_compress"
    x, single = _as_batch(images, fn)
    lo, hi = _check_range(quality, "quality", fn, low=0.0, high=100.0)
    if x.shape[-1] is not None and x.shape[-1] not in (1, 3):
        raise ValueError(f"{fn}: JPEG needs 1 or 3 channels, got shape {tuple(x.shape)}.")
    b = tf.shape(x)[0]
    q = tf.random.stateless_uniform([b], as_seed(seed), int(lo), int(hi) + 1, dtype=tf.int32)
    u8 = tf.cast(tf.clip_by_value(tf.round(x * 255.0), 0.0, 255.0), tf.uint8)

    def one(args):
        img, qual = args
        enc = tf.raw_ops.EncodeJpegVariableQuality(images=img, quality=qual)
        return tf.io.decode_jpeg(enc, channels=img.shape[-1] or 0, dct_method="INTEGER_ACCURATE")

    dec = tf.map_fn(one, (u8, q), fn_output_signature=tf.TensorSpec(u8.shape[1:], tf.uint8))
    out = tf.cast(dec, x.dtype) / 255.0
    params = {"quality": q} if return_params else {}
    return _finish(out, params, single, return_params)


# ----------------------------------------------------------------------------- motion blur


def motion_kernel(
    seed,
    batch=None,
    *,
    size=15,
    length=(5.0, 15.0),
    kind="trajectory",
    angle=(0.0, 180.0),
    curvature=0.5,
):
    """Random motion-blur kernels (non-negative, sum 1), ``(size, size)`` or ``(B, size, size)``.

    ``kind="linear"``: an anti-aliased straight segment of ``length`` pixels at ``angle``
    degrees. ``kind="trajectory"``: a camera-shake path (a random walk with momentum,
    64 steps; its velocity drifts by ``curvature`` x N(0, 1) per step, after Boracchi &
    Foi 2012), rescaled so that its longest extent is ``length`` pixels and splatted
    bilinearly onto the grid.

    Example:
        >>> k = motion_kernel(seed=[3, 4], size=9, length=7, kind="linear", angle=0.0)
        >>> round(float(tf.reduce_sum(k)), 5), int(tf.argmax(tf.reduce_sum(k, axis=0)))
        (1.0, 4)
    """
    fn = "motion_kernel"
    size = int(size)
    if size < 3 or size % 2 == 0:
        raise ValueError(f"{fn}: `size` must be an odd integer >= 3, got {size}.")
    rl = _check_range(length, "length", fn, low=0.0, high=float(size))
    ran = _check_range(angle, "angle", fn)
    if kind not in ("linear", "trajectory"):
        raise ValueError(f"{fn}: `kind` must be 'linear' or 'trajectory', got {kind!r}.")
    single = batch is None
    b = 1 if single else batch
    s = _split(as_seed(seed), 4)
    ln = _sample(rl, b, s[0])
    ang = _sample(ran, b, s[1])
    if kind == "linear":
        k = _line_kernels(tf.maximum(ln, 1.0), ang, size)
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
        base = tf.floor(pos)
        frac = pos - base
        ib = tf.cast(base, tf.int32)

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
    size=15,
    length=(5.0, 15.0),
    kind="trajectory",
    angle=(0.0, 180.0),
    curvature=0.5,
    kernel=None,
    return_params=False,
):
    """Blur every image with its own random motion kernel (see ``motion_kernel``).

    Args:
        images: HWC or NHWC float in [0, 1]; H and W must exceed ``size // 2``.
        seed: stateless seed.
        size, length, kind, angle, curvature: kernel parameters (``motion_kernel``).
        kernel: a fixed kernel ``(k, k)`` or per-image ``(B, k, k)`` instead of random ones.
        return_params: also return ``{"kernel": (B, k, k) or (k, k)}``.

    Borders are reflect-padded. The blur is a true convolution with the returned kernel.

    Example:
        >>> x = tf.random.stateless_uniform((2, 32, 32, 3), seed=[0, 1])
        >>> y, p = motion_blur(x, seed=[5, 6], return_params=True)
        >>> y.shape, tuple(p["kernel"].shape)
        (TensorShape([2, 32, 32, 3]), (2, 15, 15))
    """
    fn = "motion_blur"
    x, single = _as_batch(images, fn)
    b = tf.shape(x)[0]
    if kernel is None:
        k = motion_kernel(
            seed, b, size=size, length=length, kind=kind, angle=angle, curvature=curvature
        )
    else:
        k = tf.cast(tf.convert_to_tensor(kernel), tf.float32)
        if k.shape.rank == 2:
            k = tf.broadcast_to(k[None], tf.concat([[b], tf.shape(k)], 0))
        if k.shape.rank != 3 or k.shape[-1] != k.shape[-2] or (k.shape[-1] or 0) % 2 == 0:
            raise ValueError(
                f"{fn}: `kernel` must be (k, k) or (B, k, k) with odd k, got {tuple(k.shape)}."
            )
    out = _per_image_conv(x, k)
    params = {"kernel": k} if return_params else {}
    return _finish(out, params, single, return_params)


# ----------------------------------------------------------------- configurable wrappers


class Degradation:
    """Base class: ``degradation(images, seed) -> degraded`` with a serialisable config.

    Subclasses set ``name`` (the registry key) and implement ``apply``. ``__call__``
    returns a tensor, or a tuple of model inputs (e.g. ``(noisy, sigma_map)``).
    ``scale`` is the spatial down-scaling factor the degradation applies (1 if none).
    """

    name = None
    scale = 1

    def __call__(self, images, seed):
        return self.apply(images, as_seed(seed))

    def apply(self, images, seed):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def to_dict(self):
        """``{"type": name, **config}``, the inverse of ``get_degradation``."""
        return {"type": self.name, **self.get_config()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


_REGISTRY = {}


def _register(cls):
    _REGISTRY[cls.name] = cls
    return cls


@_register
class Identity(Degradation):
    """No degradation (``(clean, clean)`` pairs, e.g. for auto-encoding checks)."""

    name = "identity"

    def apply(self, images, seed):
        return tf.convert_to_tensor(images)


@_register
class GaussianNoise(Degradation):
    """``add_gaussian_noise`` as a configurable object.

    Args:
        sigma: fixed std or ``(min, max)`` (blind), image units.
        clip: clip to [0, 1].
        sigma_map: return ``(noisy, sigma_map)``, the two FFDNet inputs.

    Example:
        >>> deg = GaussianNoise(sigma=(0, 75 / 255), sigma_map=True)
        >>> noisy, smap = deg(tf.zeros((2, 8, 8, 3)), seed=0)
        >>> tuple(smap.shape)
        (2, 8, 8, 1)
    """

    name = "gaussian_noise"

    def __init__(self, sigma=25.0 / 255.0, clip=False, sigma_map=False):
        _check_range(sigma, "sigma", "GaussianNoise", low=0.0)
        self.sigma = tuple(sigma) if isinstance(sigma, (list, tuple)) else float(sigma)
        self.clip = bool(clip)
        self.sigma_map = bool(sigma_map)

    def apply(self, images, seed):
        if self.sigma_map:
            y, p = add_gaussian_noise(images, seed, self.sigma, clip=self.clip, return_params=True)
            return y, p["sigma_map"]
        return add_gaussian_noise(images, seed, self.sigma, clip=self.clip)

    def get_config(self):
        return {"sigma": self.sigma, "clip": self.clip, "sigma_map": self.sigma_map}


@_register
class BicubicDownsample(Degradation):
    """MATLAB-exact bicubic ``x scale`` downsampling (``bicubic_downsample``).

    Example:
        >>> BicubicDownsample(scale=2)(tf.zeros((1, 8, 8, 3)), 0).shape
        TensorShape([1, 4, 4, 3])
    """

    name = "bicubic_downsample"

    def __init__(self, scale=4, quantize=False, clip=True):
        if int(scale) != scale or scale < 1:
            raise ValueError(
                f"BicubicDownsample: `scale` must be a positive integer, got {scale!r}."
            )
        self.scale = int(scale)
        self.quantize = bool(quantize)
        self.clip = bool(clip)

    def apply(self, images, seed):
        return bicubic_downsample(images, self.scale, quantize=self.quantize, clip=self.clip)

    def get_config(self):
        return {"scale": self.scale, "quantize": self.quantize, "clip": self.clip}


def _simple_wrapper(fn, reg_name, cls_name, doc):
    import inspect

    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.name not in ("return_params", "kernel")
    ]
    defaults = {p.name: p.default for p in params}

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(
                f"{cls_name}: unknown argument(s) {sorted(unknown)}; valid: {sorted(defaults)}."
            )
        cfg = {**defaults, **kwargs}
        self._config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()}
        # Validate eagerly (cheap) so a bad config fails at construction, not in tf.data.
        side = max(16, 2 * int(self._config.get("size", 0)) + 1)
        fn(tf.zeros((1, side, side, 3)), 0, **self._config)

    def apply(self, images, seed):
        return fn(images, seed, **self._config)

    def get_config(self):
        return dict(self._config)

    cls = type(
        cls_name,
        (Degradation,),
        {
            "__init__": __init__,
            "apply": apply,
            "get_config": get_config,
            "name": reg_name,
            "__doc__": doc,
            "__module__": __name__,
        },
    )
    return _register(cls)


Haze = _simple_wrapper(
    add_haze, "haze", "Haze", "``add_haze`` as a configurable object (same keyword arguments)."
)
Rain = _simple_wrapper(
    add_rain, "rain", "Rain", "``add_rain`` as a configurable object (same keyword arguments)."
)
LowLight = _simple_wrapper(
    low_light, "low_light", "LowLight", "``low_light`` as a configurable object."
)
JPEG = _simple_wrapper(jpeg_compress, "jpeg", "JPEG", "``jpeg_compress`` as a configurable object.")
MotionBlur = _simple_wrapper(
    motion_blur,
    "motion_blur",
    "MotionBlur",
    "``motion_blur`` (random kernels) as a configurable object.",
)


@_register
class Compose(Degradation):
    """Apply degradations in order, each with its own sub-seed (e.g. blur -> downsample -> noise).

    Only the last stage may return a tuple (e.g. ``GaussianNoise(sigma_map=True)``).

    Example:
        >>> blur = MotionBlur(size=7, length=(3, 7))
        >>> deg = Compose([blur, BicubicDownsample(2), JPEG(quality=(60, 90))])
        >>> deg(tf.random.stateless_uniform((16, 16, 3), seed=[0, 0]), seed=[1, 1]).shape
        TensorShape([8, 8, 3])
    """

    name = "compose"

    def __init__(self, degradations):
        self.degradations = [get_degradation(d) for d in degradations]
        self.scale = 1
        for d in self.degradations:
            self.scale *= int(getattr(d, "scale", 1))

    def apply(self, images, seed):
        x = images
        seeds = _split(seed, max(len(self.degradations), 1))
        for i, (d, s) in enumerate(zip(self.degradations, seeds)):
            if isinstance(x, tuple):
                raise ValueError(
                    f"Compose: stage {i - 1} ({self.degradations[i - 1]!r}) returned a "
                    "tuple; only the last stage may do so."
                )
            x = d(x, s)
        return x

    def get_config(self):
        return {"degradations": [d.to_dict() for d in self.degradations]}


def get_degradation(spec):
    """A degradation from a ``Degradation``, a name, a ``{"type": ..., **kw}`` dict or a callable.

    Example:
        >>> get_degradation({"type": "gaussian_noise", "sigma": [0.0, 0.2]})
        GaussianNoise(sigma=(0.0, 0.2), clip=False, sigma_map=False)
    """
    if spec is None:
        return Identity()
    if isinstance(spec, Degradation):
        return spec
    if isinstance(spec, str):
        spec = {"type": spec}
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop("type", None)
        if kind not in _REGISTRY:
            raise ValueError(f"Unknown degradation type {kind!r}; choose from {sorted(_REGISTRY)}.")
        cls = _REGISTRY[kind]
        if kind == "compose":
            return cls(**spec)
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        return cls(**spec)
    if callable(spec):
        return spec
    raise TypeError(
        f"`degradation` must be a Degradation, a registered name, a config dict or a callable "
        f"(images, seed) -> degraded; got {type(spec).__name__}."
    )
