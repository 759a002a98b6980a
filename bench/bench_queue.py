"""D2SM queue step time vs queue size: cached queue similarities vs per-step recomputation.

A D2SM step with a queue of ``q`` rows of dimension ``D`` used to recompute the
queue-to-queue kernel of both domains every step (``q^2 D`` multiply-adds each,
although only the ``n`` new rows change). The queue now keeps what it can between
steps and computes only the new rows against the queue (``q n D``):

* ``eps > 0`` (1e-6, the released code): the ``q x q`` similarities. What remains
  quadratic in ``q`` is elementwise: the divergence of the queued rows, whose
  entries ``log(k / Z + eps)`` depend on the current batch through each row's
  normaliser ``Z``, and an ``O(q^2)`` copy of the cache;
* ``eps = 0`` (``D2SMLoss``'s default, the paper's formula): four sums per queue
  row (``QueueRowStatistics``); a step is then ``O(q n D)`` with no ``q^2`` term.

Both formulations are timed side by side in this process on the same train step
(small restorer, whole-image samples, a fixed linear "backbone" of negligible cost
so that the queue arithmetic dominates); the previous one is reproduced here only,
for this comparison. Each row also checks that both give the same loss values.
Wall-clock medians and the process CPU time per step are printed (``--threads 1``
makes the CPU time a measure of work that other processes on the machine do not
disturb).

    python -m bench queue                       # q in 64 256 1024 4096, D = 1024
    python -m bench queue --dim 4096 --queues 256 1024
"""

from __future__ import annotations

import time

import numpy as np

from bench import common

tf = common.tf
keras = common.keras


def add_arguments(parser):
    parser.add_argument("--queues", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--dim", type=int, default=1024, help="feature dimension D")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=16, help="image side (pixels)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--divergence", default="kl")
    parser.add_argument(
        "--eps", type=float, nargs="+", default=[1e-6, 0.0],
        help="D2SM eps values, passed explicitly (1e-6: the released code, cached q x q "
        "similarities; 0, D2SMLoss's default: cached per-row sums, linear in q)",
    )
    parser.add_argument(
        "--temperature", type=float, default=None,
        help="D2SM temperature (default: the paper's kernel)",
    )
    parser.add_argument("--skip-old", action="store_true", help="time only the cached queue")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="TF intra/inter-op threads (0 = TF default); 1 gives steadier numbers on a "
        "shared machine",
    )


# ---------------------------------------------------------------- previous formulation
def _old_set_divergence(
    fs, ft, queue_s=None, queue_t=None, queue_mask=None, *, queue_similarities=None,
    queue_row_sums=None, divergence="kl", include_diagonal=True, eps=1e-6, temperature=None,
):
    """The set divergence before the cache: one full (P + q)^2 kernel per group,
    with the queue block ``q q^T`` recomputed at every call."""
    from tfrestore.losses._similarity import (
        conditional_probabilities,
        row_divergence,
        softmax_probabilities,
    )

    del queue_similarities, queue_row_sums

    def kernel(f, q):  # cosines of [f_g; q]
        g = tf.shape(f)[0]
        cc = tf.linalg.matmul(f, f, transpose_b=True)
        cq = tf.einsum("gpd,qd->gpq", f, q)
        qq = tf.linalg.matmul(q, q, transpose_b=True)
        top = tf.concat([cc, cq], axis=2)
        qq = tf.broadcast_to(qq[None], tf.stack([g, tf.shape(q)[0], tf.shape(q)[0]]))
        bottom = tf.concat([tf.transpose(cq, [0, 2, 1]), qq], axis=2)
        return tf.concat([top, bottom], axis=1)

    fs, ft = tf.cast(fs, tf.float32), tf.cast(ft, tf.float32)
    mask = tf.concat([tf.ones([tf.shape(fs)[1]]), tf.cast(queue_mask, tf.float32)], axis=0)

    def probabilities(cos):
        if temperature is None:
            return conditional_probabilities((cos + 1.0) * 0.5, mask, include_diagonal)
        return softmax_probabilities(cos, mask, include_diagonal, temperature)

    ps = probabilities(kernel(fs, queue_s))
    pt = probabilities(kernel(ft, queue_t))
    rows = row_divergence(ps, pt, divergence, eps) * mask
    return rows, mask, tf.reduce_sum(mask)


