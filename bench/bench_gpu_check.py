"""GPU check: absolute step times and peak GPU memory of every loss, with/without XLA and
mixed_float16, and under MirroredStrategy over all GPUs.

One table, one row per (loss, variant, strategy): a small restorer
(:func:`bench.common.small_restorer`) is compiled with the loss (``model.compile``,
``jit_compile`` for XLA; Keras wraps the optimizer for loss scaling under
``mixed_float16``) and trained with ``train_on_batch`` on random data; the median
time of the timed steps and the peak memory of ``GPU:0`` (all GPUs under
MirroredStrategy: the largest) since the row started are printed. Backbones and the
ADM UNet use random weights (nothing is downloaded; timing does not depend on the
values). Every row is guarded: an error prints on its row and the check goes on.
Rows stop when ``--budget-s`` is spent (the remaining ones print ``skipped``).

Losses (GPU sizes): L1; Perceptual (VGG16); PDL (VGG16 conv4_3); D2SM with exact
windows (the backbone on every window: the paper's 224-px windows every 56 px on 512-px
crops), D2SM on whole images with a 1024-row queue (VGG19 conv5_4) with the released
code's ``eps=1e-6`` (``q x q`` similarity cache), the same with ``eps=0`` (the default:
queue row sums, no ``q x q`` cache); DiffLoss with
the full ADM-256 architecture (``adm_256_uncond``, 552.8 M parameters).

    python -m bench gpu_check                  # on a GPU machine, ~5-8 minutes
    python -m bench gpu_check --cpu-smoke      # tiny sizes on CPU (< 60 s), run by CI

``--cpu-smoke`` uses 2 logical CPUs for MirroredStrategy, tiny images, the ``adm_tiny``
UNet, and times every loss once in float32 plus every variant and strategy on a subset
(``--full-matrix`` runs all combinations).
"""

from __future__ import annotations

import gc
import os
import time
import traceback

VARIANTS = ("fp32", "xla", "mixed_float16", "mixed_float16+xla")
STRATEGIES = ("single", "mirrored")

#: name -> (factory kwargs for GPU, for --cpu-smoke); sizes are (batch, image side)
CASES = {
    "L1": dict(gpu=dict(batch=16, size=256), cpu=dict(batch=2, size=32)),
    "Perceptual": dict(gpu=dict(batch=16, size=256), cpu=dict(batch=2, size=32)),
    "PDL": dict(gpu=dict(batch=16, size=256), cpu=dict(batch=2, size=32)),
    "D2SM exact windows": dict(
        gpu=dict(batch=4, size=512, patch=224, stride=56),
        cpu=dict(batch=2, size=32, patch=16, stride=16),
    ),
    "D2SM whole image + queue": dict(
        gpu=dict(batch=16, size=256, queue=1024), cpu=dict(batch=2, size=32, queue=8)
    ),
    "D2SM queue eps=0": dict(
        gpu=dict(batch=16, size=256, queue=1024), cpu=dict(batch=2, size=32, queue=8)
    ),
    "DiffLoss": dict(
        gpu=dict(batch=4, size=256, unet="adm_256_uncond"),
        cpu=dict(batch=2, size=32, unet="adm_tiny"),
    ),
}

COLUMNS = ("loss", "variant", "strategy", "batch", "size", "ms/step", "peak MB", "note")
_WIDTHS = (26, 18, 9, 6, 5, 10, 9, 0)


def add_arguments(parser):
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU (CI)")
    parser.add_argument("--full-matrix", action="store_true",
                        help="with --cpu-smoke: every loss x variant x strategy")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (trace/compile)")
    parser.add_argument("--losses", default=",".join(CASES),
                        help="comma list of: " + ", ".join(CASES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="stop starting rows after this many seconds")


# ---------------------------------------------------------------------- setup
def _setup(cpu_smoke):
    if cpu_smoke:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf

    if cpu_smoke:
        from tfrestore.testing import configure_logical_cpus

        configure_logical_cpus(2)
    else:
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # pragma: no cover - devices already initialised
                pass
    return tf


def _make_loss(name, cfg, smoke):
    from tfrestore.losses import D2SMLoss, DiffLoss, L1, PDLoss, PerceptualLoss

    if name == "L1":
        return L1()
    if name == "Perceptual":
        return PerceptualLoss(weights=None)
    if name == "PDL":
        return PDLoss(layers="relu4_3", weights=None)
    if name == "D2SM exact windows":
        return D2SMLoss(weights=None, patch_size=cfg["patch"], patch_stride=cfg["stride"])
    if name == "D2SM whole image + queue":  # the released code's eps: q x q cache
        return D2SMLoss(weights=None, patch_size=None, queue_size=cfg["queue"],
                        image_size=cfg["size"], eps=1e-6)
    if name == "D2SM queue eps=0":  # the queue's row sums instead of its q x q cache
        return D2SMLoss(weights=None, patch_size=None, queue_size=cfg["queue"],
                        image_size=cfg["size"], eps=0)
    if name == "DiffLoss":
        return DiffLoss(unet=cfg["unet"], weights=None)
    raise ValueError(f"unknown loss {name!r}; choose from {list(CASES)}")


def _gpus(tf):
    return [d.name.replace("/physical_device:", "") for d in tf.config.list_physical_devices("GPU")]


def _reset_memory(tf, devices):
    for d in devices:
        try:
            tf.config.experimental.reset_memory_stats(d)
        except Exception:  # noqa: BLE001 - not supported on this device
            pass


def _peak_mb(tf, devices):
    peaks = []
    for d in devices:
        try:
            peaks.append(tf.config.experimental.get_memory_info(d)["peak"])
        except Exception:  # noqa: BLE001
            pass
    return max(peaks) / 2**20 if peaks else None


_MIRRORED = []


def _mirrored(tf):
    """One MirroredStrategy per process: a second instance reuses collective instance
    keys of the first one's functions (TF aborts with 'Collective instance ... expected
    type ...')."""
    if not _MIRRORED:
        _MIRRORED.append(tf.distribute.MirroredStrategy())
    return _MIRRORED[0]


# ---------------------------------------------------------------------- one row
def run_row(tf, name, variant, strategy_name, cfg, smoke, steps, warmup):
    """Build, compile and time one configuration; returns (ms/step, peak MB, note)."""
    import keras
    import numpy as np

    from bench.common import small_restorer

    mixed = variant.startswith("mixed_float16")
    xla = variant.endswith("xla")
    gpus = _gpus(tf)
    keras.backend.clear_session()
    gc.collect()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        if strategy_name == "mirrored":
            strategy = _mirrored(tf)
        else:
            strategy = tf.distribute.get_strategy()
        replicas = strategy.num_replicas_in_sync
        devices = gpus if strategy_name == "mirrored" else gpus[:1]
        _reset_memory(tf, devices)
        with strategy.scope():
            model = small_restorer()
            loss = _make_loss(name, cfg, smoke)
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, jit_compile=xla)
        batch = cfg["batch"] * replicas
        rng = np.random.default_rng(0)
        clean = rng.uniform(size=(batch, cfg["size"], cfg["size"], 3)).astype("float32")
        noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype("float32")
        for _ in range(warmup):
            model.train_on_batch(noisy, clean)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            value = model.train_on_batch(noisy, clean)
            times.append(time.perf_counter() - t0)
        value = float(np.asarray(value).reshape(-1)[0])
        note = f"loss {value:.4g}"
        if strategy_name == "mirrored":
            note += f", {replicas} replicas, global batch {batch}"
        if not np.isfinite(value):
            note += " (NOT FINITE)"
        return float(np.median(times)) * 1e3, _peak_mb(tf, devices), note
    finally:
        keras.config.set_dtype_policy("float32")


