"""D2SM step cost vs PerceptualLoss (whole image + queue) and with internal patches, queue memory.

Two measurements, each side by side in this one process:

1. whole-image D2SM with a 128-row queue vs PerceptualLoss on the same backbone
   layer (VGG19 conv5_4 by default) and the same small restorer;
2. internal patches (the backbone runs on every window, as in the paper); the
   default is the paper's geometry scaled by 1/2 (256 crops, 112 px windows every
   28 px -> 6x6 = 36 windows, 6.9x the pixels) so that it runs on a CPU; pass
   ``--patch-image-size 512 --patch-size 224 --patch-stride 56`` for the paper's
   configuration.

The former ``patch_mode="feature"`` (windows cut from one whole-image feature map)
was removed: on torchvision VGG16 conv5_3 its gradients had a mean cosine of 0.3-0.4
with the exact windows'. ``python -m bench d2sm_signal`` measures D2SM's
gradient strength against L1.

Queue memory is printed for every configuration used.
"""

from __future__ import annotations

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
        layers=args.layer,
        weights=w,
        patch_size=None,
        queue_size=args.queue,
        image_size=args.size,
    )
    entries = {
        f"PerceptualLoss({args.layer}, l1)": PerceptualLoss(
            args.layer, backbone=args.backbone, weights=w
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
    kw = dict(backbone=args.backbone, layers=args.layer, weights=w, patch_size=ps, patch_stride=st)
    entries = {
        f"PerceptualLoss({args.layer}, l1), whole crop": PerceptualLoss(
            args.layer, backbone=args.backbone, weights=w
        ),
        f"D2SMLoss({ps}/{st} windows)": D2SMLoss(**kw),
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
    _table(best, next(iter(entries)))
    q = D2SMLoss(queue_size=256, **kw)
    print(
        f"queue memory (patches, q=256, D={q._queue.dim}): {q.queue_nbytes:,} bytes; "
        "paper geometry "
        f"(224 windows, VGG19 conv5_4, q=256): {2 * 256 * 14 * 14 * 512 * 4:,} bytes"
    )


def run(args):
    timings(args)
    return 0
