"""Feature queue ("memorised historic sampling") shared by stateful losses.

Design (measured with Keras 3.15 / TF 2.21; see the D2SM docs):

* the state is plain ``tf.Variable`` s created in ``__init__`` with
  ``aggregation=ONLY_FIRST_REPLICA``: built inside ``strategy.scope()`` they are
  mirrored, every replica computes the same update from the all-gathered batch and
  replica 0's update is applied everywhere;
* a loss built *outside* the scope would hold plain variables that every replica
  writes to (silently wrong), so :meth:`FeatureQueue.check_distribution` raises;
* rows are written with an in-place ``scatter_update`` (only the new rows move)
  after the loss has been computed, the pointer wraps, never-filled slots are
  masked out by :meth:`FeatureQueue.valid_mask`;
* evaluation never enqueues: a loss told ``training=False`` (by
  ``RestorationModel.compute_loss``) traces no enqueue, and a run-time switch
  (``enabled``) lets callbacks (``QueueControl``) and custom loops
  (``frozen_queue()``) freeze the queue;
* what the loss needs of the queue-to-queue pairs is kept between steps
  (:meth:`FeatureQueue.read_cache`): by default the cosine similarities (``q x q``
  per domain); with ``row_statistics`` (a
  :class:`~tfrestore.losses._similarity.QueueRowStatistics`) only their per-row sums
  (``q x 4``, no ``q^2`` memory or work at all). An enqueue computes only the ``n``
  new rows against the queue (``O(q n D)`` instead of ``O(q^2 D)``); row sums are
  updated by subtracting the overwritten columns and adding the new ones (float64),
  and the written rows' sums are computed afresh, so no row carries more than
  ``q / n`` incremental updates. The cache carries a checksum of the rows it was
  computed from (one integer per row); whenever the rows were changed behind its
  back (a checkpoint restore that does not go through :meth:`FeatureQueue.load`, a
  manual ``assign``) the step recomputes it from the rows and writes it back, so
  cached values are never used stale. The cache is not saved:
  :meth:`FeatureQueue.load` rebuilds it.
"""

from __future__ import annotations

import collections
import contextlib

import numpy as np
import tensorflow as tf

from tfrestore.losses._counter import OutsideScopeError

__all__ = [
    "FeatureQueue",
    "QueueSimilarities",
    "QueueRowSums",
    "QueueOutsideScopeError",
]


class QueueOutsideScopeError(OutsideScopeError):
    """A stateful loss built outside ``strategy.scope()`` is used under a
    multi-replica strategy."""


class QueueSimilarities(
    collections.namedtuple("QueueSimilarities", ["pred", "true", "keys_pred", "keys_true"])
):
    """Queue-to-queue cosine similarities ``(q, q)`` (restored / clean rows, no
    gradient) and the per-row checksums of the rows they belong to."""


class QueueRowSums(collections.namedtuple("QueueRowSums", ["sums", "keys_pred", "keys_true"])):
    """``(q, width)`` float64 per-row sums of the queue pairs (no gradient) and the
    per-row checksums of the rows they belong to."""


