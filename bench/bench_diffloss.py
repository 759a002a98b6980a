"""DiffLoss: step-time overhead over its UNet work, and peak memory with/without recompute.

Time: the ``bench.common.small_restorer`` is trained with each variant in one process;
steps of the variants are interleaved (one each per round, rotating order) so load drift on
a shared machine hits all alike; the median step time is reported. Variants:

* ``unet_only``: the irreducible work, 2 UNet forwards (clean branch without gradient)
  + 1 backward through the restored branch, with a fixed t and no diffusion algebra;
* ``diffloss[<mode>]``: ``DiffLoss(mode=...)`` on the same UNet;
* ``diffloss[paper]+recompute``: the UNet built with ``tf.recompute_grad`` per block.

The ratio ``diffloss / unet_only`` is the overhead of sampling, the schedule algebra and the
terms (target <= 1.05). Both include the (tiny) restorer's own forward/backward.

Memory: each variant runs in a fresh subprocess with ``TF_CPU_ALLOCATOR_USE_BFC=true``
(without it TensorFlow does not track CPU allocations and ``get_memory_info`` reports
zeros); after one traced-and-run step the allocator statistics are reset and the number is
the allocator peak during 3 more steps minus the memory in use before them, i.e. the
transient activation/gradient memory of a step (on GPU the same on ``GPU:0``).

    python -m bench diffloss                      # tiny and mid configs
    python -m bench diffloss --configs mid --batch 2 --steps 5 --no-memory
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CONFIGS = {
    # guided-diffusion hyper-parameters; size = training crop
    "tiny": dict(unet="adm_tiny", size=32),
    "mid": dict(
        unet=dict(image_size=64, num_channels=64, num_res_blocks=2, channel_mult=[1, 2, 2, 2],
                  attention_resolutions=[16, 8], num_head_channels=32),
        size=64,
    ),
    "adm256": dict(unet="adm_256_uncond", size=256),  # 552.8 M parameters: GPU only
}


def add_arguments(parser):
    parser.add_argument("--configs", default="tiny,mid",
                        help="comma list of " + ",".join(CONFIGS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", default="paper,eps", help="DiffLoss modes to time")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--probe", help=argparse_suppress())


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def _unet_only(unet, t):
    import tensorflow as tf

    def loss(y_true, y_pred):
        out_x, h_x = unet(y_true * 2.0 - 1.0, t, training=False)
        out_z, h_z = unet(y_pred * 2.0 - 1.0, t, training=False)
        out_x, h_x = tf.stop_gradient(out_x), tf.stop_gradient(h_x)
        return tf.reduce_mean(tf.square(out_x - out_z)) + tf.reduce_mean(tf.square(h_x - h_z))

    return loss


def _train_step(loss, batch, size):
    import keras
    import tensorflow as tf

    from bench.common import random_pairs, small_restorer

    model = small_restorer()
    opt = keras.optimizers.Adam(1e-4)
    noisy, clean = (tf.constant(a) for a in random_pairs(batch, size))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return value

    return lambda: step(noisy, clean).numpy()


def _time(config_name, args):
    import time

    import numpy as np
    import tensorflow as tf

    from tfrestore.diffusion.pretrained import get_adm_unet
    from tfrestore.losses import DiffLoss

    cfg = CONFIGS[config_name]
    unet = get_adm_unet(cfg["unet"], weights=None)
    t = tf.constant([500] * args.batch, tf.int32)
    losses = {"unet_only": _unet_only(unet, t)}
    for mode in args.modes.split(","):
        losses[f"diffloss[{mode}]"] = DiffLoss(mode=mode, unet=cfg["unet"], weights=None)
    losses["diffloss[paper]+recompute"] = DiffLoss(unet=cfg["unet"], weights=None,
                                                   recompute=True)
    steps = {name: _train_step(loss, args.batch, cfg["size"]) for name, loss in losses.items()}
    for run_step in steps.values():  # trace + warm up
        for _ in range(args.warmup):
            run_step()
    # one step of each variant per round, rotating the order, so that load drift on a
    # shared machine hits every variant alike
    times = {name: [] for name in steps}
    names = list(steps)
    for i in range(args.steps):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(v)) for name, v in times.items()}
    ref = med["unet_only"]
    print(f"\n[{config_name}] UNet {unet.count_params() / 1e6:.2f} M params, batch {args.batch}, "
          f"{cfg['size']}x{cfg['size']}, median of {args.steps} interleaved steps")
    print(f"{'variant':<30} {'ms/step':>9} {'ratio':>7}")
    for name, value in med.items():
        print(f"{name:<30} {value * 1e3:9.1f} {value / ref:7.3f}")
    return med


def _probe(spec):
    """Run in a subprocess: peak memory growth of 3 training steps."""
    import resource

    import keras
    import tensorflow as tf

    from bench.common import random_pairs, small_restorer
    from tfrestore.losses import DiffLoss

    config_name, batch, recompute = spec.split(":")
    batch, recompute = int(batch), recompute == "1"
    cfg = CONFIGS[config_name]
    loss = DiffLoss(unet=cfg["unet"], weights=None, recompute=recompute)
    model = small_restorer()
    opt = keras.optimizers.Adam(1e-4)
    noisy, clean = (tf.constant(a) for a in random_pairs(batch, cfg["size"]))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return value

    device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
    step(noisy, clean).numpy()  # trace and run once (optimizer slots, caches)
    tf.config.experimental.reset_memory_stats(device)
    before = tf.config.experimental.get_memory_info(device)["current"]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for _ in range(3):
        step(noisy, clean).numpy()
    peak = tf.config.experimental.get_memory_info(device)["peak"] - before
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    print(json.dumps({"peak_bytes": int(peak), "rss_growth": int(rss),
                      "method": f"TF allocator peak above steady state on {device}"}))


def _memory(config_name, batch):
    results = {}
    for recompute in (0, 1):
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "diffloss", "--probe",
             f"{config_name}:{batch}:{recompute}"],
            capture_output=True, text=True,
            # the BFC allocator makes TF track CPU allocations (get_memory_info)
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CPU_ALLOCATOR_USE_BFC": "true"},
        )
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not line:
            print(f"memory probe failed ({config_name}, recompute={recompute}):\n"
                  f"{proc.stderr[-2000:]}")
            return None
        results[recompute] = json.loads(line[-1])
    a, b = results[0]["peak_bytes"], results[1]["peak_bytes"]
    print(f"[{config_name}] peak memory of 3 DiffLoss training steps, batch {batch} "
          f"({results[0]['method']}): recompute=False {a / 2**20:.1f} MiB, "
          f"recompute=True {b / 2**20:.1f} MiB ({b / max(a, 1):.2f}x)")
    return a, b


def run(args):
    if args.probe:
        _probe(args.probe)
        return 0
    for name in args.configs.split(","):
        if name not in CONFIGS:
            print(f"unknown config {name!r}; choose from {sorted(CONFIGS)}", file=sys.stderr)
            return 2
        _time(name, args)
        if not args.no_memory:
            _memory(name, args.batch)
    return 0
