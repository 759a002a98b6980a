"""D2SM step cost vs PerceptualLoss, patch_mode image vs feature, queue memory, mode agreement.

Three measurements, each side by side in this one process:

1. whole-image D2SM with a 128-row queue vs PerceptualLoss on the same backbone
   layer (VGG19 conv5_4 by default) and the same small restorer;
2. internal patches: ``patch_mode="image"`` (backbone on every window, exact) vs
   ``patch_mode="feature"`` (one backbone pass, windows cut from the feature map);
   the default is the paper's geometry scaled by 1/2 (256 crops, 112 px windows
   every 28 px -> 6x6 = 36 windows, 6.9x the pixels) so that it runs on a CPU;
   pass ``--patch-image-size 512 --patch-size 224 --patch-stride 56`` for the
   paper's configuration;
3. ``--agreement``: how closely the two patch modes agree on real photographs
   (``$TFRESTORE_DATA_DIR``/kodak24) with the torchvision VGG16 weights
   (``vgg16_torchvision_features.npz`` in ``$TFRESTORE_WEIGHTS_DIR``), layer
   conv5_3 before the ReLU (VGG19 torchvision weights are not available offline):
   Pearson correlation of per-image loss values over several noise levels, and
   the cosine similarity of the gradients w.r.t. the restored image.

Queue memory is printed for every configuration used.
"""

from __future__ import annotations

import glob
import os
import time

import numpy as np

from bench.common import time_train_steps


def add_arguments(parser):
    parser.add_argument("--batch", type=int, default=4, help="batch of the whole-image comparison")
    parser.add_argument(
        "--size", type=int, default=64, help="crop size of the whole-image comparison"
    )
    parser.add_argument("--steps", type=int, default=8, help="timed steps per loss")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate the losses this many times and keep each one's fastest median "
        "(damps noise from other processes)",
    )
    parser.add_argument("--backbone", default="vgg19")
    parser.add_argument("--layer", default="conv5_4")
    parser.add_argument(
        "--weights", default="none", help="backbone weights for the timings (none = random)"
    )
    parser.add_argument("--queue", type=int, default=128, help="queue size of the whole-image D2SM")
    parser.add_argument("--patch-image-size", type=int, default=256)
    parser.add_argument("--patch-size", type=int, default=112)
    parser.add_argument("--patch-stride", type=int, default=28)
    parser.add_argument("--patch-batch", type=int, default=1)
    parser.add_argument("--patch-steps", type=int, default=2)
    parser.add_argument("--skip-timing", action="store_true", help="only run --agreement")
    parser.add_argument(
        "--agreement",
        action="store_true",
        help="measure image/feature patch-mode agreement on real images (VGG16 torchvision)",
    )
    parser.add_argument("--agreement-images", type=int, default=4)
    parser.add_argument("--agreement-size", type=int, default=256)
    parser.add_argument("--agreement-patch", type=int, default=112)
    parser.add_argument("--agreement-stride", type=int, default=28)
    parser.add_argument("--jit", action="store_true", help="compile the train steps with XLA")


def _weights(arg):
    return None if str(arg).lower() == "none" else arg


def _best(entries, rounds, **kwargs):
    best = {}
    for _ in range(rounds):
        for name, loss in entries.items():
            t = time_train_steps(loss, **kwargs)
            best[name] = min(best.get(name, float("inf")), t)
    return best


def _table(best, ref_name):
    ref = best[ref_name]
    print(f"{'loss':<58} {'ms/step':>9} {'ratio':>7}")
    for name, t in best.items():
        print(f"{name:<58} {t * 1e3:9.1f} {t / ref:7.2f}")


