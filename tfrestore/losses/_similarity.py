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


def conditional_probabilities(k, col_mask, include_diagonal=True):
    """Row-normalise a kernel matrix ``k`` (``(..., M, M)``) over valid columns.

    ``P[i, j] = K[i, j] / sum_k K[i, k]`` with the sum over valid ``k`` (and
    ``k != i`` when ``include_diagonal`` is False). Invalid columns get ``P = 0``.
    """
    m = tf.shape(k)[-1]
    mask = tf.cast(col_mask, k.dtype)
    w = tf.ones_like(k) * mask[..., None, :]
    if not include_diagonal:
        w = w * (1.0 - tf.eye(m, dtype=k.dtype))
    # (M + 1) / 2 can round to a hair below 0 for antipodal rows.
    kw = tf.maximum(k, 0.0) * w
    z = tf.reduce_sum(kw, axis=-1, keepdims=True)
    return kw / tf.maximum(z, _TINY)


def _f(r):
    """``(1 + r) log(1 + r) - r`` without cancellation near ``r = 0`` (series for
    ``|r| < 0.1``, truncation error < 1e-7 relative)."""
    small = tf.abs(r) < 0.1
    rs = tf.where(small, r, tf.zeros_like(r))
    series = tf.zeros_like(r)
    for k in range(9, 1, -1):  # Horner: sum_k (-1)^k r^k / (k (k - 1))
        series = (series + (-1.0) ** k / (k * (k - 1))) * rs
    series = series * rs
    rd = tf.where(small, tf.ones_like(r), r)
    direct = (1.0 + rd) * tf.math.log1p(rd) - rd
    return tf.where(small, series, direct)


def _kl_terms(p, q, eps):
    """Entries of ``sum_j p_j (log(p_j + eps) - log(q_j + eps))`` for rows with
    ``sum_j p_j = sum_j q_j``, rewritten as ``b f((a - b) / b) - eps log1p((a - b) / b)``
    with ``a = p + eps``, ``b = q + eps`` (the dropped ``sum_j (p_j - q_j)`` is 0).

    Each term is then second order in ``p - q``, so the float32 loss keeps its
    relative precision near the optimum, where the naive form is dominated by
    the rounding of first-order terms that cancel.
    """
    b = q + eps
    r = (p - q) / b
    return b * _f(r) - eps * tf.math.log1p(r)


def softmax_probabilities(cos, col_mask, include_diagonal=True, temperature=1.0):
    """``P[i, j] = exp(s_ij / t) / sum_k exp(s_ik / t)`` over valid columns ``k``
    (and ``k != i`` when ``include_diagonal`` is False) of a cosine matrix ``cos``
    ``(..., M, M)``. Invalid columns get ``P = 0``."""
    m = tf.shape(cos)[-1]
    mask = tf.cast(col_mask, cos.dtype)
    w = tf.ones_like(cos) * mask[..., None, :]
    if not include_diagonal:
        w = w * (1.0 - tf.eye(m, dtype=cos.dtype))
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
        temperature: None for the paper's kernel ``(s + 1) / 2``, or ``t > 0`` for
            ``exp(s / t)`` (see the module docstring).
    Returns:
        ``(row_div, row_mask, n_valid)``: ``(G, P + q)`` per-row divergences,
        the ``(P + q,)`` row mask and the number of valid rows per set (scalar).
    """
    fs = tf.cast(fs, tf.float32)
    ft = tf.cast(ft, tf.float32)
    mask = tf.ones([tf.shape(fs)[1]], tf.float32)
    kernel = _linear_kernel if temperature is None else _cosine
    if queue_s is None:
        ks = kernel(tf.linalg.matmul(fs, fs, transpose_b=True))
        kt = kernel(tf.linalg.matmul(ft, ft, transpose_b=True))
    else:
        ks = _kernel_with_queue(fs, tf.cast(queue_s, tf.float32), kernel)
        kt = _kernel_with_queue(ft, tf.cast(queue_t, tf.float32), kernel)
        mask = tf.concat([mask, tf.cast(queue_mask, tf.float32)], axis=0)
    if temperature is None:
        ps = conditional_probabilities(ks, mask, include_diagonal)
        pt = conditional_probabilities(kt, mask, include_diagonal)
    else:
        ps = softmax_probabilities(ks, mask, include_diagonal, temperature)
        pt = softmax_probabilities(kt, mask, include_diagonal, temperature)
    rows = row_divergence(ps, pt, divergence, eps) * mask
    return rows, mask, tf.reduce_sum(mask)


def _linear_kernel(s):
    return (s + 1.0) * 0.5


def _cosine(s):
    return s


def _kernel_with_queue(f, q, kernel=_linear_kernel):
    """Kernel of ``[f_g; q]`` for every group ``g`` without recomputing the queue
    block per group (``q q^T`` dominates for large queues). ``kernel`` maps cosine
    similarities to kernel values elementwise."""
    g = tf.shape(f)[0]
    cc = kernel(tf.linalg.matmul(f, f, transpose_b=True))  # (G, P, P)
    cq = kernel(tf.einsum("gpd,qd->gpq", f, q))  # (G, P, q)
    qq = kernel(tf.linalg.matmul(q, q, transpose_b=True))  # (q, q)
    top = tf.concat([cc, cq], axis=2)
    qq = tf.broadcast_to(qq[None], tf.stack([g, tf.shape(q)[0], tf.shape(q)[0]]))
    bottom = tf.concat([tf.transpose(cq, [0, 2, 1]), qq], axis=2)
    return tf.concat([top, bottom], axis=1)
