"""Training-step cost of L1 + PerceptualLoss (VGG16 relu3_3) relative to L1 alone."""

from __future__ import annotations

import os

from bench.common import time_train_steps


def add_arguments(parser):
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="square crop size")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per loss")
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--layer", default="relu3_3")
    parser.add_argument(
        "--weights",
        default="auto",
        help="'auto' (torchvision npz from $TFRESTORE_WEIGHTS_DIR if present, else random), "
        "'none', 'imagenet', 'torchvision' or a file path",
    )
    parser.add_argument("--jit", action="store_true", help="compile the train step with XLA")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate the losses this many times; the fastest median of each is "
        "kept, which damps noise from other processes on a shared machine",
    )


def _weights(arg, backbone):
    if arg == "auto":
        wdir = os.environ.get("TFRESTORE_WEIGHTS_DIR")
        npz = os.path.join(wdir, f"{backbone}_torchvision_features.npz") if wdir else None
        return "torchvision" if npz and os.path.isfile(npz) else None
    return None if arg.lower() == "none" else arg


def run(args):
    from tfrestore.losses import L1, PerceptualLoss

    weights = _weights(args.weights, args.backbone)
    perceptual = PerceptualLoss(args.layer, backbone=args.backbone, weights=weights)
    print(
        f"batch {args.batch}, {args.size}x{args.size}, {args.steps} steps, "
        f"{args.backbone} {args.layer}, weights={weights!r}, jit={args.jit}"
    )
    entries = {
        "L1": L1(),
        f"L1 + Perceptual({args.backbone} {args.layer})": L1() + perceptual,
    }
    best = {}
    for _ in range(args.rounds):
        for name, loss in entries.items():
            t = time_train_steps(
                loss, batch=args.batch, size=args.size, steps=args.steps, jit_compile=args.jit
            )
            best[name] = min(best.get(name, float("inf")), t)
    ref = best["L1"]
    print(f"{'loss':<44} {'ms/step':>9} {'ratio':>7}")
    for name, t in best.items():
        print(f"{name:<44} {t * 1e3:9.1f} {t / ref:7.2f}")
    return 0
