"""LPIPS-alex, PDL and Perceptual step time against PyTorch references on the same cores.

Each loss's forward and backward with respect to the prediction (batch 4, 128 px by
default; target features without gradient) is timed in graph mode for tfrestore and
in eager PyTorch for the reference (``bench/torch_reference.py``: the ``lpips``
package's alex v0.1 computation, PDL's sort-based 1-D Wasserstein distance and the
L1 perceptual loss on torchvision VGG16 relu4_3, all written with plain torch ops on
the same weight files). PyTorch runs in its own interpreter, as a subprocess driven
step by step: one step of each side in turn, medians over rounds, so machine load
affects both alike. Both use the same number of threads. The values and input
gradients of the two sides are compared on the benchmark's image pair. ``ratio``
is tfrestore / PyTorch of the median step times, ``min ratio`` that of the fastest
steps (steadier on a loaded machine; note the load average printed). PyTorch's
OpenMP threads busy-wait by default, which collapses when the cores are shared with
other processes; ``OMP_WAIT_POLICY=PASSIVE`` in the environment is passed on to it.

Issue target: LPIPS-alex <= 1.0x its PyTorch reference. Needs the torchvision /
LPIPS weight files (``$TFRESTORE_WEIGHTS_DIR``) and a Python with torch and NumPy
(a separate venv; torch is not a dependency of tfrestore):

    python3 -m venv torchvenv && torchvenv/bin/pip install torch numpy
    python -m bench torch_parity --torch-python torchvenv/bin/python
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from bench import common

np = common.np
tf = common.tf

LOSSES = ("lpips_alex", "pdl", "perceptual")
LABELS = {"lpips_alex": "LPIPS-alex", "pdl": "PDL (relu4_3)", "perceptual": "Perceptual L1 (relu4_3)"}
SCRIPT = pathlib.Path(__file__).with_name("torch_reference.py")


def add_arguments(parser):
    parser.add_argument(
        "--torch-python", default=os.environ.get("TFRESTORE_TORCH_PYTHON"),
        help="Python interpreter with torch installed (default: $TFRESTORE_TORCH_PYTHON)",
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--losses", default=",".join(LOSSES), help=f"subset of {LOSSES}")


def threads():
    """Threads TensorFlow's intra-op pool uses (0 = one per available core)."""
    n = tf.config.threading.get_intra_op_parallelism_threads()
    return n or len(os.sched_getaffinity(0))


def loadavg():
    try:
        return pathlib.Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


def tf_losses(names):
    from tfrestore.losses import LPIPSLoss, PDLoss, PerceptualLoss

    layer = "block4_conv3"  # VGG16 relu4_3
    make = {
        "lpips_alex": lambda: LPIPSLoss(),  # AlexNet, the standard LPIPS
        "pdl": lambda: PDLoss(layers=layer, weights="torchvision"),
        "perceptual": lambda: PerceptualLoss(layer, weights="torchvision"),
    }
    return {n: make[n]() for n in names}


def tf_step(loss):
    """Graph-mode ``(mean loss, d loss / d y_pred)``: a training step's loss part."""

    @tf.function
    def step(y_true, y_pred):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = loss(y_true, y_pred)
        return value, tape.gradient(value, y_pred)

    return step


