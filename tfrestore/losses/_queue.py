"""Feature queue ("memorised historic sampling") shared by stateful losses.

Design (measured in keras_notes §1, see the D2SM docs):

* the state is plain ``tf.Variable`` s created in ``__init__`` with
  ``aggregation=ONLY_FIRST_REPLICA``: built inside ``strategy.scope()`` they are
  mirrored, every replica computes the same update from the all-gathered batch and
  replica 0's update is applied everywhere;
* a loss built *outside* the scope would hold plain variables that every replica
  writes to (silently wrong), so :meth:`FeatureQueue.check_distribution` raises;
* rows are written with an in-place ``scatter_update`` (only the new rows move)
  after the loss has been computed, the pointer wraps, never-filled slots are
  masked out by :meth:`FeatureQueue.valid_mask`;
* evaluation never enqueues: the Keras step that traces the loss is detected
  (:func:`tfrestore.utils.keras_compat.keras_step_mode`) and a run-time switch
  (``enabled``) lets callbacks and custom loops freeze the queue;
* the queue-to-queue cosine similarities (``q x q`` per domain) are kept between
  steps (:meth:`FeatureQueue.read_similarities`): an enqueue computes only the
  ``n`` new rows against the queue (``O(q n D)`` instead of ``O(q^2 D)``). The cache
  carries a checksum of the rows it was computed from (one integer per row);
  whenever the rows were changed behind its back (a checkpoint restore that does
  not go through :meth:`FeatureQueue.load`, a manual ``assign``) the step
  recomputes the similarities from the rows and writes them back, so the cached
  values are never used stale. The cache is not saved: :meth:`FeatureQueue.load`
  rebuilds it.
"""

from __future__ import annotations

import collections
import contextlib

import numpy as np
import tensorflow as tf

from tfrestore.losses._counter import OutsideScopeError
from tfrestore.utils.keras_compat import keras_step_mode

__all__ = ["FeatureQueue", "QueueSimilarities", "keras_step_mode", "QueueOutsideScopeError"]


class QueueOutsideScopeError(OutsideScopeError):
    """A stateful loss built outside ``strategy.scope()`` is used under a
    multi-replica strategy."""


class QueueSimilarities(
    collections.namedtuple("QueueSimilarities", ["pred", "true", "keys_pred", "keys_true"])
):
    """Queue-to-queue cosine similarities ``(q, q)`` (restored / clean rows, no
    gradient) and the per-row checksums of the rows they belong to."""


def _row_keys(rows):
    """Per-row checksum ``(q,)`` int64: the sum of each row's float32 bit patterns.

    Integer sums are exact in any order, so the same rows give the same keys in
    eager, graph and XLA, on every device (int64, not int32: TF keeps int32 GPU
    reductions on the host).
    """
    bits = tf.bitcast(tf.cast(rows, tf.float32), tf.int32)
    return tf.reduce_sum(tf.cast(bits, tf.int64), axis=-1)


def _similarity(a, b):
    return tf.linalg.matmul(a, b, transpose_b=True)