def _row_keys(rows):
    """Per-row checksum ``(q,)`` int64 of ``(q, D)`` rows (static ``D``): the
    wrapping sum of each row's float32 bit patterns, read two at a time as one
    int64 when ``D`` is even (a view, no conversion pass: 3.6x faster than widening
    every value, which was the largest per-step cost of a large queue).

    Integer sums are exact in any order, so the same rows give the same keys in
    eager, graph and XLA, on every device (int64, not int32: TF keeps int32 GPU
    reductions on the host).
    """
    rows = tf.cast(rows, tf.float32)
    d = rows.shape[-1]
    if d is not None and d % 2 == 0:
        pairs = tf.reshape(rows, [-1, d // 2, 2])
        return tf.reduce_sum(tf.bitcast(pairs, tf.int64), axis=-1)
    bits = tf.bitcast(rows, tf.int32)
    return tf.reduce_sum(tf.cast(bits, tf.int64), axis=-1)


def _similarity(a, b):
    return tf.linalg.matmul(a, b, transpose_b=True)


class FeatureQueue:
    """Two FIFO ring buffers of feature rows (restored / clean) plus a counter.

    Not a Keras object on purpose: the owning loss saves it through its own
    ``save_own_variables`` / ``load_own_variables``.

    Args:
        size: int. Number of rows ``q``.
        dim: int. Feature dimension ``D``.
        name: str. Prefix of the variable names.
        row_statistics: None to cache the ``q x q`` similarities, or an object with
            ``width``, ``row_sums(cos_pred, cos_true, weights)`` (sums over the last
            axis of per-pair terms, symmetric in the pair), ``full_row_sums(pred,
            true, valid)`` and ``include_diagonal``, whose per-row sums over the valid
            queue columns are cached instead.
    """

    def __init__(self, size, dim, name="queue", row_statistics=None):
        self.size = int(size)
        self.dim = int(dim)
        self.row_statistics = row_statistics
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        with tf.init_scope():
            self.pred = tf.Variable(
                tf.zeros((self.size, self.dim), tf.float32), name=f"{name}_pred", **kw
            )
            self.true = tf.Variable(
                tf.zeros((self.size, self.dim), tf.float32), name=f"{name}_true", **kw
            )
            # Total rows ever written; the write pointer is count % size.
            self.count = tf.Variable(tf.constant(0, tf.int64), name=f"{name}_count", **kw)
            # Run-time switch (1 = enqueue), toggled by QueueControl / frozen().
            self.enabled = tf.Variable(tf.constant(1, tf.int32), name=f"{name}_enabled", **kw)
            # The cache (row-row similarities of each buffer, all-zero rows giving 0,
            # or per-row sums) and the checksums of the rows it was computed from
            # (0 for zero rows).
            self.sim_pred = self.sim_true = self.row_sums = None
            if row_statistics is None:
                self.sim_pred = tf.Variable(
                    tf.zeros((self.size, self.size), tf.float32), name=f"{name}_sim_pred", **kw
                )
                self.sim_true = tf.Variable(
                    tf.zeros((self.size, self.size), tf.float32), name=f"{name}_sim_true", **kw
                )
            else:
                self.row_sums = tf.Variable(
                    tf.zeros((self.size, row_statistics.width), tf.float64),
                    name=f"{name}_row_sums", **kw,
                )
            self.cache_keys_pred = tf.Variable(
                tf.zeros((self.size,), tf.int64), name=f"{name}_cache_keys_pred", **kw
            )
            self.cache_keys_true = tf.Variable(
                tf.zeros((self.size,), tf.int64), name=f"{name}_cache_keys_true", **kw
            )

    # ------------------------------------------------------------ checks
    def check_distribution(self, owner_name="loss"):
        """Raise if a multi-replica strategy is active but the state is not mirrored."""
        if not tf.distribute.has_strategy():
            return
        strategy = tf.distribute.get_strategy()
        if strategy.num_replicas_in_sync > 1 and not isinstance(
            self.pred, tf.distribute.DistributedValues
        ):
            raise QueueOutsideScopeError(
                f"{owner_name}: this loss keeps a feature queue and was created outside "
                f"`strategy.scope()`, but it is running under {type(strategy).__name__} "
                f"with {strategy.num_replicas_in_sync} replicas. Each replica would write "
                f"its own rows into one unsynchronised queue. Create the loss inside the "
                f"same `with strategy.scope():` block as the model and `compile()`."
            )

    # ------------------------------------------------------------ reading
    def filled(self):
        return tf.minimum(self.count.read_value(), self.size)

    def valid_mask(self):
        """``(size,)`` float32, 1 for slots that hold a written row."""
        return tf.cast(tf.range(self.size, dtype=tf.int64) < self.filled(), tf.float32)

    def read(self):
        """``(queue_pred, queue_true, mask)``; the rows are constants (no gradient)."""
        return (
            tf.stop_gradient(self.pred.read_value()),
            tf.stop_gradient(self.true.read_value()),
            self.valid_mask(),
        )

    def read_cache(self):
        """This step's :class:`QueueSimilarities` or :class:`QueueRowSums` (constants,
        no gradient); pass it to :meth:`enqueue`.

        Read from the cache; recomputed from the rows (``O(q^2 D)``, this step only:
        the following :meth:`enqueue` writes it back) if the rows' checksums do not
        match the cache's.
        """
        pred, true = self.pred.read_value(), self.true.read_value()
        keys_pred, keys_true = _row_keys(pred), _row_keys(true)
        fresh = tf.logical_and(
            tf.reduce_all(tf.equal(keys_pred, self.cache_keys_pred.read_value())),
            tf.reduce_all(tf.equal(keys_true, self.cache_keys_true.read_value())),
        )
        # Only reads in the branches (no merge_call), so this is fine in replica context.
        if self.row_statistics is None:
            s_pred, s_true = tf.cond(
                fresh,
                lambda: (self.sim_pred.read_value(), self.sim_true.read_value()),
                lambda: (_similarity(pred, pred), _similarity(true, true)),
            )
            return QueueSimilarities(
                tf.stop_gradient(s_pred), tf.stop_gradient(s_true), keys_pred, keys_true
            )
        sums = tf.cond(
            fresh,
            self.row_sums.read_value,
            lambda: self.row_statistics.full_row_sums(pred, true, self.valid_mask()),
        )
        return QueueRowSums(tf.stop_gradient(sums), keys_pred, keys_true)

    # ------------------------------------------------------------ writing
    def enqueue(self, rows_pred, rows_true, cache=None):
        """Write ``n`` rows at ``count % size`` (wrapping) and advance ``count``.

        ``n <= size`` is the caller's responsibility. When ``enabled`` is 0 the old
        rows are written back and the counter does not move. ``cache``: the
        :meth:`read_cache` of this step (read again if omitted); it is updated from
        the ``n x q`` similarities of the new (and, for row sums, the overwritten)
        rows.
        """
        if cache is None:
            cache = self.read_cache()
        rows_pred = tf.stop_gradient(tf.cast(rows_pred, tf.float32))
        rows_true = tf.stop_gradient(tf.cast(rows_true, tf.float32))
        # The static width picks the checksum variant, as for the queue's own rows.
        rows_pred.set_shape([None, self.dim])
        rows_true.set_shape([None, self.dim])
        n = tf.shape(rows_pred, out_type=tf.int64)[0]
        count = self.count.read_value()
        idx = tf.math.floormod(count + tf.range(n, dtype=tf.int64), self.size)
        on = self.enabled.read_value() > 0
        # No tf.cond: a merge_call inside a cond branch is not allowed in replica
        # context, and the gathered old rows are tiny compared with the queue.
        pred, true = self.pred.read_value(), self.true.read_value()
        new_pred = tf.where(on, rows_pred, tf.gather(pred, idx))
        new_true = tf.where(on, rows_true, tf.gather(true, idx))
        ops = [
            self.pred.scatter_update(tf.IndexedSlices(new_pred, idx)),
            self.true.scatter_update(tf.IndexedSlices(new_true, idx)),
            self.count.assign_add(n * tf.cast(on, tf.int64)),
        ]
        for keys, new, var in (
            (cache.keys_pred, new_pred, self.cache_keys_pred),
            (cache.keys_true, new_true, self.cache_keys_true),
        ):
            ops.append(var.assign(tf.tensor_scatter_nd_update(keys, idx[:, None], _row_keys(new))))
        if self.row_statistics is None:
            for rows, new, sim, var in (
                (pred, new_pred, cache.pred, self.sim_pred),
                (true, new_true, cache.true, self.sim_true),
            ):
                ops.append(_write_similarities(var, rows, new, idx, on, sim))
        else:
            sums = _updated_row_sums(
                self.row_statistics, cache.sums, pred, true, new_pred, new_true, idx, on,
                filled_before=tf.minimum(count, self.size),
                filled_after=tf.minimum(count + n, self.size),
            )
            ops.append(self.row_sums.assign(sums))
        return ops

    # ------------------------------------------------------------ control
    def set_enabled(self, enabled):
        self.enabled.assign(1 if enabled else 0)

    @contextlib.contextmanager
    def frozen(self):
        """Context manager: no rows are enqueued inside (restores the old state)."""
        before = int(self.enabled.numpy())
        self.enabled.assign(0)
        try:
            yield
        finally:
            self.enabled.assign(before)

    def reset(self):
        self.pred.assign(tf.zeros_like(self.pred))
        self.true.assign(tf.zeros_like(self.true))
        self.count.assign(0)
        self.refresh_cache()

    def refresh_cache(self):
        """Recompute the cache from the rows (after writing them directly).

        Not needed for correctness (a stale cache is detected and bypassed), only to
        avoid the one-step recomputation.
        """
        pred = tf.convert_to_tensor(self.pred.read_value())
        true = tf.convert_to_tensor(self.true.read_value())
        self.cache_keys_pred.assign(_row_keys(pred))
        self.cache_keys_true.assign(_row_keys(true))
        if self.row_statistics is not None:
            self.row_sums.assign(self.row_statistics.full_row_sums(pred, true, self.valid_mask()))
            return
        for value, sim in ((pred, self.sim_pred), (true, self.sim_true)):
            s = _similarity(value, value)
            sim.assign(0.5 * (s + tf.transpose(s)))  # exactly symmetric, as the updates

    # ------------------------------------------------------------ saving
    def save(self, store):
        store["queue_pred"] = np.asarray(self.pred.numpy())
        store["queue_true"] = np.asarray(self.true.numpy())
        store["queue_count"] = np.asarray(self.count.numpy(), np.int64)

    def load(self, store, owner_name="loss"):
        """Restore from ``store``; a store without queue entries leaves the state as is."""
        keys = ("queue_pred", "queue_true", "queue_count")
        present = [k for k in keys if k in store]
        if not present:
            return False
        if len(present) != len(keys):
            raise ValueError(
                f"{owner_name}: the weights file holds only {present} of the queue "
                f"entries {list(keys)}; it is corrupt or from another version."
            )
        pred, true = np.asarray(store["queue_pred"]), np.asarray(store["queue_true"])
        expected = (self.size, self.dim)
        if pred.shape != expected or true.shape != expected:
            raise ValueError(
                f"{owner_name}: the saved queue has shape {pred.shape}, this loss expects "
                f"(queue_size, feature_dim) = {expected}. Build the loss with the same "
                f"queue_size / patch_size / image_size / layer as when it was saved."
            )
        self.pred.assign(pred.astype(np.float32))
        self.true.assign(true.astype(np.float32))
        self.count.assign(int(np.asarray(store["queue_count"])))
        self.refresh_cache()
        return True

    def nbytes(self):
        """Bytes held by the two buffers, the cache (``q x q`` similarities or ``q x
        width`` float64 row sums) and the row keys."""
        if self.row_statistics is None:
            cache = 2 * self.size * self.size * 4
        else:
            cache = self.size * self.row_statistics.width * 8
        return 2 * self.size * self.dim * 4 + cache + 2 * self.size * 8


def _write_similarities(var, rows, new, idx, on, sim):
    """The op that makes ``var`` the similarities of the queue after ``new`` rows are
    written at ``idx`` (``O(n q D)`` arithmetic).

    ``sim``: this step's cached (or recomputed) similarities.
    """
    # New rows against the queue after the write: old rows except at ``idx``.
    s_new = _similarity(new, rows)  # (n, q)
    # The new-new block made exactly symmetric: rows and columns are written by one
    # scatter below, whose duplicate (idx, idx) entries must then agree bit for bit.
    nn = _similarity(new, new)
    nn = 0.5 * (nn + tf.transpose(nn))
    s_new = tf.transpose(tf.tensor_scatter_nd_update(tf.transpose(s_new), idx[:, None], nn))
    # Frozen queue: keep the cached values bit for bit.
    s_new = tf.where(on, s_new, tf.gather(sim, idx))
    q = tf.shape(sim, out_type=tf.int64)[0]
    grid = tf.meshgrid(idx, tf.range(q, dtype=tf.int64), indexing="ij")  # (n, q) each
    rows_at = tf.reshape(tf.stack(grid, axis=-1), [-1, 2])  # (idx[a], j)
    cols_at = tf.reshape(tf.stack(grid[::-1], axis=-1), [-1, 2])  # (j, idx[a])
    flat = tf.reshape(s_new, [-1])
    # One scatter (one O(q^2) copy) for the new rows and columns.
    sim = tf.tensor_scatter_nd_update(
        sim, tf.concat([rows_at, cols_at], axis=0), tf.concat([flat, flat], axis=0)
    )
    # A whole-matrix assign (an O(q^2) copy, no arithmetic) rather than in-place
    # scatters: mirrored variables have no scatter_nd_update, and a sparse update
    # puts a variable in copy-on-read mode (every later read copies all q^2 values).
    return var.assign(sim)


def _updated_row_sums(
    stats, sums, pred, true, new_pred, new_true, idx, on, filled_before, filled_after
):
    """Row sums of the queue after ``new_*`` rows replace rows ``idx`` (``O(q n D)``).

    Every other row loses the overwritten columns (those that were filled) and
    gains the new ones; the written rows are summed afresh over all valid columns
    of the queue after the write. ``sums``: this step's (cached or recomputed) row
    sums; a frozen queue (``on`` false) keeps them bit for bit.
    """
    q = pred.shape[0]
    slots = tf.range(q, dtype=tf.int64)
    old_s, old_t = tf.gather(pred, idx), tf.gather(true, idx)
    old_valid = tf.cast(idx < filled_before, tf.float64)[None, :]  # (1, n)
    removed = stats.row_sums(_similarity(pred, old_s), _similarity(true, old_t), old_valid)

    def against_new(rows, new):  # (q, n) cosines with the queue after the write
        nn = _similarity(new, new)
        nn = 0.5 * (nn + tf.transpose(nn))  # the (idx, idx) block as in a fresh sum
        return tf.tensor_scatter_nd_update(_similarity(rows, new), idx[:, None], nn)

    cos_s, cos_t = against_new(pred, new_pred), against_new(true, new_true)
    kept = sums - removed + stats.row_sums(cos_s, cos_t)
    weights = tf.cast(slots < filled_after, tf.float64)[None, :]  # (1, q)
    if not stats.include_diagonal:
        weights = weights * tf.cast(tf.not_equal(idx[:, None], slots[None, :]), tf.float64)
    fresh = stats.row_sums(tf.transpose(cos_s), tf.transpose(cos_t), weights)  # (n, 4)
    updated = tf.tensor_scatter_nd_update(kept, idx[:, None], fresh)
    return tf.where(on, updated, sums)