def timings(args):
    from tfrestore.losses import D2SMLoss, PerceptualLoss

    w = _weights(args.weights)
    print(
        f"== 1. whole image: batch {args.batch}, {args.size}x{args.size}, "
        f"{args.backbone} {args.layer}, "
        f"weights={w!r}, jit={args.jit}"
    )
    d2sm = D2SMLoss(
        backbone=args.backbone,
        layer=args.layer,
        weights=w,
        patch_size=None,
        queue_size=args.queue,
        image_size=args.size,
    )
    entries = {
        f"PerceptualLoss({args.layer}, l1)": PerceptualLoss(
            {args.layer: 1.0}, backbone=args.backbone, weights=w
        ),
        f"D2SMLoss(whole image, queue {args.queue})": d2sm,
    }
    best = _best(
        entries,
        args.rounds,
        batch=args.batch,
        size=args.size,
        steps=args.steps,
        jit_compile=args.jit,
    )
    _table(best, next(iter(entries)))
    print(
        f"queue memory (whole image, q={args.queue}, D={d2sm._queue.dim}): "
        f"{d2sm.queue_nbytes:,} bytes"
    )

    s, ps, st = args.patch_image_size, args.patch_size, args.patch_stride
    n_win = ((s - ps) // st + 1) ** 2
    print(
        f"\n== 2. patches: batch {args.patch_batch}, {s}x{s} crops, {ps}px windows every {st}px "
        f"({n_win} per image, {n_win * ps * ps / (s * s):.2f}x the pixels)"
    )
    kw = dict(backbone=args.backbone, layer=args.layer, weights=w, patch_size=ps, patch_stride=st)
    entries = {
        'D2SMLoss(patch_mode="feature")': D2SMLoss(patch_mode="feature", **kw),
        'D2SMLoss(patch_mode="image")': D2SMLoss(patch_mode="image", **kw),
    }
    best = _best(
        entries,
        max(1, args.rounds - 1),
        batch=args.patch_batch,
        size=s,
        steps=args.patch_steps,
        warmup=1,
        jit_compile=args.jit,
    )
    _table(best, 'D2SMLoss(patch_mode="feature")')
    t_img, t_feat = best['D2SMLoss(patch_mode="image")'], best['D2SMLoss(patch_mode="feature")']
    print(f"speed-up of patch_mode='feature': {t_img / t_feat:.2f}x")
    q = D2SMLoss(queue_size=256, **kw)
    print(
        f"queue memory (patches, q=256, D={q._queue.dim}): {q.queue_nbytes:,} bytes; "
        "paper geometry "
        f"(224 windows, VGG19 conv5_4, q=256): {2 * 256 * 14 * 14 * 512 * 4:,} bytes"
    )


def _real_images(n, size):
    from PIL import Image

    data = os.environ.get("TFRESTORE_DATA_DIR") or os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data"
    )
    files = sorted(glob.glob(os.path.join(data, "kodak24", "*.png")))[:n]
    if not files:
        raise SystemExit(f"no kodak24 images under {data}; set TFRESTORE_DATA_DIR")
    out = []
    for f in files:
        a = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0
        h, w = a.shape[:2]
        out.append(
            a[(h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size]
        )
    return np.stack(out)


def mode_agreement(
    clean,
    *,
    weights,
    patch_size,
    patch_stride,
    sigmas=(0.03, 0.1, 0.2),
    backbone="vgg16",
    layer="conv5_3",
    seed=0,
):
    """Per-image D2SM values and gradients in both patch modes.

    ``y_pred`` = ``clean`` + Gaussian noise of each ``sigma`` (a stand-in for
    imperfect restorations); one similarity set per image. Returns a dict with
    the Pearson correlation of the values, the feature/image ratio of their means,
    the per-image gradient cosine similarities and the timings.
    """
    import tensorflow as tf

    from tfrestore.losses import D2SMLoss

    rng = np.random.default_rng(seed)
    kw = dict(
        backbone=backbone,
        layer=layer,
        weights=weights,
        patch_size=patch_size,
        patch_stride=patch_stride,
        group_by_image=True,
        reduction=None,
    )
    losses = {m: D2SMLoss(patch_mode=m, **kw) for m in ("image", "feature")}
    values = {m: [] for m in losses}
    grads = {m: [] for m in losses}
    seconds = {m: 0.0 for m in losses}
    for sigma in sigmas:
        noisy = np.clip(clean + sigma * rng.normal(size=clean.shape), 0, 1).astype("float32")
        for m, loss in losses.items():
            yp = tf.Variable(noisy)
            t0 = time.perf_counter()
            with tf.GradientTape() as tape:
                v = loss(clean, yp)
                total = tf.reduce_sum(v)
            g = tape.gradient(total, yp).numpy()
            seconds[m] += time.perf_counter() - t0
            values[m].extend(v.numpy().tolist())
            grads[m].extend(g.reshape(len(g), -1))
    vi, vf = np.asarray(values["image"]), np.asarray(values["feature"])
    cos = [
        float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        for a, b in zip(grads["image"], grads["feature"])
    ]
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    return {
        "pearson": float(np.corrcoef(vi, vf)[0, 1]),
        "spearman": float(np.corrcoef(rank(vi), rank(vf))[0, 1]),
        "mean_ratio": float(vf.mean() / vi.mean()),
        "grad_cos": cos,
        "seconds": seconds,
        "values": (vi, vf),
    }


def agreement(args):
    wdir = os.environ.get("TFRESTORE_WEIGHTS_DIR") or os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "weights"
    )
    npz = os.path.join(wdir, "vgg16_torchvision_features.npz")
    if not os.path.isfile(npz):
        raise SystemExit(f"{npz} not found; set TFRESTORE_WEIGHTS_DIR")
    clean = _real_images(args.agreement_images, args.agreement_size)
    print(
        f"\n== 3. patch-mode agreement: {len(clean)} kodak24 crops {args.agreement_size}px, "
        "windows "
        f"{args.agreement_patch}/{args.agreement_stride}, VGG16 conv5_3 (pre-ReLU), "
        "torchvision weights"
    )
    r = mode_agreement(
        clean, weights=npz, patch_size=args.agreement_patch, patch_stride=args.agreement_stride
    )
    cos = np.asarray(r["grad_cos"])
    print(
        f"loss values: Pearson r = {r['pearson']:.3f}, Spearman = {r['spearman']:.3f}, "
        f"mean(feature)/mean(image) = {r['mean_ratio']:.3f} over {len(cos)} image x noise cases"
    )
    print(
        f"gradient cosine (per image): mean {cos.mean():.3f}, min {cos.min():.3f}, "
        f"max {cos.max():.3f}"
    )
    s = r["seconds"]
    print(
        f"forward+backward seconds: image {s['image']:.1f}, feature {s['feature']:.1f} "
        f"({s['image'] / s['feature']:.2f}x)"
    )
    return r


def run(args):
    if not args.skip_timing:
        timings(args)
    if args.agreement:
        agreement(args)
    return 0
