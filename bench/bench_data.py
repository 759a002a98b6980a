"""Input pipeline throughput vs training-step consumption (denoising config; target >= 3x)."""

from __future__ import annotations

import os
import tempfile
import time

from bench.common import small_restorer, time_train_steps


def add_arguments(parser):
    parser.add_argument(
        "--source",
        default="default",
        help="image folder (e.g. ../shared/data/cbsd432); 'default' writes the "
        "scikit-image photos to a temp folder as PNG so decoding is included",
    )
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--sigma-max", type=float, default=75.0, help="blind sigma range [0, max]/255"
    )
    parser.add_argument(
        "--batches", type=int, default=40, help="batches timed for the pipeline alone"
    )
    parser.add_argument("--steps", type=int, default=15, help="training steps timed")
    parser.add_argument("--cache", action="store_true", help="decode every file once into memory")
    parser.add_argument(
        "--parallel", type=int, default=-1, help="num_parallel_calls (-1 = AUTOTUNE)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="alternate pipeline/step measurements this many times and report medians "
        "(the machine is shared; interleaving keeps the ratio fair)",
    )


def _pipeline(args, source):
    from tfrestore.data import GaussianNoise, image_dataset

    return image_dataset(
        source,
        GaussianNoise(sigma=(0.0, args.sigma_max / 255.0)),
        crop_size=args.crop,
        batch_size=args.batch,
        seed=0,
        cache=args.cache,
        num_parallel_calls=args.parallel,
    )


def _pipeline_rate(ds, n):
    it = iter(ds)
    for _ in range(3):
        next(it)
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t0)


def _fed_step_time(ds, steps):
    """Median seconds per step of the same restorer + L1 consuming batches from ``ds``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfrestore.losses import L1

    model, loss, opt = small_restorer(), L1(), keras.optimizers.Adam(1e-4)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return value

    it = iter(ds)
    for _ in range(3):
        step(*next(it)).numpy()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(*next(it)).numpy()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(args):
    from tfrestore.data import write_default_images
    from tfrestore.losses import L1

    source = args.source
    tmp = None
    if source == "default":
        tmp = tempfile.TemporaryDirectory(prefix="bench_data_")
        source = os.fspath(write_default_images(tmp.name))
    import numpy as np

    rates, steps = [], []
    for _ in range(max(1, args.repeats)):
        rates.append(_pipeline_rate(_pipeline(args, source), args.batches))
        steps.append(time_train_steps(L1(), batch=args.batch, size=args.crop, steps=args.steps))
    batches_per_s, step_s = float(np.median(rates)), float(np.median(steps))
    fed_s = _fed_step_time(_pipeline(args, source), args.steps)
    steps_per_s = 1.0 / step_s
    ratio = batches_per_s / steps_per_s
    print(
        f"config: crops {args.crop}x{args.crop}, batch {args.batch}, "
        f"blind sigma [0, {args.sigma_max:g}]/255, "
        f"source {args.source!r}, cache={args.cache}, cpu cores={os.cpu_count()}"
    )
    print(f"{'measure':<46} {'value':>12}")
    print(f"{'pipeline alone: batches/s':<46} {batches_per_s:12.1f}")
    print(f"{'pipeline alone: images/s':<46} {batches_per_s * args.batch:12.1f}")
    print(f"{'train step (constant batch): ms/step':<46} {step_s * 1e3:12.1f}")
    print(f"{'train step (constant batch): steps/s':<46} {steps_per_s:12.2f}")
    print(f"{'train step fed by pipeline: ms/step':<46} {fed_s * 1e3:12.1f}")
    print(f"{'pipeline rate / step rate (target >= 3)':<46} {ratio:12.2f}")
    print(f"{'fed / constant step time (1.0 = no stall)':<46} {fed_s / step_s:12.2f}")
    print(
        "OK: the pipeline is not the bottleneck"
        if ratio >= 3
        else "WARNING: pipeline below 3x the step rate"
    )
    if tmp is not None:
        tmp.cleanup()
    return 0
