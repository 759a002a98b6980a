"""D2SM gradient strength vs L1 at a half-denoised image, per setting and kernel temperature.

What a weight ``lambda`` does to training depends on how strong each term's
gradient is at the restorer's output. This measures, at a "half-denoised"
prediction ``y_pred = (clean + noisy) / 2`` (Gaussian noise of ``--sigma``/255,
clipped to [0, 1]) of real photographs, the norm of the gradient w.r.t.
``y_pred`` of ``D2SMLoss`` (lambda = 1; the ratio scales with lambda) divided by
that of ``L1`` (both reduced by the batch mean, as ``compile`` does), for several
settings and kernel temperatures (``None`` = the paper's kernel ``(cos + 1) / 2``).

Backbone: torchvision VGG16 conv5_3 before its ReLU (the paper's VGG19
ImageNet weights are not available offline; ``--backbone vgg19 --weights
imagenet`` uses them where they are). Settings (``--settings``):

* ``paper``: 512-px crops of kodak24 (cbsd432 images are smaller than 512 px),
  224-px windows every 56 px (36 per image), one set for the batch;
* ``patches256``: 256-px cbsd432 crops, 128/32 windows (25 per image);
* ``whole64_q64``: whole 64-px cbsd432 crops, a queue of 64 rows (filled with
  other crops' rows, as after a few training steps);
* ``whole256_q64``: whole 256-px cbsd432 crops, queue of 64 rows.

The backbone runs on windows in chunks and each temperature's gradient is
back-propagated from the feature rows, so the paper setting fits in a few GB;
the set arithmetic is the library's, and ``--check`` compares the value at
``temperature=None`` with ``D2SMLoss`` itself.

Example (about 10 minutes on 2 CPU cores; ``paper`` alone takes most of it)::

    python -m bench d2sm_signal --settings whole64_q64,patches256,paper
"""

from __future__ import annotations

import glob
import os
import time

import numpy as np

#: eps inside the logarithms: the released code's 1e-6, with which the ratios in the
#: README and the D2SMLoss docstring were measured (D2SMLoss's default is 0).
EPS = 1e-6

SETTINGS = {
    "paper": dict(data="kodak24", crop=512, patch=224, stride=56, batch=2, queue=0),
    "patches256": dict(data="cbsd432", crop=256, patch=128, stride=32, batch=2, queue=0),
    "whole64_q64": dict(data="cbsd432", crop=64, patch=None, stride=None, batch=8, queue=64),
    "whole256_q64": dict(data="cbsd432", crop=256, patch=None, stride=None, batch=8, queue=64),
}


