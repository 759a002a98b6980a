"""Similarity-set arithmetic of D2SM: cosine kernel, conditional probabilities and
the KL / inverse-KL / Jensen-Shannon divergences between two sample sets.

Two kernels turn the cosine similarity ``s`` of two rows into a weight: the
paper's linear ``(s + 1) / 2`` (``temperature=None``), and the Gaussian-like
``exp(s / temperature)`` that SNE / t-SNE (and contrastive losses) use, where the
temperature plays the role of the bandwidth: deep features of different images
have cosines in a narrow band, so the linear kernel's distributions are nearly
uniform and carry little signal, while a small temperature makes them peak on
each sample's nearest neighbours.

Everything here works on float32 feature rows that are already flattened; the
loss class (:mod:`tfrestore.losses.d2sm`) decides which rows form a set. A set is
``M`` rows: the ``P`` current rows of a group (all patches of one image, or of the
whole global batch) followed by the ``q`` queue slots. ``col_mask`` (``(M,)``,
0/1) marks valid rows; never-filled queue slots are 0 and take part neither as a
neighbour (column) nor as a conditioning sample (row).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = [
    "DIVERGENCES",
    "KL_REDUCTIONS",
    "l2_normalize",
    "cosine_kernel",
    "conditional_probabilities",
    "softmax_probabilities",
    "row_divergence",
    "set_divergence",
    "QueueRowStatistics",
]

#: "kl": KL(G'||G) weighted by the restored-image distribution (the paper's D2SM);
#: "ikl": KL(G||G') weighted by the clean distribution (the released code, variant B);
#: "js": Jensen-Shannon divergence with the mixture (G + G') / 2;
#: "symmetric_kl": (KL(G'||G) + KL(G||G')) / 2, the paper's eq. (10) as printed.
DIVERGENCES = ("kl", "ikl", "js", "symmetric_kl")
#: "mean_all": mean over all N^2 entries (released code); "sum_rows_mean": sum over
#: j of each conditional distribution's divergence, averaged over the N rows
#: (the paper's double sum divided by N).
KL_REDUCTIONS = ("mean_all", "sum_rows_mean")

_TINY = 1e-30
#: Divergences whose queue rows :class:`QueueRowStatistics` computes exactly (the
#: Jensen-Shannon mixture mixes both normalisers inside every logarithm).
ROW_SUM_DIVERGENCES = ("kl", "ikl", "symmetric_kl")
#: Smallest temperature of the row-sum path: its kernel ``exp((cos - 1) / t)`` >=
#: ``exp(-2 / t)`` must stay above float64's underflow (about 1e-308).
MIN_ROW_SUM_TEMPERATURE = 0.003
_TINY64 = 1e-300


def l2_normalize(f, eps=1e-6):
    """``f / (||f||_2 + eps)`` per row, as in the released code (float32).

    ``||f||`` is computed as ``sqrt(max(sum f^2, 1e-30))`` so that an all-zero row
    has a finite (zero) gradient instead of ``0 * inf``.
    """
    f = tf.cast(f, tf.float32)
    sq = tf.reduce_sum(tf.square(f), axis=-1, keepdims=True)
    return f / (tf.sqrt(tf.maximum(sq, _TINY)) + eps)


def cosine_kernel(a, b):
    """``K = (a b^T + 1) / 2`` for L2-normalised rows (paper eq. 5); ``(..., M, M')``."""
    return (tf.linalg.matmul(a, b, transpose_b=True) + 1.0) * 0.5


def conditional_probabilities(k, col_mask, include_diagonal=True, diagonal_offset=0):
    """Row-normalise a kernel matrix ``k`` (``(..., M, M')``) over valid columns.

    ``P[i, j] = K[i, j] / sum_k K[i, k]`` with the sum over valid ``k`` (and
    ``k != i + diagonal_offset`` when ``include_diagonal`` is False: row ``i`` of a
    block of rows that starts at row ``diagonal_offset`` of the full set). Invalid
    columns get ``P = 0``.
    """
    mask = tf.cast(col_mask, k.dtype)
    w = tf.ones_like(k) * mask[..., None, :]
    if not include_diagonal:
        w = w * (1.0 - _diagonal(k, diagonal_offset))
    # (M + 1) / 2 can round to a hair below 0 for antipodal rows.
    kw = tf.maximum(k, 0.0) * w
    z = tf.reduce_sum(kw, axis=-1, keepdims=True)
    return kw / tf.maximum(z, _TINY)


def _diagonal(k, offset):
    """``(M, M')`` 0/1 matrix with ones at ``(i, i + offset)``."""
    rows, cols = tf.shape(k)[-2], tf.shape(k)[-1]
    eye = tf.eye(rows, cols - offset, dtype=k.dtype)
    return tf.pad(eye, [[0, 0], [offset, 0]])


def _f(r):
    """``(1 + r) log(1 + r) - r`` without cancellation near ``r = 0`` (series for
    ``|r| < 0.1``, truncation error < 1e-7 relative); ``f(-1) = 1`` (``0 log 0 = 0``,
    reached with ``eps = 0`` where ``p_j = 0``, with a zero gradient there)."""
    small = tf.abs(r) < 0.1
    rs = tf.where(small, r, tf.zeros_like(r))
    series = tf.zeros_like(r)
    for k in range(9, 1, -1):  # Horner: sum_k (-1)^k r^k / (k (k - 1))
        series = (series + (-1.0) ** k / (k * (k - 1))) * rs
    series = series * rs
    inside = r > -1.0
    rd = tf.where(small | ~inside, tf.ones_like(r), r)
    direct = tf.where(inside, (1.0 + rd) * tf.math.log1p(rd) - rd, tf.ones_like(r))
    return tf.where(small, series, direct)


def _no_eps(eps):
    """Whether ``eps`` is a Python 0: the ``eps log1p(r)`` terms are then dropped
    (not computed as ``0 * -inf`` where ``p_j = 0``)."""
    return not tf.is_tensor(eps) and eps == 0


def _kl_terms(p, q, eps):
    """Entries of ``sum_j p_j (log(p_j + eps) - log(q_j + eps))`` for rows with
    ``sum_j p_j = sum_j q_j``, rewritten as ``b f((a - b) / b) - eps log1p((a - b) / b)``
    with ``a = p + eps``, ``b = q + eps`` (the dropped ``sum_j (p_j - q_j)`` is 0).

    Each term is then second order in ``p - q``, so the float32 loss keeps its
    relative precision near the optimum, where the naive form is dominated by
    the rounding of first-order terms that cancel.
    """
    if _no_eps(eps):
        return _kl_terms_no_eps(p, q)
    b = tf.maximum(q + eps, _TINY)
    r = (p - q) / b
    return b * _f(r) - eps * tf.math.log1p(r)


@tf.custom_gradient
def _kl_terms_no_eps(p, q):
    """:func:`_kl_terms` with ``eps = 0`` and the gradient ``(log(p / q), 1 - p / q)``
    of :func:`_kl_terms_and_partials`: differentiating ``(p - q) / q`` would divide
    by ``q^2``, which overflows float32 for ``q < 1e-19`` (small temperatures)."""
    value, dp, dq = _kl_terms_and_partials(p, q, 0.0)

    def grad(upstream):
        return upstream * dp, upstream * dq

    return value, grad


def softmax_probabilities(
    cos, col_mask, include_diagonal=True, temperature=1.0, diagonal_offset=0
):
    """``P[i, j] = exp(s_ij / t) / sum_k exp(s_ik / t)`` over valid columns ``k``
    (and ``k != i + diagonal_offset`` when ``include_diagonal`` is False) of a cosine
    matrix ``cos`` ``(..., M, M')``. Invalid columns get ``P = 0``."""
    mask = tf.cast(col_mask, cos.dtype)
    w = tf.ones_like(cos) * mask[..., None, :]
    if not include_diagonal:
        w = w * (1.0 - _diagonal(cos, diagonal_offset))
    logits = cos / temperature
    # Shift by the row maximum over the valid columns (the softmax is invariant to
    # it, so it carries no gradient): no overflow/underflow for small temperatures.
    valid = w > 0
    masked = tf.where(valid, logits, tf.fill(tf.shape(logits), -1e30))
    shift = tf.stop_gradient(tf.reduce_max(masked, axis=-1, keepdims=True))
    e = tf.where(valid, tf.exp(masked - shift), tf.zeros_like(logits))
    z = tf.reduce_sum(e, axis=-1, keepdims=True)
    return e / tf.maximum(z, _TINY)


def row_divergence(p_restored, p_clean, divergence="kl", eps=1e-6):
    """Per-row divergence ``sum_j d(P'[i, :], P[i, :])``, shape ``(..., M)``.

    ``eps`` is added inside both logarithms, as in the released code; e.g. for
    ``"kl"`` the value is ``sum_j P'_ij (log(P'_ij + eps) - log(P_ij + eps))``.
    Rows of ``P'`` and ``P`` must have equal sums (they are both distributions
    over the same valid columns).
    """
    ps, pt = p_restored, p_clean
    if divergence == "kl":
        terms = _kl_terms(ps, pt, eps)
    elif divergence == "ikl":
        terms = _kl_terms(pt, ps, eps)
    elif divergence == "js":
        mix = 0.5 * (ps + pt)
        terms = 0.5 * _kl_terms(ps, mix, eps) + 0.5 * _kl_terms(pt, mix, eps)
    elif divergence == "symmetric_kl":
        terms = 0.5 * (_kl_terms(ps, pt, eps) + _kl_terms(pt, ps, eps))
    else:
        raise ValueError(f"`divergence` must be one of {DIVERGENCES}, got {divergence!r}.")
    return tf.reduce_sum(terms, axis=-1)


def set_divergence(
    fs,
    ft,
    queue_s=None,
    queue_t=None,
    queue_mask=None,
    *,
    queue_similarities=None,
    queue_row_sums=None,
    divergence="kl",
    include_diagonal=True,
    eps=1e-6,
    temperature=None,
):
    """Divergence of each row of ``G`` groups of similarity sets.

    Args:
        fs, ft: ``(G, P, D)`` L2-normalised current rows (restored / clean).
        queue_s, queue_t: optional ``(q, D)`` queued rows appended to every group.
        queue_mask: ``(q,)`` 0/1 validity of the queue slots.
        queue_similarities: optional ``(queue_s queue_s^T, queue_t queue_t^T)``,
            e.g. cached between steps by :class:`~tfrestore.losses._queue.FeatureQueue`;
            computed here (``O(q^2 D)``) when omitted.
        queue_row_sums: optional ``(q, 4)`` float64 :meth:`QueueRowStatistics.row_sums`
            of every queue row over the valid queue columns (with ``eps=0`` only).
            The queue rows' divergences then cost ``O(G P q)`` instead of
            ``O(G q^2)`` and ``queue_similarities`` is not used.
        temperature: None for the paper's kernel ``(s + 1) / 2``, or ``t > 0`` for
            ``exp(s / t)`` (see the module docstring).
    Returns:
        ``(row_div, row_mask, n_valid)``: ``(G, P + q)`` per-row divergences,
        the ``(P + q,)`` row mask and the number of valid rows per set (scalar).
    """
    fs = tf.cast(fs, tf.float32)
    ft = tf.cast(ft, tf.float32)
    mask = tf.ones([tf.shape(fs)[1]], tf.float32)

    def probabilities(cos, col_mask):
        if temperature is None:
            return conditional_probabilities(_linear_kernel(cos), col_mask, include_diagonal)
        return softmax_probabilities(cos, col_mask, include_diagonal, temperature)

    if queue_s is None:
        ps = probabilities(tf.linalg.matmul(fs, fs, transpose_b=True), mask)
        pt = probabilities(tf.linalg.matmul(ft, ft, transpose_b=True), mask)
        rows = row_divergence(ps, pt, divergence, eps) * mask
        return rows, mask, tf.reduce_sum(mask)
    queue_s = tf.cast(queue_s, tf.float32)
    queue_t = tf.cast(queue_t, tf.float32)
    qmask = tf.cast(queue_mask, tf.float32)
    if queue_row_sums is not None and (eps != 0 or divergence not in ROW_SUM_DIVERGENCES):
        raise ValueError(
            f"queue_row_sums give exact divergences only with eps=0 and divergence in "
            f"{ROW_SUM_DIVERGENCES}, got eps={eps!r}, divergence={divergence!r}."
        )
    mask = tf.concat([mask, qmask], axis=0)

    # Rows of the current samples: the small (P, P + q) block.
    cross_s = tf.einsum("gpd,qd->gpq", fs, queue_s)  # (G, P, q) cosines
    cross_t = tf.einsum("gpd,qd->gpq", ft, queue_t)
    top_s = tf.concat([tf.linalg.matmul(fs, fs, transpose_b=True), cross_s], axis=2)
    top_t = tf.concat([tf.linalg.matmul(ft, ft, transpose_b=True), cross_t], axis=2)
    rows_top = row_divergence(
        probabilities(top_s, mask), probabilities(top_t, mask), divergence, eps
    )
    # Rows of the queued samples: their (q, q) block does not depend on the current
    # rows except through each row's normaliser, so it is built from the (cached)
    # queue similarities and never concatenated with the current columns.
    if queue_row_sums is not None:
        stats = QueueRowStatistics(temperature, include_diagonal)
        rows_queue = stats.queue_rows_divergence(cross_s, cross_t, queue_row_sums, qmask, divergence)
    else:
        if queue_similarities is None:
            queue_similarities = (
                tf.linalg.matmul(queue_s, queue_s, transpose_b=True),
                tf.linalg.matmul(queue_t, queue_t, transpose_b=True),
            )
        sims_s, sims_t = (tf.cast(x, tf.float32) for x in queue_similarities)
        rows_queue = _queue_rows_divergence(
            cross_s, cross_t, sims_s, sims_t, qmask, include_diagonal, divergence, eps,
            temperature,
        )
    rows = tf.concat([rows_top, rows_queue * qmask], axis=1)
    return rows, mask, tf.reduce_sum(mask)


def _linear_kernel(s):
    return (s + 1.0) * 0.5


_MASKED_LOGIT = -1e30


def _queue_rows_divergence(
    cross_s, cross_t, sims_s, sims_t, qmask, diag, divergence, eps, temperature=None
):
    """``(G, q)`` divergences of the queue rows ``[cross^T | K_qq]`` of each group.

    The same entries as :func:`conditional_probabilities` (or
    :func:`softmax_probabilities`) and :func:`row_divergence` on the full rows;
    only each row's normaliser (the sum of its kernel values; for the softmax kernel
    of ``exp(logit - row max)``) is accumulated in two parts, and the ``(G, q, q)`` block,
    which depends on the current rows only through that normaliser, has a
    hand-written gradient (:func:`_queue_block_divergence`).
    """
    parts = []
    for cross, sims in ((cross_s, sims_s), (cross_t, sims_t)):
        cos_c = tf.transpose(cross, [0, 2, 1])  # (G, q, P), all columns valid
        valid = tf.broadcast_to(qmask[None, :] > 0, tf.shape(sims))  # (q, q)
        if not diag:
            # set_diag, not a (1 - eye) mask: building eye(q) costs more than the rest.
            valid = tf.linalg.set_diag(valid, tf.zeros_like(qmask, tf.bool))
        if temperature is None:
            kc = tf.maximum(_linear_kernel(cos_c), 0.0)
            kq = tf.where(valid, tf.maximum(_linear_kernel(sims), 0.0), 0.0)
            z = tf.reduce_sum(kc, axis=-1) + tf.reduce_sum(kq, axis=-1)[None, :]
            z = tf.maximum(z, _TINY)  # (G, q)
            parts.append((kc / z[..., None], kq, z, None))
        else:
            # As softmax_probabilities: exp(logit - row max) / sum, the max over the
            # valid columns of both parts, so the largest entry is exp(0) = 1 exactly
            # (tiny temperatures give the same near one-hot rows as the full kernel).
            lc = cos_c / temperature  # (G, q, P)
            lq = tf.where(valid, sims / temperature, _MASKED_LOGIT)  # (q, q)
            max_q = tf.reduce_max(lq, axis=-1)  # (q,); a constant, as is the queue
            sum_q = tf.reduce_sum(
                tf.where(valid, tf.exp(lq - max_q[:, None]), 0.0), axis=-1
            )
            shift = tf.stop_gradient(tf.maximum(tf.reduce_max(lc, axis=-1), max_q[None, :]))
            ec = tf.exp(lc - shift[..., None])
            z = tf.reduce_sum(ec, axis=-1) + tf.exp(max_q[None, :] - shift) * sum_q[None, :]
            z = tf.maximum(z, _TINY)  # (G, q), at least 1
            parts.append((ec / z[..., None], lq, z, shift))
    (pc_s, kq_s, z_s, shift_s), (pc_t, kq_t, z_t, shift_t) = parts
    return row_divergence(pc_s, pc_t, divergence, eps) + _queue_block_divergence(
        z_s, z_t, kq_s, kq_t, divergence, eps, shift_s, shift_t
    )


def _kl_terms_and_partials(x, y, eps):
    """:func:`_kl_terms` and its partial derivatives in ``x`` and ``y``.

    The entry is ``x log((x + eps) / (y + eps)) - x + y``, so
    ``d/dx = log1p(r) - eps / (x + eps)`` and ``d/dy = 1 - x / (y + eps)``.
    """
    # max(): with eps = 0 an entry with x = y = 0 (an invalid column) is 0, not 0/0.
    b = tf.maximum(y + eps, _TINY)
    r = (x - y) / b
    log1p_r = tf.math.log1p(r)
    if _no_eps(eps):
        # d/dx = log(x / y) is -inf where x = 0; it is only used times x (0 log 0 = 0).
        return b * _f(r), tf.where(r > -1.0, log1p_r, tf.zeros_like(r)), 1.0 - x / b
    return b * _f(r) - eps * log1p_r, log1p_r - eps / tf.maximum(x + eps, _TINY), 1.0 - x / b


def _entries_and_partials(p, t, divergence, eps):
    """Entries of :func:`row_divergence` and their derivatives in ``p`` and ``t``."""
    if divergence == "kl":
        return _kl_terms_and_partials(p, t, eps)
    if divergence == "ikl":
        v, dt, dp = _kl_terms_and_partials(t, p, eps)
        return v, dp, dt
    if divergence == "js":
        mix = 0.5 * (p + t)
        v1, dx1, dm1 = _kl_terms_and_partials(p, mix, eps)
        v2, dx2, dm2 = _kl_terms_and_partials(t, mix, eps)
        dm = 0.25 * (dm1 + dm2)
        return 0.5 * v1 + 0.5 * v2, 0.5 * dx1 + dm, 0.5 * dx2 + dm
    if divergence == "symmetric_kl":
        v1, dp1, dt1 = _kl_terms_and_partials(p, t, eps)
        v2, dt2, dp2 = _kl_terms_and_partials(t, p, eps)
        return 0.5 * (v1 + v2), 0.5 * (dp1 + dp2), 0.5 * (dt1 + dt2)
    raise ValueError(f"`divergence` must be one of {DIVERGENCES}, got {divergence!r}.")


def _queue_block_divergence(z_s, z_t, k_s, k_t, divergence, eps, shift_s=None, shift_t=None):
    """``sum_j d(k_s[i, j] / z_s[g, i], k_t[i, j] / z_t[g, i])``, shape ``(G, q)``.

    ``k_s``, ``k_t`` (``(q, q)``) are constants: the kernel values, or with
    ``shift_s`` / ``shift_t`` (``(G, q)``, constants too) the softmax logits, whose
    kernel values are then ``exp(k[i, j] - shift[g, i])``. The value depends on
    ``z_s``, ``z_t`` row by row, so their gradients are ``-sum_j p_j d'(p_j) / z``
    per row. Computing these sums in the forward pass keeps the backward pass free
    of ``G q^2`` work and memory (automatic differentiation would keep about ten
    ``(G, q, q)`` tensors).
    """

    def kernel(k, shift):
        return k[None] if shift is None else tf.exp(k[None] - shift[..., None])

    def sums(z_s, z_t, k_s, k_t):
        p = kernel(k_s, shift_s) / z_s[..., None]
        t = kernel(k_t, shift_t) / z_t[..., None]
        v, dp, dt = _entries_and_partials(p, t, divergence, eps)
        g_s = -tf.reduce_sum(p * dp, axis=-1) / z_s
        g_t = -tf.reduce_sum(t * dt, axis=-1) / z_t
        return tf.reduce_sum(v, axis=-1), g_s, g_t

    @tf.custom_gradient
    def block(z_s, z_t):
        value, g_s, g_t = sums(z_s, z_t, k_s, k_t)

        def grad(upstream):
            return upstream * g_s, upstream * g_t

        return value, grad

    return block(z_s, z_t)


class QueueRowStatistics:
    """Per-row sums that give the queue rows' divergences exactly, without ``eps``.

    With ``eps = 0`` the KL of queue row ``i`` over the columns ``j`` of its set
    (the current rows and the valid queue slots) splits into sums:
    with kernel values ``k_j`` (restored) / ``l_j`` (clean), ``Z = sum_j k_j``,
    ``W = sum_j l_j`` and ``d_j = log k_j - log l_j``,

        ``KL(P'_i || P_i) = sum_j k_j d_j / Z - log Z + log W``,
        ``KL(P_i || P'_i) = -sum_j l_j d_j / W - log W + log Z``.

    The queue-column parts of the four sums ``(sum k, sum l, sum k d, -sum l d)``
    depend only on the queued rows, so the queue keeps them (:meth:`row_sums`) and
    updates them for the ``n`` rows it writes (``O(q n D)``); a step then adds the
    current rows' columns (``O(G P q D)``): no ``q x q`` work. (With ``eps > 0``,
    ``log(k_j / Z + eps)`` depends on ``Z`` entry by entry, which is why the released
    code's ``eps`` keeps an ``O(G q^2)`` part.) The sums and the final differences
    run in float64: the divergence is second order in ``d`` while each term is
    first order, so float32 would lose it near the optimum.

    Args:
        temperature: None for the kernel ``(cos + 1) / 2``, else ``exp(cos / t)``
            (kept as ``exp((cos - 1) / t)``; the shift cancels in ``P``).
        include_diagonal: bool. Count a queue row's own column.
    """

    width = 4

    def __init__(self, temperature=None, include_diagonal=False):
        self.temperature = None if temperature is None else float(temperature)
        self.include_diagonal = bool(include_diagonal)

    @staticmethod
    def applies(divergence, eps, temperature):
        """Whether the row-sum path computes this configuration exactly."""
        return (
            eps == 0
            and divergence in ROW_SUM_DIVERGENCES
            and (temperature is None or temperature >= MIN_ROW_SUM_TEMPERATURE)
        )

    def _kernel(self, cos):
        """``(k, log k)`` in float64."""
        cos = tf.cast(cos, tf.float64)
        if self.temperature is None:
            k = tf.maximum((cos + 1.0) * 0.5, 0.0)
            return k, tf.math.log(tf.maximum(k, _TINY64))
        log_k = (cos - 1.0) / self.temperature
        return tf.exp(log_k), log_k

    def row_sums(self, cos_s, cos_t, weights=None):
        """``(..., 4)`` float64 sums over the last axis of the pairs' terms
        ``(k, l, k d, -l d)``, each pair weighted by ``weights`` (0/1, broadcast)."""
        k, log_k = self._kernel(cos_s)
        l, log_l = self._kernel(cos_t)
        d = log_k - log_l
        terms = (k, l, k * d, -l * d)
        if weights is not None:
            w = tf.cast(weights, tf.float64)
            terms = tuple(t * w for t in terms)
        return tf.stack([tf.reduce_sum(t, axis=-1) for t in terms], axis=-1)

    def full_row_sums(self, rows_s, rows_t, valid, block=512):
        """:meth:`row_sums` of every row over the ``valid`` rows of the same queue
        (``O(q^2 D)``: after a restore, not per step), ``block`` rows at a time."""
        q = int(rows_s.shape[0])
        valid = tf.cast(valid, tf.float64)
        out = []
        for start in range(0, q, block):
            stop = min(start + block, q)
            w = tf.broadcast_to(valid[None, :], [stop - start, q])
            if not self.include_diagonal:  # row r of this block is queue row start + r
                w = w * (1.0 - _diagonal(w, start))
            cs = tf.linalg.matmul(rows_s[start:stop], rows_s, transpose_b=True)
            ct = tf.linalg.matmul(rows_t[start:stop], rows_t, transpose_b=True)
            out.append(self.row_sums(cs, ct, w))
        return tf.concat(out, axis=0)

    def queue_rows_divergence(self, cross_s, cross_t, queue_sums, qmask, divergence):
        """``(G, q)`` float32 divergences of the queue rows.

        ``cross_s`` / ``cross_t``: ``(G, P, q)`` cosines of the current rows with the
        queue; ``queue_sums``: ``(q, 4)`` :meth:`row_sums` over the valid queue
        columns; rows with ``qmask = 0`` give 0.
        """
        current = self.row_sums(
            tf.transpose(cross_s, [0, 2, 1]), tf.transpose(cross_t, [0, 2, 1])
        )  # (G, q, 4): all current columns are valid and none is a queue row's own
        sums = current + tf.cast(queue_sums, tf.float64)[None]
        z_s = tf.maximum(sums[..., 0], _TINY64)
        z_t = tf.maximum(sums[..., 1], _TINY64)
        log_ratio = tf.math.log(z_t) - tf.math.log(z_s)
        kl = sums[..., 2] / z_s + log_ratio  # KL(P' || P)
        ikl = sums[..., 3] / z_t - log_ratio  # KL(P || P')
        if divergence == "kl":
            rows = kl
        elif divergence == "ikl":
            rows = ikl
        elif divergence == "symmetric_kl":
            rows = 0.5 * (kl + ikl)
        else:
            raise ValueError(
                f"the queue row sums cover divergence in {ROW_SUM_DIVERGENCES}, got "
                f"{divergence!r}."
            )
        valid = tf.cast(qmask, tf.float64)[None, :] > 0
        return tf.cast(tf.where(valid, rows, 0.0), tf.float32)
