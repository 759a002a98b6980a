"""PDL / Perceptual step-time ratio, LPIPS-alex step time and the share of finiteness checks.

Issue targets (batch 4, 128 px, fwd+bwd, graph mode): PDL / PerceptualLoss <= 1.03 on
the same VGG16 layer; LPIPS-alex no slower than its PyTorch reference (measured with
``--torch-python PATH``, a Python with torch, by ``bench torch_parity``; otherwise only
the TF time is printed); finiteness checks < 1 % of any loss.

All losses are timed interleaved in one process (see ``bench distribution``). The
finiteness checks are timed on their own as well (forward and backward of the
checks of both inputs, with the step's shapes), because a 1 % difference is below
the noise of step times: the share printed is ``check time / loss step time``, for
the current checks (one scalar check beside the data path) and for the previous
ones (``CheckNumerics`` on each image, whose gradient checks the incoming gradient
again), which are reproduced here for the comparison only.

    python -m bench parity
    python -m bench parity --torch-python torchvenv/bin/python   # + LPIPS-alex vs PyTorch
    python -m bench parity --size 256 --batch 8 --steps 30     # GPU
"""

from __future__ import annotations

import os
import time

from bench import common
from bench.bench_distribution import _weights, interleaved

np = common.np
tf = common.tf


def add_arguments(parser):
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--layer", default="relu4_3")
    parser.add_argument("--weights", default="auto", help="VGG16 weights (see bench distribution)")
    parser.add_argument("--jit", action="store_true")
    parser.add_argument(
        "--torch-python", default=os.environ.get("TFRESTORE_TORCH_PYTHON"),
        help="Python with torch: also time LPIPS-alex against its PyTorch reference "
        "(default: $TFRESTORE_TORCH_PYTHON; skipped when unset)",
    )


def _old_check_finite(x, arg, loss_name):
    """The previous graph-mode check (benchmark only)."""
    from tfrestore.utils.validation import _prefix

    return tf.debugging.check_numerics(
        x, f"{_prefix(loss_name)}`{arg}` contains NaN or Inf values"
    )


def _old_check_values(x, arg, check_finite=True, data_range=None, loss_name=None,
                      range_fix=""):
    """``validation.check_values`` as it was: CheckNumerics on the tensor, no range check."""
    return _old_check_finite(x, arg, loss_name) if check_finite else x


def _new_check(x, arg, loss_name):
    from tfrestore.utils import validation

    return validation.check_values(x, arg, True, None, loss_name)


def _with_old_checks(loss):
    """Trace ``loss`` with the previous finiteness checks of its inputs."""
    from tfrestore.utils import validation

    call = loss.call

    def old_call(y_true, y_pred):
        saved = validation.check_values
        validation.check_values = _old_check_values
        try:
            return call(y_true, y_pred)
        finally:
            validation.check_values = saved

    loss.call = old_call
    return loss


def _lpips(check_finite):
    from tfrestore.losses import LPIPSLoss
    from tfrestore.utils import WeightsNotFoundError

    try:
        return LPIPSLoss(check_finite=check_finite), "torchvision + official LPIPS weights"
    except (WeightsNotFoundError, OSError, ValueError):
        lins = [np.full(c, 0.1, "float32") for c in (64, 192, 384, 256, 256)]
        return (LPIPSLoss(weights=None, lin_weights=lins, check_finite=check_finite),
                "random weights (files not found; same timing)")


def check_cost(batch, size, old, reps=30):
    """Seconds of the finiteness checks of ``y_true`` and ``y_pred`` (fwd + bwd)."""
    from tfrestore.utils import validation

    rng = np.random.default_rng(0)
    y = tf.constant(rng.uniform(size=(batch, size, size, 3)).astype("float32"))
    p = tf.Variable(rng.uniform(size=(batch, size, size, 3)).astype("float32"))
    check = _old_check_finite if old else _new_check

    def make(with_check):
        @tf.function
        def f():
            with tf.GradientTape() as tape:
                a, b = y, tf.identity(p)
                if with_check:
                    a, b = check(a, "y_true", "probe"), check(b, "y_pred", "probe")
                v = tf.reduce_sum(a * b)
            return tape.gradient(v, p)

        return f

    fns = {k: make(k) for k in (True, False)}
    times = {True: [], False: []}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn().numpy()
            times[k].append(time.perf_counter() - t0)
    return max(0.0, float(np.median(times[True]) - np.median(times[False])))


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "n/a"


