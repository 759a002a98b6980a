"""The report of a training run: held-out metrics and figures.

* :func:`write_report`: the best model on the held-out images (degraded from ``seed + 2``
  through :func:`tfrestore.inference.evaluate_degraded`, the path of ``tfrestore eval``):
  ``report/metrics.csv``, the grid and the loss curve, and the table on stdout.
* :func:`image_grid`: rows of ``degraded | restored | clean`` with captions (PIL: it
  places images pixel for pixel).
* :func:`loss_curve`: training / validation loss, each logged loss term and PSNR per
  epoch from the run's ``history.csv`` (matplotlib).

>>> import numpy as np, tempfile, os
>>> d = tempfile.mkdtemp()
>>> img = np.zeros((16, 24, 3), "float32")
>>> path = image_grid([("x", img, img, img, ["in", "out", "gt"])], os.path.join(d, "g.png"))
>>> path.endswith("g.png")
True
>>> history = {"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.5], "l1": [0.9, 0.4, 0.3]}
>>> loss_curve(history, os.path.join(d, "c.png")).endswith("c.png")
True
"""

from __future__ import annotations

import csv
import os

import numpy as np

from tfrestore.utils.files import atomic_output

__all__ = ["write_report", "image_grid", "loss_curve", "read_history"]

_BG = (255, 255, 255)
_FG = (20, 20, 20)
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def write_report(result, paths, rc, degradation):
    """Evaluate the run's best model (else its final one) on the held-out images; write the
    metrics CSV, the before/after grid and the loss curve, and print the table.

    Args:
        result: TrainResult. The run's result; its ``report_rows`` and ``files`` are
            filled in.
        paths: dict. The run's file paths (``run_paths``: ``best``, ``metrics_csv``,
            ``grid``, ``loss_curve``).
        rc: RunConfig. The run's :class:`~tfrestore.training.run_config.RunConfig`;
            image ``i`` is degraded with seed ``[rc.seed + 2, i]`` (training uses
            ``seed``, validation ``seed + 1``).
        degradation: Degradation. The run's degradation (``data.degradation``).
    """
    from tfrestore.inference.evaluate import (
        add_mean_row,
        evaluate_degraded,
        format_table,
        write_csv,
    )
    from tfrestore.training.data import held_out_images

    model = result.model
    if os.path.isfile(paths["best"]):
        from tfrestore.inference.restore import load_model

        model = load_model(paths["best"])
    scale = int(getattr(degradation, "scale", 1) or 1)
    rows, notes, images = evaluate_degraded(
        model,
        held_out_images(rc, multiple=scale),
        degradation,
        rc.seed + 2,
        lpips=rc.metrics.lpips,
        return_images=True,
    )
    table_rows = add_mean_row(rows)
    write_csv(table_rows, paths["metrics_csv"])
    in_label = "bicubic" if scale > 1 else "degraded"
    grid_rows = [
        (
            name,
            deg_img,
            restored,
            clean,
            [
                f"{in_label} {row['psnr_in']:.2f} dB / {row['ssim_in']:.3f}",
                f"restored {row['psnr_out']:.2f} dB / {row['ssim_out']:.3f}",
                "clean",
            ],
        )
        for row, (name, deg_img, restored, clean) in zip(rows, images)
    ]
    image_grid(grid_rows, paths["grid"])
    loss_curve(result.history, paths["loss_curve"])
    result.report_rows = table_rows
    result.files.update({k: paths[k] for k in ("metrics_csv", "grid", "loss_curve")})
    print(
        f"\n[tfrestore] held-out images: {in_label} input vs restored (PSNR dB, SSIM"
        + (", LPIPS" if rows and "lpips_in" in rows[0] else "")
        + ")"
    )
    print(format_table(table_rows))
    for n in notes:
        print(f"[tfrestore] note: {n}")
    print(f"[tfrestore] metrics table: {paths['metrics_csv']}")
    print(f"[tfrestore] before/after grid: {paths['grid']}")
    print(f"[tfrestore] loss curve: {paths['loss_curve']}", flush=True)


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
    with atomic_output(path) as tmp:
        canvas.save(tmp)
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


def _term_keys(history):
    """Per-term loss columns (e.g. ``l1``, ``d2sm``) logged beside ``loss``."""
    not_terms = {"epoch", "loss", "learning_rate", "lr", "psnr", "ssim", "ms_ssim", "lpips"}
    return [k for k in history if not k.startswith("val_") and k not in not_terms]


def loss_curve(history, path, terms=None):
    """Plot the loss per epoch (train solid, validation dashed), each logged loss term,
    and PSNR when present, to ``path`` (PNG, matplotlib).

    Args:
        history: dict. ``{column: [values per epoch]}`` (``History.history`` or
            :func:`read_history`).
        path: str. Output file.
        terms: list of str or None. Names of the per-term columns; default: every
            training column that is neither ``loss`` nor a known image metric.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    terms = _term_keys(history) if terms is None else list(terms)
    terms = [t for t in terms if history.get(t)]
    panels = [("loss", ["loss"])]
    if terms:
        panels.append(("loss terms (weighted)", terms))
    if history.get("psnr") or history.get("val_psnr"):
        panels.append(("PSNR (dB)", ["psnr"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for i, key in enumerate(keys):
            colour = f"C{i}"
            for name, style in ((key, "-"), (f"val_{key}", "--")):
                values = history.get(name)
                if values:
                    epochs = np.arange(1, len(values) + 1)
                    ax.plot(epochs, values, style, color=colour, marker=".", label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        values = [v for k in keys for n in (k, f"val_{k}") for v in history.get(n) or []]
        values = [v for v in values if np.isfinite(v)]
        # Terms can differ by orders of magnitude (L1 vs a small-lambda feature loss).
        if len(keys) > 1 and values and min(values) > 0 and max(values) > 30 * min(values):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