def _old_enqueue(queue, rows_pred, rows_true):
    """The enqueue before the cache: rows and counter only."""
    rows_pred = tf.stop_gradient(tf.cast(rows_pred, tf.float32))
    rows_true = tf.stop_gradient(tf.cast(rows_true, tf.float32))
    n = tf.shape(rows_pred, out_type=tf.int64)[0]
    idx = tf.math.floormod(queue.count.read_value() + tf.range(n, dtype=tf.int64), queue.size)
    on = queue.enabled.read_value() > 0
    new_pred = tf.where(on, rows_pred, tf.gather(queue.pred.read_value(), idx))
    new_true = tf.where(on, rows_true, tf.gather(queue.true.read_value(), idx))
    return [
        queue.pred.scatter_update(tf.IndexedSlices(new_pred, idx)),
        queue.true.scatter_update(tf.IndexedSlices(new_true, idx)),
        queue.count.assign_add(n * tf.cast(on, tf.int64)),
    ]


def _old_loss(**kw):
    """A D2SMLoss traced with the previous queue arithmetic (benchmark only)."""
    import tfrestore.losses.d2sm as d2sm_module
    from tfrestore.losses import D2SMLoss

    class PreviousQueueD2SM(D2SMLoss):
        def compute(self, y_true, y_pred, training=None):
            queue = self._queue
            saved = d2sm_module.set_divergence
            d2sm_module.set_divergence = _old_set_divergence
            queue.read_cache = lambda: None
            queue.enqueue = lambda a, b, *_, **__: _old_enqueue(queue, a, b)
            try:
                return super().compute(y_true, y_pred, training=training)
            finally:
                d2sm_module.set_divergence = saved
                del queue.read_cache, queue.enqueue

    return PreviousQueueD2SM(**kw)


# ---------------------------------------------------------------- timing
def _extractor(size, dim, seed=0):
    w = np.random.default_rng(seed).normal(size=(size * size * 3, dim)) / np.sqrt(size * size * 3)
    w = tf.constant(w.astype("float32"))

    def fx(x):
        return tf.matmul(tf.reshape(x, [tf.shape(x)[0], size * size * 3]), w)

    return fx


def _restorer():
    return common.small_restorer(width=16, depth=3)


def _step(loss, batch, size):
    model = _restorer()
    opt = keras.optimizers.SGD(1e-3)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss(y, model(x, training=True)))
        grads = tape.gradient(value, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return value

    return step


def _time(step, data, warmup, steps):
    values = []
    for x, y in data[:warmup]:
        values.append(float(step(x, y)))
    times, cpu = [], []
    for x, y in data[warmup:warmup + steps]:
        t0, c0 = time.perf_counter(), time.process_time()
        values.append(float(step(x, y)))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(times)), float(np.median(cpu)), values


def run(args):
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from tfrestore.losses import D2SMLoss

    fx = _extractor(args.size, args.dim)
    rng = np.random.default_rng(0)
    n = args.warmup + args.steps
    data = []
    for _ in range(n):
        clean = rng.uniform(size=(args.batch, args.size, args.size, 3)).astype("float32")
        noisy = (clean + rng.normal(0, 0.1, clean.shape)).astype("float32")
        data.append((tf.constant(noisy), tf.constant(clean)))
    print(
        f"D2SM whole-image queue, batch {args.batch} ({args.batch} new rows/step), D = {args.dim}, "
        f"divergence={args.divergence}, temperature={args.temperature}, "
        f"{tf.config.list_logical_devices()[0].device_type}; median of {args.steps} train steps"
    )
    print(
        f"{'eps':>6} {'q':>6} {'recompute ms':>13} {'cached ms':>10} {'speed-up':>9} "
        f"{'CPU ms old':>11} {'CPU ms new':>11} {'max rel. diff of loss':>22} "
        f"{'cache MB':>9}  cache"
    )
    rows = []
    for eps in args.eps:
        for q in args.queues:
            rows.append(_case(args, fx, data, q, eps))
    if len(args.eps) > 1:
        _eps_effect(args)
    return 0


