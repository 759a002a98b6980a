"""Restoration networks: parameters and forward+backward train-step time (MSE, Adam).

Every network is timed in the same process, interleaved round by round, at
``--size`` x ``--size`` output resolution and ``--batch`` images (EDSR gets
``size / scale`` inputs; the valid-padded Liu denoiser gets ``size + 4`` and gives
``size - 2``, the nearest sizes its arithmetic allows), and
the table reports the median ms per step and the ratio to DnCNN-17.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from tfrestore.models import EDSR, FFDNet, LiuDenoiser, UNet, DnCNN, cascade, trainable_params


def _entries(args):
    s = args.size
    entries = {
        "DnCNN-17 (colour)": (lambda: DnCNN(depth=17, channels=3), (s, s)),
        "DnCNN-20 (CDnCNN-B)": (lambda: DnCNN(depth=20, channels=3), (s, s)),
        "FFDNet colour (non-blind)": (lambda: FFDNet(channels=3), (s, s)),
        "LiuDenoiser same": (lambda: LiuDenoiser(padding="same"), (s, s)),
        "LiuDenoiser valid": (lambda: LiuDenoiser(padding="valid"), (s + 4, s + 4)),  # output s - 2
        "EDSR baseline x2": (lambda: EDSR(scale=2), (s // 2, s // 2)),
        "EDSR baseline x4": (lambda: EDSR(scale=4), (s // 4, s // 4)),
        "UNet (SRN-style, 3 scales)": (lambda: UNet(), (s, s)),
        "Liu same + frozen VGG16 (cascade)": (lambda: _liu_vgg_cascade(s), (s, s)),
    }
    if args.large:
        entries["EDSR large x2"] = (lambda: EDSR(scale=2, variant="large"), (s // 2, s // 2))
    if args.only:
        keep = [k for k in entries if any(o.lower() in k.lower() for o in args.only)]
        entries = {k: entries[k] for k in keep}
    return entries


def _liu_vgg_cascade(size):
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    head = keras.Sequential([vgg, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1000)])
    return cascade(LiuDenoiser(padding="same"), head, preprocessing="caffe")


def _make_step(model, batch, in_hw, jit):
    rng = np.random.default_rng(0)
    ins = []
    for t in model.inputs:
        shape = (
            [batch]
            + [d if d is not None else in_hw[i] for i, d in enumerate(t.shape[1:3])]
            + [t.shape[-1]]
        )
        if len(t.shape) == 2:  # FFDNet noise level
            shape = [batch, t.shape[-1]]
        ins.append(tf.constant(rng.uniform(size=shape).astype("float32")))
    outs = model(ins if len(ins) > 1 else ins[0])
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    targets = [tf.constant(rng.uniform(size=o.shape).astype("float32")) for o in outs]
    opt = keras.optimizers.Adam(1e-4)
    x = ins if len(ins) > 1 else ins[0]

    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            preds = model(x, training=True)
            preds = preds if isinstance(preds, (list, tuple)) else [preds]
            loss = tf.add_n([tf.reduce_mean(tf.square(p - t)) for p, t in zip(preds, targets)])
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step, outs[0].shape


def add_arguments(parser):
    parser.add_argument("--size", type=int, default=128, help="output side in pixels (default 128)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per network")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--jit", action="store_true", help="XLA-compile the steps")
    parser.add_argument("--large", action="store_true", help="also time EDSR large (40.7M params)")
    parser.add_argument("--only", nargs="*", help="substrings of the network names to keep")


def run(args):
    entries = _entries(args)
    steps, info = {}, {}
    for name, (build, in_hw) in entries.items():
        keras.utils.set_random_seed(0)
        model = build()
        step, out_shape = _make_step(model, args.batch, in_hw, args.jit)
        for _ in range(args.warmup):
            step().numpy()
        steps[name] = step
        info[name] = (trainable_params(model), in_hw, tuple(out_shape[1:3]))
    times = {name: [] for name in entries}
    for _ in range(args.steps):  # interleaved rounds: load changes hit every network alike
        for name, step in steps.items():
            t0 = time.perf_counter()
            step().numpy()
            times[name].append(time.perf_counter() - t0)
    med = {n: float(np.median(t)) for n, t in times.items()}
    ref = med.get("DnCNN-17 (colour)", next(iter(med.values())))
    print(
        f"batch {args.batch}, output {args.size}x{args.size}, {args.steps} steps (median), "
        f"jit={args.jit}, devices={[d.device_type for d in tf.config.list_logical_devices()][:1]}"
    )
    print(
        f"{'network':<36} {'trainable params':>16} {'input':>9} {'output':>9} "
        f"{'ms/step':>9} {'ratio':>6}"
    )
    for name, t in med.items():
        p, i, o = info[name]
        print(
            f"{name:<36} {p:>16,} {f'{i[0]}x{i[1]}':>9} {f'{o[0]}x{o[1]}':>9} "
            f"{t * 1e3:9.1f} {t / ref:6.2f}"
        )
    return 0