def _matrix(args, smoke):
    losses = [s.strip() for s in args.losses.split(",") if s.strip()]
    variants = [s.strip() for s in args.variants.split(",") if s.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for what, given, allowed in (("loss", losses, CASES), ("variant", variants, VARIANTS),
                                 ("strategy", strategies, STRATEGIES)):
        bad = [g for g in given if g not in allowed]
        if bad:
            raise SystemExit(f"unknown {what} {bad}; choose from {list(allowed)}")
    rows = []
    if smoke and not args.full_matrix:
        # Every loss once, every variant and the mirrored strategy on cheap losses.
        rows += [(n, "fp32", "single") for n in losses if "fp32" in variants
                 and "single" in strategies]
        for v in variants:
            if v != "fp32" and "L1" in losses and "single" in strategies:
                rows.append(("L1", v, "single"))
        if "mirrored" in strategies:
            for n in ("L1", "D2SM whole image + queue"):
                if n in losses:
                    rows.append((n, "fp32", "mirrored"))
        return rows
    # Variant by variant (float32 first), each on one device then mirrored, so that a
    # spent budget drops the least essential rows (the last variants).
    for v in variants:
        for strategy in strategies:
            for n in losses:
                rows.append((n, v, strategy))
    return rows


def _fmt(values):
    cells = []
    for v, w in zip(values, _WIDTHS):
        cells.append(f"{v:<{w}}" if w else str(v))
    return " ".join(cells).rstrip()


def run(args):
    smoke = args.cpu_smoke
    tf = _setup(smoke)
    steps = args.steps or (2 if smoke else 10)
    warmup = 1 if smoke and args.warmup == 2 else args.warmup
    gpus = _gpus(tf)
    if not smoke and not gpus:
        print("no GPU found: run with --cpu-smoke on a CPU-only machine")
        return 2
    print(f"tfrestore GPU check: TF {tf.__version__}, devices "
          f"{[d.name for d in tf.config.list_logical_devices()]}, "
          f"{'cpu-smoke' if smoke else 'gpu'} sizes, {steps} timed steps after {warmup} warmup")
    for g in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(g)
            print(f"  {g.name}: {details.get('device_name', '?')}")
        except Exception:  # noqa: BLE001
            pass
    print(_fmt(COLUMNS))
    start = time.perf_counter()
    failures = 0
    for name, variant, strategy in _matrix(args, smoke):
        cfg = CASES[name]["cpu" if smoke else "gpu"]
        cells = [name, variant, strategy, cfg["batch"], cfg["size"]]
        if time.perf_counter() - start > args.budget_s:
            print(_fmt(cells + ["-", "-", f"skipped: --budget-s {args.budget_s:g} spent"]),
                  flush=True)
            continue
        try:
            ms, peak, note = run_row(tf, name, variant, strategy, cfg, smoke, steps, warmup)
            peak_s = f"{peak:.0f}" if peak is not None else "-"
            print(_fmt(cells + [f"{ms:.1f}", peak_s, note]), flush=True)
        except Exception as e:  # noqa: BLE001 - one failing row must not stop the check
            failures += 1
            msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            print(_fmt(cells + ["-", "-", f"ERROR {type(e).__name__}: {msg}"]), flush=True)
            if os.environ.get("TFRESTORE_GPU_CHECK_TRACEBACK"):
                traceback.print_exc()
    print(f"total {time.perf_counter() - start:.1f} s, {failures} failed row(s)")
    return 1 if failures else 0