def _eps_effect(args):
    """How much eps inside the logarithms changes the loss and its gradient:
    4 current rows + q queued rows of ReLU-like features (a clean set and a noisy
    copy), the first two eps values side by side."""
    from tfrestore.losses._similarity import l2_normalize, set_divergence

    a, b = args.eps[:2]
    print(f"\neps={a:g} vs eps={b:g} (synthetic ReLU features, D = {args.dim}, "
          f"divergence={args.divergence}, temperature={args.temperature})")
    print(f"{'q':>6} {'loss rel. diff':>15} {'grad rel. diff':>15} {'grad cosine':>12}")
    rng = np.random.default_rng(0)
    for q in args.queues:
        clean = np.maximum(rng.normal(size=(q + 4, args.dim)), 0.0)
        noisy = np.maximum(clean + 0.3 * rng.normal(size=clean.shape), 0.0)
        ft, fs = (l2_normalize(x.astype("float32")) for x in (clean, noisy))
        current = tf.Variable(fs[None, :4])
        out = []
        for eps in (a, b):
            with tf.GradientTape() as tape:
                rows = set_divergence(
                    current, ft[None, :4], fs[4:], ft[4:], tf.ones([q]),
                    divergence=args.divergence, include_diagonal=False, eps=eps,
                    temperature=args.temperature,
                )[0]
                value = tf.reduce_sum(rows) / (q + 4)
            out.append((float(value), tape.gradient(value, current).numpy().ravel()))
        (va, ga), (vb, gb) = out
        cosine = float(ga @ gb / (np.linalg.norm(ga) * np.linalg.norm(gb)))
        print(f"{q:>6} {abs(va - vb) / abs(vb):15.2e} "
              f"{np.linalg.norm(ga - gb) / np.linalg.norm(gb):15.2e} {cosine:12.6f}", flush=True)


def _case(args, fx, data, q, eps):
    from tfrestore.losses import D2SMLoss

    kw = dict(
        feature_extractor=fx, patch_size=None, queue_size=q, image_size=args.size,
        divergence=args.divergence, temperature=args.temperature, eps=eps,
    )
    new = D2SMLoss(**kw)
    t_new, c_new, v_new = _time(_step(new, args.batch, args.size), data, args.warmup, args.steps)
    t_old = c_old = v_old = None
    if not args.skip_old:
        old = _old_loss(**kw)
        t_old, c_old, v_old = _time(_step(old, args.batch, args.size), data, args.warmup, args.steps)
    # Same initial restorer and data: the loss values must agree step for step.
    diff = (
        max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(v_new, v_old))
        if v_old is not None else float("nan")
    )
    queue = new._queue
    cache_mb = (queue.nbytes() - 2 * q * queue.dim * 4 - 2 * q * 8) / 2**20
    kind = "q x q similarities" if queue.row_statistics is None else "row sums (q x 4)"
    old_s = f"{t_old * 1e3:13.1f}" if t_old is not None else f"{'-':>13}"
    speed = f"{t_old / t_new:9.2f}" if t_old is not None else f"{'-':>9}"
    c_old_s = f"{c_old * 1e3:11.1f}" if c_old is not None else f"{'-':>11}"
    print(
        f"{eps:>6g} {q:>6} {old_s} {t_new * 1e3:10.1f} {speed} {c_old_s} {c_new * 1e3:11.1f} "
        f"{diff:22.2e} {cache_mb:9.3f}  {kind}", flush=True,
    )
    return {"q": q, "eps": eps, "old_s": t_old, "new_s": t_new, "max_rel_diff": diff}
