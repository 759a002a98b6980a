"""DiffLoss: step-time overhead over its UNet work, and peak memory with/without recompute.

Time: a small restorer is trained one step at a time (``bench.common.time_train_steps``,
same process, interleaved) with

* ``unet_only``: the irreducible work, 2 UNet forwards (clean branch without gradient)
  + 1 backward through the restored branch, with a fixed t and no diffusion algebra;
* ``diffloss[<mode>]``: ``DiffLoss(mode=...)`` on the same UNet;
* ``diffloss[paper]+recompute``: the UNet built with ``tf.recompute_grad`` per block.

The ratio ``diffloss / unet_only`` is the overhead of sampling, the schedule algebra and the
terms (target <= 1.05). Both include the (tiny) restorer's own forward/backward.

Memory: each variant runs in a fresh subprocess; the number is the growth of the process'
peak resident set size (``ru_maxrss``, Linux) over 3 training steps, measured from the peak
after building the loss and tracing the step (tracing executes nothing). On GPU the
allocator peak of ``tf.config.experimental.get_memory_info`` is used instead (TensorFlow
does not track CPU allocations: on CPU it reports zeros).

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


def _time(config_name, args):
    import tensorflow as tf

    from bench.common import time_train_steps
    from tfrestore.diffusion.pretrained import get_adm_unet
    from tfrestore.losses import DiffLoss

    cfg = CONFIGS[config_name]
    unet = get_adm_unet(cfg["unet"], weights=None)
    t = tf.constant([500] * args.batch, tf.int32)
    entries = {"unet_only": _unet_only(unet, t)}
    for mode in args.modes.split(","):
        entries[f"diffloss[{mode}]"] = DiffLoss(mode=mode, unet=cfg["unet"], weights=None)
    entries["diffloss[paper]+recompute"] = DiffLoss(unet=cfg["unet"], weights=None, recompute=True)
    kw = dict(batch=args.batch, size=cfg["size"], steps=args.steps, warmup=args.warmup)
    # interleave rounds so that machine-load drift hits every entry alike
    rounds = 3
    times = {name: [] for name in entries}
    for _ in range(rounds):
        for name, loss in entries.items():
            per_round = {**kw, "steps": max(1, kw["steps"] // rounds)}
            times[name].append(time_train_steps(loss, **per_round))
    best = {name: min(v) for name, v in times.items()}
    ref = best["unet_only"]
    n_params = unet.count_params()
    print(f"\n[{config_name}] UNet {n_params / 1e6:.2f} M params, batch {args.batch}, "
          f"{cfg['size']}x{cfg['size']}, best of {rounds} rounds (median step each)")
    print(f"{'variant':<30} {'ms/step':>9} {'ratio':>7}")
    for name, value in best.items():
        print(f"{name:<30} {value * 1e3:9.1f} {value / ref:7.3f}")
    return best


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

    gpu = bool(tf.config.list_physical_devices("GPU"))
    step.get_concrete_function(noisy, clean)  # trace first: tracing memory is not the point
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
        before = tf.config.experimental.get_memory_info("GPU:0")["current"]
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for _ in range(3):
        step(noisy, clean).numpy()
    if gpu:
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] - before
        method = "GPU allocator peak - current before"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        method = "growth of process peak RSS (ru_maxrss)"
    print(json.dumps({"peak_bytes": int(peak), "method": method}))


def _memory(config_name, batch):
    results = {}
    for recompute in (0, 1):
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "diffloss", "--probe",
             f"{config_name}:{batch}:{recompute}"],
            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
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