def add_arguments(parser):
    parser.add_argument("--settings", default="whole64_q64,patches256,paper")
    parser.add_argument(
        "--temperatures",
        default="none,1,0.3,0.1,0.03",
        help="comma list; 'none' is the paper's kernel (cos + 1) / 2",
    )
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--layer", default="conv5_3")
    parser.add_argument(
        "--weights", default="torchvision", help="backbone weights ('none' = seeded random)"
    )
    parser.add_argument("--sigma", type=float, default=50.0, help="noise sigma in 0..255 units")
    parser.add_argument("--batch", type=int, default=None, help="override every setting's batch")
    parser.add_argument("--chunk", type=int, default=4, help="windows per backbone call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="default: $TFRESTORE_DATA_DIR")
    parser.add_argument("--check", action="store_true", help="compare with D2SMLoss itself")
    parser.add_argument("--csv", default=None, help="also write the rows to this CSV file")


def parse_temperatures(text):
    out = []
    for t in str(text).split(","):
        t = t.strip().lower()
        if t:
            out.append(None if t == "none" else float(t))
    return out


def load_crops(folder, n, size, seed=0):
    """``n`` crops of ``size`` px (seeded random positions) from the images of ``folder``."""
    from PIL import Image

    files = sorted(
        f
        for ext in ("png", "jpg", "jpeg", "bmp")
        for f in glob.glob(os.path.join(folder, f"*.{ext}"))
    )
    if not files:
        raise SystemExit(f"no images in {folder}; set TFRESTORE_DATA_DIR or --data-dir")
    rng = np.random.default_rng(seed)
    out = []
    for f in files:
        a = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0
        h, w = a.shape[:2]
        if h < size or w < size:
            continue
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        out.append(a[y:y + size, x:x + size])
        if len(out) == n:
            break
    if len(out) < n:
        raise SystemExit(f"{folder} has only {len(out)} images of at least {size} px")
    return np.stack(out)


def half_denoised(clean, sigma, seed=0):
    rng = np.random.default_rng(seed + 1)
    noisy = clean + sigma / 255.0 * rng.normal(size=clean.shape)
    return np.clip(0.5 * (clean + noisy), 0.0, 1.0).astype("float32")


def _windows(image, loss):
    """Top-left corners of the loss's windows on one (H, W, C) image (one window
    covering the image when the loss uses whole images)."""
    from tfrestore.losses.patches import window_grid

    if loss.patch_size is None:
        return [(0, 0)], image.shape[0]
    return window_grid(image.shape[0], image.shape[1], loss.patch_size, loss.patch_stride), (
        loss.patch_size
    )


def _rows(loss, images, chunk, tape=None):
    """L2-normalised rows ``(B, P, D)`` of ``images`` (a list of ``(H, W, C)`` tensors),
    computed ``chunk`` windows at a time, exactly as ``loss.features``."""
    import tensorflow as tf

    out = []
    for img in images:
        corners, s = _windows(img, loss)
        rows = []
        for i in range(0, len(corners), chunk):
            win = tf.stack([img[y:y + s, x:x + s] for y, x in corners[i:i + chunk]])
            rows.append(loss.whole.features(win)[:, 0])
        out.append(tf.concat(rows, 0))
    return tf.stack(out)


def set_value(fs, ft, queue, temperature, include_diagonal=False, eps=EPS):
    """The D2SM loss (batch mean of the per-sample values) of one set: the batch's
    rows ``fs``/``ft`` (``(B, P, D)``) plus the queue rows, ``kl``/``sum_rows_mean``."""
    import tensorflow as tf

    from tfrestore.losses._similarity import set_divergence

    d = fs.shape[-1]
    qs, qt, qm = queue if queue is not None else (None, None, None)
    rows, _, n = set_divergence(
        tf.reshape(fs, [1, -1, d]),
        tf.reshape(ft, [1, -1, d]),
        qs,
        qt,
        qm,
        divergence="kl",
        include_diagonal=include_diagonal,
        eps=eps,
        temperature=temperature,
    )
    return tf.reduce_sum(rows) / n


def clean_perplexity(ft, queue, temperature, include_diagonal=False):
    """Mean perplexity ``exp(entropy)`` of the clean rows' neighbour distributions,
    divided by the number of neighbours: 1 = uniform (no information), small =
    each sample has a few distinct neighbours."""
    import tensorflow as tf

    from tfrestore.losses._similarity import conditional_probabilities, softmax_probabilities

    d = ft.shape[-1]
    rows = tf.reshape(ft, [-1, d])
    if queue is not None:
        rows = tf.concat([rows, queue[1]], 0)
    cos = tf.matmul(rows, rows, transpose_b=True)
    mask = tf.ones([tf.shape(rows)[0]])
    if temperature is None:
        p = conditional_probabilities((cos + 1.0) * 0.5, mask, include_diagonal)
    else:
        p = softmax_probabilities(cos, mask, include_diagonal, temperature)
    p = p.numpy().astype(np.float64)
    h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(1)
    neighbours = p.shape[1] - (0 if include_diagonal else 1)
    return float(np.mean(np.exp(h)) / neighbours)


class _Features:
    """A ``D2SMLoss`` (for its settings) and a whole-image twin for window rows."""

    def __init__(self, backbone, layers, weights, patch, stride):
        from tfrestore.losses import D2SMLoss

        kw = dict(backbone=backbone, layers=layers, weights=weights)
        self.patch_size, self.patch_stride = patch, stride
        self.whole = D2SMLoss(patch_size=None, **kw)


def measure(
    setting,
    temperatures,
    *,
    backbone="vgg16",
    layers="conv5_3",
    weights="torchvision",
    sigma=50.0,
    batch=None,
    chunk=4,
    seed=0,
    data_dir=None,
    check=False,
    crops=None,
):
    """Gradient-norm ratios for one setting. Returns a list of dict rows.

    ``crops`` (optional) replaces the images loaded from ``data_dir``: an array of
    ``batch + queue`` clean crops.
    """
    import tensorflow as tf

    from tfrestore.losses import L1, D2SMLoss

    cfg = dict(SETTINGS[setting]) if isinstance(setting, str) else dict(setting)
    name = setting if isinstance(setting, str) else cfg.get("name", "custom")
    b = batch or cfg["batch"]
    q = cfg["queue"]
    if crops is None:
        data_dir = data_dir or os.environ.get("TFRESTORE_DATA_DIR") or "../shared/data"
        crops = load_crops(os.path.join(data_dir, cfg["data"]), b + q, cfg["crop"], seed)
    clean_all = crops.astype("float32")
    pred_all = half_denoised(clean_all, sigma, seed)
    clean, pred = clean_all[:b], pred_all[:b]
    fx = _Features(backbone, layers, weights, cfg["patch"], cfg["stride"])

    t0 = time.perf_counter()
    ft = _rows(fx, [tf.constant(c) for c in clean], chunk)
    fs = _rows(fx, [tf.constant(c) for c in pred], chunk)
    queue = None
    if q:
        qs = _rows(fx, [tf.constant(c) for c in pred_all[b:]], chunk)
        qt = _rows(fx, [tf.constant(c) for c in clean_all[b:]], chunk)
        d = qs.shape[-1]
        queue = (tf.reshape(qs, [-1, d]), tf.reshape(qt, [-1, d]), tf.ones([q * qs.shape[1]]))

    yp = tf.Variable(pred)
    with tf.GradientTape() as tape:
        l1 = tf.reduce_mean(L1(reduction=None)(clean, yp))
    g = tape.gradient(l1, yp).numpy()
    g_l1 = float(np.linalg.norm(g))
    l1_towards = float(-g.ravel() @ (clean - pred).ravel() / (g_l1 * np.linalg.norm(clean - pred)))

    # d value / d rows for every temperature (cheap), then one backbone backward
    # per temperature and chunk of windows.
    values, row_grads = {}, {}
    for t in temperatures:
        fsv = tf.Variable(fs)
        with tf.GradientTape() as tape:
            v = set_value(fsv, ft, queue, t)
        values[t] = float(v)
        row_grads[t] = tape.gradient(v, fsv)
    grads = {t: np.zeros_like(pred) for t in temperatures}
    for i in range(b):
        img = tf.Variable(pred[i])
        corners, s = _windows(pred[i], fx)
        for j in range(0, len(corners), chunk):
            part = corners[j:j + chunk]
            with tf.GradientTape(persistent=True) as tape:
                win = tf.stack([img[y:y + s, x:x + s] for y, x in part])
                rows = fx.whole.features(win)[:, 0]
            for t in temperatures:
                g = tape.gradient(rows, img, output_gradients=row_grads[t][i, j:j + len(part)])
                grads[t][i] += g.numpy()
            del tape
    seconds = time.perf_counter() - t0

    if check:
        kw = dict(backbone=backbone, layers=layers, weights=weights, eps=EPS)
        if cfg["patch"] is None:
            ref = D2SMLoss(patch_size=None, queue_size=q or 0, image_size=cfg["crop"], **kw)
            if q:
                for k in range(b, b + q, b):  # fill the real queue with the same rows
                    ref(clean_all[k:k + b], pred_all[k:k + b])
        else:
            ref = D2SMLoss(patch_size=cfg["patch"], patch_stride=cfg["stride"], **kw)
        with ref.frozen_queue():
            want = float(ref(clean, pred))
        got = float(set_value(fs, ft, queue, None))
        if not np.isclose(got, want, rtol=1e-3):
            raise AssertionError(f"{name}: bench value {got} != D2SMLoss {want}")
        print(f"# {name}: check ok (bench {got:.6g}, D2SMLoss {want:.6g})")

    out = []
    residual = (clean - pred).ravel()
    for t in temperatures:
        g = float(np.linalg.norm(grads[t]))
        # Does a descent step move y_pred towards the clean image?
        towards = float(-grads[t].ravel() @ residual / (g * np.linalg.norm(residual) + 1e-30))
        out.append(
            dict(
                setting=name,
                crop=cfg["crop"],
                windows=f"{cfg['patch']}/{cfg['stride']}" if cfg["patch"] else "whole",
                batch=b,
                queue=q,
                rows=int(fs.shape[0] * fs.shape[1]) + (q * int(fs.shape[1]) if q else 0),
                temperature="none" if t is None else t,
                d2sm=values[t],
                grad_l1=g_l1,
                l1_cos_to_clean=l1_towards,
                grad_d2sm=g,
                ratio=g / g_l1,
                cos_to_clean=towards,
                perplexity=clean_perplexity(ft, queue, t),
                seconds=seconds,
            )
        )
    return out


def _table(rows):
    head = (
        "| setting | crop | windows | batch | queue | set rows | temperature | D2SM value | "
        "‖∇D2SM‖ | ‖∇L1‖ | ratio | cos(−∇, clean−pred) | "
        "perplexity / neighbours |"
    )
    print(head)
    print("|---" * 13 + "|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['crop']} | {r['windows']} | {r['batch']} | {r['queue']} | "
            f"{r['rows']} | {r['temperature']} | {r['d2sm']:.3g} | {r['grad_d2sm']:.3g} | "
            f"{r['grad_l1']:.3g} | {r['ratio']:.3g} | {r['cos_to_clean']:.3f} | "
            f"{r['perplexity']:.3f} |"
        )


def run(args):
    if args.csv and os.path.exists(args.csv):  # checked before the measurements, not after
        raise SystemExit(f"error: --csv {args.csv} exists; remove it or choose another file")
    temps = parse_temperatures(args.temperatures)
    weights = None if str(args.weights).lower() == "none" else args.weights
    rows = []
    for name in [s.strip() for s in args.settings.split(",") if s.strip()]:
        if name not in SETTINGS:
            print(f"unknown setting {name!r}; choose from {sorted(SETTINGS)}")
            return 2
        r = measure(
            name,
            temps,
            backbone=args.backbone,
            layers=args.layer,
            weights=weights,
            sigma=args.sigma,
            batch=args.batch,
            chunk=args.chunk,
            seed=args.seed,
            data_dir=args.data_dir,
            check=args.check,
        )
        print(
            f"# {name}: {r[0]['seconds']:.0f} s; L1: cos(-grad, clean - pred) = "
            f"{r[0]['l1_cos_to_clean']:.3f}",
            flush=True,
        )
        rows.extend(r)
    _table(rows)
    if args.csv:
        import csv

        from tfrestore.utils.files import atomic_output

        with atomic_output(args.csv) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0
