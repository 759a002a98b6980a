"""Per-image evaluation of a restoration model: PSNR / SSIM (/ LPIPS) of the
degraded input and of the restored output against the clean image, as a table
and CSV. :func:`evaluate_degraded` (clean images degraded synthetically from a seed) is the
one path of ``tfrestore eval`` and of the training report; :func:`evaluate_model` scores
given ``(degraded, clean)`` pairs.

>>> rows = [{"image": "a", "psnr_in": 20.0, "psnr_out": 30.0},
...         {"image": "b", "psnr_in": 22.0, "psnr_out": 31.0}]
>>> print(format_table(add_mean_row(rows)))
image  psnr_in  psnr_out
-----  -------  --------
a      20.0000  30.0000
b      22.0000  31.0000
mean   21.0000  30.5000
"""

from __future__ import annotations

import csv
import os

import numpy as np

from tfrestore.inference.restore import predict_image

__all__ = [
    "evaluate_degraded",
    "evaluate_model",
    "add_mean_row",
    "format_table",
    "write_csv",
    "lpips_function",
    "upsample_baseline",
]


def lpips_function():
    """``(fn, note)``: the per-image LPIPS function ``fn(y_true, y_pred) -> (B,)``
    when its weights are available, else ``(None, reason)``."""
    from tfrestore.metrics.lpips import lpips_available

    ok, why = lpips_available()
    if not ok:
        return None, why
    from tfrestore.metrics import lpips

    return lpips, None


def upsample_baseline(image, size):
    """Bicubic (MATLAB-style) upsampling of a low-resolution input to ``size``,
    the usual SR baseline."""
    from tfrestore.data import imresize

    return np.clip(np.asarray(imresize(image, size=tuple(size))), 0.0, 1.0).astype(np.float32)


def _centre_crop_to(img, h, w):
    y = (img.shape[0] - h) // 2
    x = (img.shape[1] - w) // 2
    return img[y : y + h, x : x + w]


def evaluate_model(
    model,
    items,
    *,
    tile_size="auto",
    overlap=None,
    receptive_field=None,
    sigma=None,
    batch_size=None,
    max_memory=None,
    color="rgb",
    crop_border=0,
    lpips="auto",
    return_images=False,
    progress=False,
):
    """Evaluate ``model`` on ``items``.

    Args:
        model: keras.Model. The restoration model.
        items: iterable of ``(name, inputs, clean)`` where ``inputs`` is the
            degraded image ``(H, W, C)`` or a tuple (image, extra model inputs
            with batch axis) as produced by a multi-output degradation.
        tile_size, overlap, receptive_field, sigma, batch_size, max_memory: optional.
            As in :func:`~tfrestore.inference.restore.predict_image` (by default an
            image is tiled when it does not fit the memory budget; noted once).
        color, crop_border: str, int. Metric conventions (``tfrestore.metrics``; ``"y"``
            and ``crop_border=scale`` for SR tables).
        lpips: bool or "auto". ``"auto"`` (when available), True (required) or False.
        return_images: bool. Also return ``[(name, degraded_display, restored, clean)]``.
        progress: bool. Show a Keras progress bar over the images (with the
            running mean PSNR of the outputs) on stdout.

    Returns:
        ``(rows, notes)`` (and the images if requested): one dict per image with
        ``psnr_in``, ``ssim_in``, ``psnr_out``, ``ssim_out`` (+ ``lpips_*``).
    """
    from tfrestore.metrics import psnr, ssim

    notes = []
    lp_fn = None
    if lpips:
        lp_fn, why = lpips_function()
        if lp_fn is None:
            if lpips is True:
                raise RuntimeError(f"LPIPS requested but unavailable: {why}")
            notes.append(f"LPIPS skipped: {why}")
    rows, images = [], []
    bar = None
    if progress:
        import keras

        items = list(items)
        # Running means (what the table's mean row will show), not the last image's values.
        bar = keras.utils.Progbar(
            len(items), unit_name="image", stateful_metrics=["mean_psnr_in", "mean_psnr_out"]
        )
    for name, inputs, clean in items:
        extra = None
        if isinstance(inputs, tuple):
            degraded, extra = inputs[0], list(inputs[1:])
        else:
            degraded = inputs
        degraded = np.asarray(degraded, np.float32)
        if degraded.ndim == 4:
            degraded = degraded[0]
        clean = np.asarray(clean, np.float32)
        restored = predict_image(
            model,
            degraded,
            tile_size=tile_size,
            overlap=overlap,
            receptive_field=receptive_field,
            sigma=sigma,
            extra_inputs=extra,
            batch_size=batch_size,
            max_memory=max_memory,
            on_note=lambda n: notes.append(n) if n not in notes else None,
        )
        baseline = degraded
        if baseline.shape[:2] != clean.shape[:2]:
            baseline = upsample_baseline(degraded, clean.shape[:2])
        if restored.shape[:2] != clean.shape[:2]:
            h, w = restored.shape[:2]
            if h > clean.shape[0] or w > clean.shape[1]:
                raise ValueError(
                    f"{name}: restored image {restored.shape[:2]} is larger than the clean image "
                    f"{clean.shape[:2]}"
                )
            clean, baseline = _centre_crop_to(clean, h, w), _centre_crop_to(baseline, h, w)
        row = {"image": name}
        c, b, r = clean[None], np.clip(baseline, 0, 1)[None], np.clip(restored, 0, 1)[None]
        row["psnr_in"] = float(np.asarray(psnr(c, b, color=color, crop_border=crop_border))[0])
        row["psnr_out"] = float(np.asarray(psnr(c, r, color=color, crop_border=crop_border))[0])
        row["ssim_in"] = float(np.asarray(ssim(c, b, color=color, crop_border=crop_border))[0])
        row["ssim_out"] = float(np.asarray(ssim(c, r, color=color, crop_border=crop_border))[0])
        if lp_fn is not None and clean.shape[-1] == 3:
            row["lpips_in"] = float(np.asarray(lp_fn(c, b))[0])
            row["lpips_out"] = float(np.asarray(lp_fn(c, r))[0])
        rows.append(row)
        if bar is not None:
            bar.add(1, [(f"mean_{k}", float(np.mean([r[k] for r in rows])))
                        for k in ("psnr_in", "psnr_out")])
        if return_images:
            images.append((name, b[0], r[0], clean))
    if return_images:
        return rows, notes, images
    return rows, notes