class FeatureQueue:
    """Two FIFO ring buffers of feature rows (restored / clean) plus a counter.

    Not a Keras object on purpose: the owning loss saves it through its own
    ``save_own_variables`` / ``load_own_variables``.

    Args:
        size: number of rows ``q``.
        dim: feature dimension ``D``.
        name: prefix of the variable names.
    """

    def __init__(self, size, dim, name="queue"):
        self.size = int(size)
        self.dim = int(dim)
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
            # Cached row-row similarities of each buffer (all-zero rows give 0) and the
            # checksums of the rows they were computed from (0 for zero rows).
            self.sim_pred = tf.Variable(
                tf.zeros((self.size, self.size), tf.float32), name=f"{name}_sim_pred", **kw
            )
            self.sim_true = tf.Variable(
                tf.zeros((self.size, self.size), tf.float32), name=f"{name}_sim_true", **kw
            )
            self.sim_keys_pred = tf.Variable(
                tf.zeros((self.size,), tf.int64), name=f"{name}_sim_keys_pred", **kw
            )
            self.sim_keys_true = tf.Variable(
                tf.zeros((self.size,), tf.int64), name=f"{name}_sim_keys_true", **kw
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

    def read_similarities(self):
        """:class:`QueueSimilarities` of the current rows (constants, no gradient).

        ``pred[i, j] = queue_pred[i] . queue_pred[j]`` (likewise ``true``), read from
        the cache; recomputed from the rows (``O(q^2 D)``, this step only: the
        following :meth:`enqueue` writes them back) if the rows' checksums do not
        match the cache's. Pass the result to :meth:`enqueue`.
        """
        pred, true = self.pred.read_value(), self.true.read_value()
        keys_pred, keys_true = _row_keys(pred), _row_keys(true)
        fresh = tf.logical_and(
            tf.reduce_all(tf.equal(keys_pred, self.sim_keys_pred.read_value())),
            tf.reduce_all(tf.equal(keys_true, self.sim_keys_true.read_value())),
        )
        # Only reads in the branches (no merge_call), so this is fine in replica context.
        s_pred, s_true = tf.cond(
            fresh,
            lambda: (self.sim_pred.read_value(), self.sim_true.read_value()),
            lambda: (_similarity(pred, pred), _similarity(true, true)),
        )
        return QueueSimilarities(
            tf.stop_gradient(s_pred), tf.stop_gradient(s_true), keys_pred, keys_true
        )

    # ------------------------------------------------------------ writing
    def enqueue(self, rows_pred, rows_true, similarities=None):
        """Write ``n`` rows at ``count % size`` (wrapping) and advance ``count``.

        ``n <= size`` is the caller's responsibility. When ``enabled`` is 0 the old
        rows are written back and the counter does not move. ``similarities``: the
        :meth:`read_similarities` of this step (read again if omitted); the cache is
        updated with the ``n x q`` similarities of the new rows.
        """
        if similarities is None:
            similarities = self.read_similarities()
        rows_pred = tf.stop_gradient(tf.cast(rows_pred, tf.float32))
        rows_true = tf.stop_gradient(tf.cast(rows_true, tf.float32))
        n = tf.shape(rows_pred, out_type=tf.int64)[0]
        idx = tf.math.floormod(self.count.read_value() + tf.range(n, dtype=tf.int64), self.size)
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
        for rows, new, sim, keys, var, key_var in (
            (pred, new_pred, similarities.pred, similarities.keys_pred,
             self.sim_pred, self.sim_keys_pred),
            (true, new_true, similarities.true, similarities.keys_true,
             self.sim_true, self.sim_keys_true),
        ):
            ops.extend(_write_similarities(var, key_var, rows, new, idx, on, sim, keys))
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
        self.refresh_similarities()

    def refresh_similarities(self):
        """Recompute the cached similarities from the rows (after writing them directly).

        Not needed for correctness (a stale cache is detected and bypassed), only to
        avoid the one-step recomputation.
        """
        for rows, sim, keys in (
            (self.pred, self.sim_pred, self.sim_keys_pred),
            (self.true, self.sim_true, self.sim_keys_true),
        ):
            value = tf.convert_to_tensor(rows.read_value())
            s = _similarity(value, value)
            sim.assign(0.5 * (s + tf.transpose(s)))  # exactly symmetric, as the updates
            keys.assign(_row_keys(value))

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
        self.refresh_similarities()
        return True

    def nbytes(self):
        """Bytes held by the two buffers, their ``q x q`` similarity caches and row keys."""
        return 2 * self.size * (self.dim + self.size + 2) * 4


def _write_similarities(var, key_var, rows, new, idx, on, sim, keys):
    """Ops that make ``var`` / ``key_var`` the similarities and row keys of the queue
    after ``new`` rows are written at ``idx`` (``O(n q D)`` arithmetic).

    ``sim`` / ``keys``: this step's :meth:`FeatureQueue.read_similarities` (correct
    even when the cache was stale).
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
    new_keys = tf.tensor_scatter_nd_update(keys, idx[:, None], _row_keys(new))
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
    return [var.assign(sim), key_var.assign(new_keys)]
