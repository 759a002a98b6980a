"""PDL and contextual loss vs PerceptualLoss step time (same VGG16 layer); LPIPS images/s.

The PDL paper (Table I) reports PDL at the same training speed as the L1 perceptual
loss on VGG16 conv4 (0.57 vs 0.57 steps/s): the sort is negligible next to the
backbone. Target: PDL / Perceptual <= 1.05. Losses are timed *interleaved* (one step
of each in turn, medians over rounds) so machine load affects all of them alike.

    python -m bench distribution                      # CPU-friendly defaults
    python -m bench distribution --size 256 --batch 8 --steps 30   # GPU
"""

from __future__ import annotations

import time

from bench import common

keras = common.keras
np = common.np
tf = common.tf


def add_arguments(parser):
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=96, help="training crop size (pixels)")
    parser.add_argument("--steps", type=int, default=12, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--layer", default="relu4_3", help="VGG16 layer shared by all losses")
    parser.add_argument(
        "--weights", default="auto",
        help="VGG16 weights: 'auto' (torchvision if found offline, else random), 'none', "
        "'imagenet', 'torchvision' or a path. Timing does not depend on the values.",
    )
    parser.add_argument("--jit", action="store_true", help="XLA-compile the train steps")
    parser.add_argument("--no-contextual", action="store_true")
    parser.add_argument("--lpips-size", type=int, default=256)
    parser.add_argument("--lpips-batch", type=int, default=8)
    parser.add_argument("--lpips-backbone", default="alexnet", choices=["alexnet", "vgg16"])


def _weights(spec, backbone="vgg16"):
    from tfrestore.features import get_feature_extractor
    from tfrestore.utils import WeightsNotFoundError

    if spec == "none":
        return None
    if spec != "auto":
        return spec
    try:
        get_feature_extractor(backbone, ["relu1_1"], "torchvision")
        return "torchvision"
    except (WeightsNotFoundError, OSError, ValueError):
        return None


def _step_fn(loss, batch, size, jit):
    model = common.small_restorer()
    opt = keras.optimizers.Adam(1e-4)
    noisy, clean = common.random_pairs(batch, size)
    noisy, clean = tf.constant(noisy), tf.constant(clean)

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return value

    return lambda: step(noisy, clean).numpy()


def interleaved(entries, *, batch, size, steps, warmup, jit, cpu=None):
    """Median seconds per train step of each loss, timed one step of each in turn.

    If ``cpu`` is a dict, it receives the median process CPU seconds per step
    (all threads): on a machine shared with other jobs this varies much less
    than the wall time, which includes the waits for a free core.
    """
    fns = {name: _step_fn(loss, batch, size, jit) for name, loss in entries.items()}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    cpu_times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu_times[name].append(time.process_time() - c0)
    if cpu is not None:
        cpu.update({name: float(np.median(t)) for name, t in cpu_times.items()})
    return {name: float(np.median(t)) for name, t in times.items()}


def lpips_throughput(backbone, size, batch, steps=10, warmup=2):
    from tfrestore.metrics.lpips import LPIPSNetwork, get_lpips_network
    from tfrestore.utils import WeightsNotFoundError

    try:
        network, note = get_lpips_network(backbone), "official weights"
    except WeightsNotFoundError:
        channels = {"alexnet": (64, 192, 384, 256, 256), "vgg16": (64, 128, 256, 512, 512)}
        lins = [np.full(c, 0.1, "float32") for c in channels[backbone]]
        network = LPIPSNetwork(backbone, None, lins, "float32")
        note = "random weights (official files not found; timing is the same)"
    rng = np.random.default_rng(0)
    a = tf.constant(rng.uniform(size=(batch, size, size, 3)).astype("float32"))
    b = tf.constant(rng.uniform(size=(batch, size, size, 3)).astype("float32"))
    fn = tf.function(lambda x, y: network(x, y))
    for _ in range(warmup):
        fn(a, b).numpy()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn(a, b).numpy()
        times.append(time.perf_counter() - t0)
    return batch / float(np.median(times)), note


def run(args):
    from tfrestore.losses import ContextualLoss, PDLoss, PerceptualLoss

    weights = _weights(args.weights)
    layer = args.layer
    print(f"device: {tf.config.list_logical_devices()[0].device_type}, VGG16 weights: {weights}, "
          f"layer: {layer}, batch {args.batch} x {args.size}x{args.size}, jit={args.jit}")
    kw = {"layers": layer, "weights": weights}
    entries = {
        "perceptual L1": PerceptualLoss(layer, weights=weights, criterion="l1"),
        "PDL identity (paper default)": PDLoss(**kw),
        "PDL random_sphere x1 (per call)": PDLoss(**kw, projection="random_sphere"),
    }
    if not args.no_contextual:
        entries["contextual cosine (CTX_DP)"] = ContextualLoss(**kw, distance="cosine")
        entries["contextual l2 (CTX_L2)"] = ContextualLoss(**kw, distance="l2")
    results = interleaved(
        entries, batch=args.batch, size=args.size, steps=args.steps, warmup=args.warmup,
        jit=args.jit,
    )
    ref = results["perceptual L1"]
    print(f"{'loss':<36} {'ms/step':>9} {'/ perceptual':>13}")
    for name, t in results.items():
        print(f"{name:<36} {t * 1e3:9.1f} {t / ref:13.3f}")
    ratio = results["PDL identity (paper default)"] / ref
    print(f"PDL / PerceptualLoss step-time ratio: {ratio:.3f} (paper: 1.00; target <= 1.05: "
          f"{'OK' if ratio <= 1.05 else 'ABOVE'})")
    ips, note = lpips_throughput(args.lpips_backbone, args.lpips_size, args.lpips_batch)
    print(f"LPIPS-{args.lpips_backbone} metric throughput at "
          f"{args.lpips_size}x{args.lpips_size}, batch "
          f"{args.lpips_batch}: {ips:.1f} image pairs/s ({note})")
    return 0