def evaluate_degraded(model, images, degradation, seed, **kwargs):
    """Degrade clean images deterministically, restore them with ``model`` and score them.

    Image ``i`` is cut to a multiple of the degradation's ``scale`` (top-left corner kept,
    so that an SR output matches it) and degraded with the stateless seed ``[seed, i]``
    (:func:`tfrestore.data.degrade_image`): the same images, degradation and seed give the
    same numbers wherever they are evaluated.

    Args:
        model: keras.Model. The restoration model.
        images: iterable of ``(name, clean)`` with ``clean`` an ``(H, W, C)`` float image in
            [0, 1]; read one at a time when it is a generator.
        degradation: a degradation or anything :func:`tfrestore.data.get_degradation` takes.
        seed: int. The first half of every image's stateless seed.
        **kwargs: options of :func:`evaluate_model` (tiling, metrics, ``return_images``, ...).

    Returns:
        What :func:`evaluate_model` returns: ``(rows, notes)`` (and the images).
    """
    from tfrestore.data import degrade_image, get_degradation

    deg = get_degradation(degradation)
    scale = int(getattr(deg, "scale", 1) or 1)

    def items():
        for i, (name, clean) in enumerate(images):
            clean = np.asarray(clean, np.float32)
            h, w = clean.shape[:2]
            clean = clean[: h - h % scale, : w - w % scale]
            x = degrade_image(deg, clean, [seed, i])
            yield name, x if isinstance(x, tuple) else x[0], clean

    return evaluate_model(model, items(), **kwargs)


def add_mean_row(rows, label="mean"):
    """``rows`` plus a row averaging every numeric column."""
    if not rows:
        return list(rows)
    keys = [k for k in rows[0] if k != "image"]
    mean = {"image": label}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        mean[k] = float(np.mean(vals)) if vals else float("nan")
    return list(rows) + [mean]


def _columns(rows):
    cols = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    return cols


def format_table(rows, digits=4):
    """Plain-text table of dict rows (numbers with ``digits`` decimals)."""
    cols = _columns(rows)

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def write_csv(rows, path):
    """Write dict rows to ``path`` atomically (directories created); returns the path."""
    from tfrestore.utils.files import atomic_output

    cols = _columns(rows)
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return path