def run(args):
    from tfrestore.losses import PDLoss, PerceptualLoss

    weights = _weights(args.weights)
    layer = args.layer
    lpips_new, note = _lpips(True)
    entries = {
        "perceptual L1": PerceptualLoss(layer, weights=weights),
        "PDL": PDLoss(layers=layer, weights=weights),
        "perceptual L1, previous checks": _with_old_checks(
            PerceptualLoss(layer, weights=weights)),
        "PDL, previous checks": _with_old_checks(PDLoss(layers=layer, weights=weights)),
        "perceptual L1, no checks": PerceptualLoss(layer, weights=weights,
                                                   check_finite=False),
        "PDL, no checks": PDLoss(layers=layer, weights=weights, check_finite=False),
        "LPIPS-alex": lpips_new,
        "LPIPS-alex, previous checks": _with_old_checks(_lpips(True)[0]),
        "LPIPS-alex, no checks": _lpips(False)[0],
    }
    print(f"device: {tf.config.list_logical_devices()[0].device_type}, VGG16 weights: {weights}, "
          f"layer {layer}, LPIPS: {note}; batch {args.batch} x {args.size}x{args.size}, "
          f"jit={args.jit}; median of {args.steps} interleaved train steps")
    load = [_loadavg()]
    cpu = {}
    t = interleaved(entries, batch=args.batch, size=args.size, steps=args.steps,
                    warmup=args.warmup, jit=args.jit, cpu=cpu)
    load.append(_loadavg())
    ref, cpu_ref = t["perceptual L1"], cpu["perceptual L1"]
    print(f"{'loss':<34} {'ms/step':>9} {'/ perceptual':>13} {'CPU ms/step':>12} "
          f"{'/ perceptual':>13}")
    for name, v in t.items():
        print(f"{name:<34} {v * 1e3:9.1f} {v / ref:13.3f} {cpu[name] * 1e3:12.1f} "
              f"{cpu[name] / cpu_ref:13.3f}")
    print(f"load average (1 min) {load[0]} -> {load[1]} on {os.cpu_count()} cores; wall-time "
          f"ratios are only meaningful on an idle machine, CPU-time ratios are steadier")
    for label, s in (("wall time", t), ("CPU time", cpu)):
        ratio = s["PDL"] / s["perceptual L1"]
        print(f"PDL / PerceptualLoss ({label}): {ratio:.3f} (target <= 1.03: "
              f"{'OK' if ratio <= 1.03 else 'ABOVE'}); without checks "
              f"{s['PDL, no checks'] / s['perceptual L1, no checks']:.3f}; with the previous "
              f"checks {s['PDL, previous checks'] / s['perceptual L1, previous checks']:.3f}")
    print(f"LPIPS-alex train step: {t['LPIPS-alex'] * 1e3:.1f} ms (previous checks "
          f"{t['LPIPS-alex, previous checks'] * 1e3:.1f} ms, no checks "
          f"{t['LPIPS-alex, no checks'] * 1e3:.1f} ms)")
    if args.torch_python:
        from bench.bench_torch_parity import compare

        print("LPIPS-alex loss alone vs its PyTorch reference (bench torch_parity):")
        compare(args.torch_python, ["lpips_alex"], batch=args.batch, size=args.size,
                steps=max(args.steps, 15), warmup=args.warmup,
                out=lambda line: print("  " + line))
    else:
        print("  (LPIPS-alex vs PyTorch: pass --torch-python PATH)")
    new_c = check_cost(args.batch, args.size, old=False)
    old_c = check_cost(args.batch, args.size, old=True)
    print(f"finiteness checks of both inputs (fwd+bwd, timed alone): now {new_c * 1e3:.3f} ms, "
          f"previously {old_c * 1e3:.3f} ms")
    for name in ("perceptual L1", "PDL", "LPIPS-alex"):
        print(f"  share of a {name} step: now {100 * new_c / t[name]:.2f} %, previously "
              f"{100 * old_c / t[name]:.2f} % (target < 1 %)")
    return 0