def inputs(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    y_true = rng.uniform(size=(batch, size, size, 3)).astype("float32")
    y_pred = np.clip(y_true + rng.normal(0, 0.1, y_true.shape), 0, 1).astype("float32")
    return y_true, y_pred


class TorchReference:
    """The PyTorch side, a subprocess answering one request per line."""

    def __init__(self, python, names, y_true, y_pred, n_threads, tmp):
        data = os.path.join(tmp, "inputs.npz")
        self.outputs = os.path.join(tmp, "torch_outputs.npz")
        np.savez(data, y_true=y_true, y_pred=y_pred)
        weights_dir = os.environ.get("TFRESTORE_WEIGHTS_DIR", "")
        if not weights_dir:
            raise SystemExit("bench torch_parity: set TFRESTORE_WEIGHTS_DIR to the folder of "
                             "the torchvision and LPIPS weight files.")
        env = {**os.environ, "OMP_NUM_THREADS": str(n_threads)}
        self.proc = subprocess.Popen(
            [python, str(SCRIPT), "--inputs", data, "--outputs", self.outputs,
             "--weights-dir", weights_dir, "--threads", str(n_threads),
             "--losses", ",".join(names)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self.info = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise SystemExit(f"bench torch_parity: the PyTorch reference exited with code "
                             f"{code} (see its error above).")
        return json.loads(line)

    def results(self):
        with np.load(self.outputs) as data:
            return {k: data[k] for k in data.files}

    def run(self, name, reps=1):
        self.proc.stdin.write(json.dumps({"run": name, "reps": reps}) + "\n")
        self.proc.stdin.flush()
        return self._read()["times"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def agreement(loss, step, y_true, y_pred, ref_values, ref_grads):
    """Max |Δ| of the per-image values and ||Δ|| / ||g|| of the input gradients.

    (An L1 criterion's gradient is a sign: where prediction and target features
    agree to rounding the two frameworks may pick opposite signs, so the gradients
    are compared in norm, not element by element.)
    """
    values = loss.call(tf.constant(y_true), tf.constant(y_pred)).numpy()
    _, grad = step(tf.constant(y_true), tf.constant(y_pred))
    dv = float(np.max(np.abs(values - ref_values)))
    dg = float(np.linalg.norm(grad.numpy() - ref_grads) / max(np.linalg.norm(ref_grads), 1e-30))
    return values, dv, dg


def compare(python, names, *, batch, size, steps, warmup, out=print):
    """Median seconds per step ``{name: (tfrestore, torch)}``; prints the table."""
    n_threads = threads()
    y_true, y_pred = inputs(batch, size)
    losses = tf_losses(names)
    steps_tf = {n: tf_step(loss) for n, loss in losses.items()}
    yt, yp = tf.constant(y_true), tf.constant(y_pred)
    with tempfile.TemporaryDirectory() as tmp:
        ref = TorchReference(python, names, y_true, y_pred, n_threads, tmp)
        try:
            res = ref.results()
            out(f"tfrestore (TF {tf.__version__}, graph mode) vs PyTorch {ref.info['ready']} "
                f"(eager), {n_threads} threads each; batch {batch} x {size}x{size}, loss "
                f"fwd+bwd w.r.t. y_pred; median of {steps} interleaved rounds")
            for n in names:
                values, dv, dg = agreement(losses[n], steps_tf[n], y_true, y_pred,
                                           res[f"{n}/values"], res[f"{n}/grads"])
                out(f"  {LABELS[n]}: values {np.round(values, 6).tolist()}; max |Δ value| "
                    f"{dv:.2e}, ||Δ grad|| / ||grad|| {dg:.2e}")
            for n in names:
                for _ in range(warmup):
                    steps_tf[n](yt, yp)[1].numpy()
                ref.run(n, warmup)
            times = {n: ([], []) for n in names}
            load = [loadavg()]
            for _ in range(steps):
                for n in names:
                    t0 = time.perf_counter()
                    steps_tf[n](yt, yp)[1].numpy()
                    times[n][0].append(time.perf_counter() - t0)
                    times[n][1].extend(ref.run(n))
            load.append(loadavg())
        finally:
            ref.close()
    result = {n: (float(np.median(a)), float(np.median(b))) for n, (a, b) in times.items()}
    fastest = {n: (float(np.min(a)), float(np.min(b))) for n, (a, b) in times.items()}
    out(f"{'loss':<26} {'tfrestore ms':>12} {'torch ms':>9} {'ratio':>6} {'min ratio':>9}   "
        f"load average {load[0]} -> {load[1]}")
    for n, (a, b) in result.items():
        lo_a, lo_b = fastest[n]
        out(f"{LABELS[n]:<26} {a * 1e3:12.1f} {b * 1e3:9.1f} {a / b:6.3f} {lo_a / lo_b:9.3f}")
    spread = max(b / fastest[n][1] for n, (a, b) in result.items())
    if spread > 1.5:
        out(f"PyTorch's median step is up to {spread:.1f}x its fastest: its OpenMP threads "
            f"busy-wait on cores that other processes use. Rerun on an idle machine, or "
            f"with OMP_WAIT_POLICY=PASSIVE, before reading the median ratios.")
    if "lpips_alex" in result:
        a, b = result["lpips_alex"]
        out(f"LPIPS-alex tfrestore / PyTorch: {a / b:.3f} (target <= 1.0: "
            f"{'OK' if a <= b else 'ABOVE'})")
    return result


def run(args):
    if not args.torch_python:
        print("bench torch_parity: no PyTorch interpreter; pass --torch-python PATH (a Python "
              "with torch and numpy) or set TFRESTORE_TORCH_PYTHON.", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.losses.split(",") if n.strip()]
    unknown = sorted(set(names) - set(LOSSES))
    if unknown or not names:
        print(f"bench torch_parity: --losses must name some of {LOSSES}, got {args.losses!r}.",
              file=sys.stderr)
        return 2
    compare(args.torch_python, names, batch=args.batch, size=args.size, steps=args.steps,
            warmup=args.warmup)
    return 0
