"""Figures of a training run, drawn with PIL only (no plotting dependency).

* :func:`image_grid`: rows of ``degraded | restored | clean`` with captions.
* :func:`loss_curve`: training / validation loss (and PSNR) per epoch from the
  run's ``history.csv``.

>>> import numpy as np, tempfile, os
>>> d = tempfile.mkdtemp()
>>> img = np.zeros((16, 24, 3), "float32")
>>> path = image_grid([("x", img, img, img, ["in", "out", "gt"])], os.path.join(d, "g.png"))
>>> path.endswith("g.png")
True
>>> history = {"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.5]}
>>> loss_curve(history, os.path.join(d, "c.png")).endswith("c.png")
True
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

__all__ = ["image_grid", "loss_curve", "read_history"]

_BG = (255, 255, 255)
_FG = (20, 20, 20)
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _to_u8(img, size=None):
    from PIL import Image

    arr = np.asarray(img, np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    u8 = np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(u8).convert("RGB")
    if size is not None and im.size != size:
        im = im.resize(size, Image.NEAREST)
    return im


def image_grid(rows, path, max_width=256):
    """Write a grid: each row ``(name, degraded, restored, clean, captions)``.

    Images are scaled (nearest) to the clean image's size and to at most
    ``max_width`` pixels wide; ``captions`` label the three columns.
    """
    from PIL import Image, ImageDraw

    font = _font()
    cells = []
    for name, degraded, restored, clean, captions in rows:
        h, w = np.asarray(clean).shape[:2]
        f = min(1.0, max_width / w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        cells.append((name, [_to_u8(x, size) for x in (degraded, restored, clean)], captions, size))
    pad, text_h = 6, 30
    width = max(3 * s[0] + 4 * pad for *_, s in cells)
    height = sum(s[1] + text_h + pad for *_, s in cells) + pad
    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    y = pad
    for name, ims, captions, size in cells:
        x = pad
        for im, cap in zip(ims, captions):
            draw.text((x, y), f"{name}: {cap}" if x == pad else cap, fill=_FG, font=font)
            canvas.paste(im, (x, y + text_h - 8))
            x += size[0] + pad
        y += size[1] + text_h + pad
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path)
    return path


def read_history(csv_path):
    """``{column: [floats]}`` from a Keras ``CSVLogger`` file."""
    out = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                try:
                    out.setdefault(k, []).append(float(v))
                except (TypeError, ValueError):
                    out.setdefault(k, []).append(float("nan"))
    return out


def _nice_ticks(lo, hi, n=5):
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + 1e-6 + abs(lo) * 1e-3
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step) * step
    ticks = []
    t = start
    while t <= hi + 1e-12:
        ticks.append(t)
        t += step
    return ticks


def _panel(draw, box, series, title, font, epochs_from=1):
    x0, y0, x1, y1 = box
    draw.text((x0 + 40, y0 - 16), title, fill=_FG, font=font)
    values = [v for _, vals in series for v in vals if math.isfinite(v)]
    if not values:
        return
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * abs(lo or 1) * 0.1, hi + 0.5 * abs(hi or 1) * 0.1
    n = max(len(vals) for _, vals in series)
    px0, px1, py0, py1 = x0 + 48, x1 - 10, y0 + 6, y1 - 34
    draw.rectangle([px0, py0, px1, py1], outline=_FG)

    def sx(i):
        return px0 + (px1 - px0) * (i / max(n - 1, 1))

    def sy(v):
        return py1 - (py1 - py0) * ((v - lo) / (hi - lo))

    for t in _nice_ticks(lo, hi):
        yy = sy(t)
        draw.line([px0 - 3, yy, px0, yy], fill=_FG)
        draw.text((x0, yy - 6), f"{t:.3g}", fill=_FG, font=font)
    step = max(1, int(math.ceil(n / 8)))
    for i in range(0, n, step):
        xx = sx(i)
        draw.line([xx, py1, xx, py1 + 3], fill=_FG)
        draw.text((xx - 4, py1 + 5), str(i + epochs_from), fill=_FG, font=font)
    draw.text(((px0 + px1) // 2 - 16, py1 + 19), "epoch", fill=_FG, font=font)
    lx = px1 - 90 * len(series)  # legend above the plot, right-aligned with it
    for k, (label, vals) in enumerate(series):
        colour = _COLOURS[k % len(_COLOURS)]
        pts = [(sx(i), sy(v)) for i, v in enumerate(vals) if math.isfinite(v)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for p in pts:
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
        draw.line([lx, y0 - 9, lx + 16, y0 - 9], fill=colour, width=2)
        draw.text((lx + 20, y0 - 16), label, fill=_FG, font=font)
        lx += 90


def loss_curve(history, path):
    """Plot loss / val_loss (and val_psnr when present) per epoch to ``path``."""
    from PIL import Image, ImageDraw

    font = _font()
    loss_series = [(k, history[k]) for k in ("loss", "val_loss") if history.get(k)]
    psnr_series = [(k, history[k]) for k in ("psnr", "val_psnr") if history.get(k)]
    panels = [("loss per epoch", loss_series)] + (
        [("PSNR (dB) per epoch", psnr_series)] if psnr_series else []
    )
    pw, ph = 420, 260
    canvas = Image.new("RGB", (pw * len(panels), ph + 20), _BG)
    draw = ImageDraw.Draw(canvas)
    for i, (title, series) in enumerate(panels):
        _panel(draw, (i * pw + 8, 24, (i + 1) * pw - 8, ph + 10), series, title, font)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path)
    return path
