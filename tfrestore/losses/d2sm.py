"""D2SM: Deep Semantic Statistics Matching (Mei et al., ECCV 2022).

For a set of ``N`` samples (whole images, or sliding-window patches of them) with
L2-normalised backbone features ``f'_i`` (restored) and ``f_i`` (clean), the kernel
``K(a, b) = (a.b + 1) / 2`` gives ``g'_{j|i} = K(f'_i, f'_j) / sum_{k != i} K(f'_i,
f'_k)`` (and ``g_{j|i}`` likewise); the loss is a divergence between them, e.g.
``KL(G' || G) = c * sum_i sum_j g'_{j|i} log(g'_{j|i} / g_{j|i})`` with ``c = 1 / N``.

The loss differentiates through the current batch's features (the released
``DeST`` passes no gradient to the restorer). With ``queue_size > 0`` the set also
holds the most recent rows of earlier steps (constants; written after the loss is
computed; all-gathered under ``MirroredStrategy``; saved with the model).

Rules for stateful use: build the loss inside ``strategy.scope()`` (else
:class:`QueueOutsideScopeError`); evaluation never enqueues with a
:class:`tfrestore.models.RestorationModel` — with a plain ``keras.Model`` add
:class:`tfrestore.callbacks.QueueControl`, in custom loops use ``with
loss.frozen_queue():``; never pass a queue loss as a metric. Evaluation on another
image size than training uses the evaluation batch alone (as ``queue_size=0``).

See docs/d2sm.md for the argument mapping, the released-code differences, the
per-sample split of a batch-level set and the measured gradient strengths.
"""

from __future__ import annotations

import contextlib
import numbers

import keras
import tensorflow as tf

from tfrestore.features.feature_source import one_layer
from tfrestore.features.preprocessing import Preprocessing
from tfrestore.utils import validation
from tfrestore.losses._feature_loss import FeatureLossMixin
from tfrestore.losses._queue import (
    FeatureQueue,
    QueueOutsideScopeError,
    QueueRowSums,
    QueueSimilarities,
)
from tfrestore.losses._similarity import (
    DIVERGENCES,
    KL_REDUCTIONS,
    QueueRowStatistics,
    l2_normalize,
    set_divergence,
)
from tfrestore.losses.base import RestorationLoss
from tfrestore.losses.patches import extract_windows, window_grid
from tfrestore.utils.validation import check_choice

__all__ = ["D2SMLoss", "DIV2K_MEAN", "QueueOutsideScopeError"]

#: RGB mean of DIV2K subtracted by the released ``DeST`` (no std division).
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
#: named ``preprocessing`` values: D2SM's own preset, then the extractor's modes
PREPROCESSING_NAMES = ("div2k_mean",) + Preprocessing.MODES
DEFAULT_LAYER = "conv5_4"
#: L2 normalisation ``f / (||f|| + 1e-6)`` of the released code, whatever ``eps``
#: (an all-zero row stays finite, with a bounded gradient).
NORM_EPS = 1e-6
# The measurement behind this message: docs/d2sm.md.
_FEATURE_MODE_REMOVED = (
    "patch_mode='feature' was removed: windows cut from a whole-image feature map gave "
    "gradients far from the exact windows' (per-image cosine 0.32-0.40 on average, "
    "-0.06 at worst, on VGG16 conv5_3 and kodak24 crops). "
    "D2SMLoss cuts windows from the image (exact; cost grows with the number of windows: use "
    "a larger patch_stride to reduce it); drop the argument."
)


def _pair(value, arg):
    if value is None:
        return None
    if isinstance(value, numbers.Integral):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"`{arg}` must be a positive int or (height, width), got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="tfrestore")
class D2SMLoss(FeatureLossMixin, RestorationLoss):
    """Deep Semantic Statistics Matching loss (per-sample ``(B,)`` output).

    ``loss = c * sum_i D(g'_{.|i} || g_{.|i})`` over a similarity set of backbone
    features (see the module docstring; details in docs/d2sm.md). Inputs are RGB
    NHWC images in ``[0, 1]``; prediction and target have the same shape.

    Args:
        layers: str or 1-element list. The one backbone layer compared. Defaults
            to ``"conv5_4"`` (VGG19 conv5_4 before its ReLU). With a
            ``feature_extractor`` returning a dict, the entry to use (None: its
            only entry).
        backbone: str. Backbone for :func:`tfrestore.features.get_feature_extractor`.
            Defaults to ``"vgg19"``.
        weights: str or None. ``"imagenet"`` (default), ``"torchvision"``, a file
            path, or None (seeded random weights).
        preprocessing: str, dict or None. None (default): the backbone's own input
            normalisation (a custom extractor receives ``[0, 1]`` images);
            ``"div2k_mean"``: subtract ``DIV2K_MEAN`` only (the released code, for
            ``weights="torchvision"``); or any :mod:`tfrestore.features` mode
            (``"caffe"``, ``"torch"``, ``"none"``, a mean/std dict).
        feature_extractor: Keras model/layer, callable or None. Maps images to a
            feature map ``(B, h, w, C)`` (or a dict, see ``layers``); replaces the
            backbone. A Keras model/layer is saved with the loss (config and
            weights); a loss rebuilt from a config alone warns on first use that
            its extractor has fresh weights. Register plain functions with
            ``keras.saving.register_keras_serializable``.
        patch_size: int or None. Side of the sliding windows; each window is one
            sample and the backbone runs on every window. None: every whole image
            is one sample. Defaults to 224 (the paper, on 512x512 crops).
        patch_stride: int or None. Window stride; None means ``patch_size``.
            Defaults to 56.
        group_by_image: bool. One similarity set per image (its windows plus the
            queue) instead of one set for the whole global batch (default False,
            the released code). True needs windows or a queue (else ``ValueError``).
        queue_size: int. Historic rows kept per domain; 0 (default) = no queue.
            Must be at least the rows per global batch (``B * windows``). Memory
            ``queue_nbytes`` (``2 * queue_size * D * 4`` bytes plus a cache).
        image_size: ``(height, width)`` or int. Size of the training images;
            required with a queue and ``patch_size=None``. Training on another
            size is an error.
        channels: int. Image channels used to size the queue. Defaults to 3.
        divergence: str. ``"kl"`` (default, the paper: KL(G'||G)), ``"ikl"``
            (KL(G||G')), ``"js"`` (Jensen-Shannon) or ``"symmetric_kl"``
            ((KL(G'||G) + KL(G||G')) / 2).
        include_diagonal: bool. Include ``k = i`` in the normalisation (the
            released code). Defaults to False (the paper).
        kl_reduction: str. ``"sum_rows_mean"`` (default; ``c = 1 / N``, the
            paper) or ``"mean_all"`` (``c = 1 / N^2``, the released code).
        eps: float >= 0. Added inside the logarithms. 0 (default) is the paper
            (``0 log 0 = 0``) and keeps a queue step's cost linear in
            ``queue_size``; ``1e-6`` is the released code (``queue_size^2`` cache).
        temperature: float > 0 or None. None (default): the paper's kernel
            ``(cos + 1) / 2``; ``t``: ``exp(cos / t)``, which peaks on the nearest
            neighbours and strengthens the gradient (measured ratios in
            docs/d2sm.md). Use it with ``include_diagonal=False``.
        loss_weight, check_finite, reduction, dtype: optional. As in
            :class:`~tfrestore.losses.RestorationLoss`.

    Raises:
        ValueError: invalid arguments, or a similarity set of fewer than 3 rows
            (2 with ``include_diagonal=True``) known when the step is traced; at
            run time an ``InvalidArgumentError`` (a NaN loss under XLA).
        QueueOutsideScopeError: a queue loss first called under a strategy it was
            not built in.

    Example (a tiny fixed extractor instead of VGG19; 2 images x 4 windows):

    >>> import numpy as np, tensorflow as tf
    >>> from tfrestore.losses import D2SMLoss
    >>> fx = lambda x: tf.nn.avg_pool2d(x, 4, 4, "VALID")      # (B, h/4, w/4, 3)
    >>> loss = D2SMLoss(feature_extractor=fx, patch_size=8, patch_stride=8,
    ...                 reduction=None)
    >>> rng = np.random.default_rng(0)
    >>> y = rng.uniform(size=(2, 16, 16, 3)).astype("float32")
    >>> loss(y, y).numpy().tolist()
    [0.0, 0.0]
    >>> bool(np.all(loss(y, np.clip(y + 0.2 * rng.normal(size=y.shape), 0, 1)) > 0))
    True
    """

    #: ``compute`` takes Keras' ``training`` flag: evaluation never enqueues
    uses_training = True

    _config_attrs = (
        "patch_size", "patch_stride", "group_by_image", "queue_size",
        "channels", "divergence", "include_diagonal", "kl_reduction", "eps", "temperature",
    )

    def __init__(
        self,
        layers=None,
        backbone="vgg19",
        weights="imagenet",
        preprocessing=None,
        feature_extractor=None,
        patch_size=224,
        patch_stride=56,
        group_by_image=False,
        queue_size=0,
        image_size=None,
        channels=3,
        divergence="kl",
        include_diagonal=False,
        kl_reduction="sum_rows_mean",
        eps=0.0,
        temperature=None,
        name="d2sm",
        **kwargs,
    ):
        if "patch_mode" in kwargs:
            raise TypeError(
                _FEATURE_MODE_REMOVED
                if kwargs["patch_mode"] == "feature"
                else "D2SMLoss(patch_mode=...) was removed: windows are always cut from the "
                "image (its only mode); drop the argument"
            )
        super().__init__(name=name, **kwargs)
        # One layer: D2SM compares the similarity structure of one layer's features.
        layers = one_layer(layers, "D2SMLoss")
        if isinstance(preprocessing, str):
            check_choice(preprocessing, PREPROCESSING_NAMES, "preprocessing")
        check_choice(divergence, DIVERGENCES, "divergence")
        check_choice(kl_reduction, KL_REDUCTIONS, "kl_reduction")
        if patch_size is not None:
            if not isinstance(patch_size, numbers.Integral) or patch_size <= 0:
                raise ValueError(
                    f"`patch_size` must be a positive int or None, got {patch_size!r}."
                )
            if patch_stride is None:
                patch_stride = patch_size
            if not isinstance(patch_stride, numbers.Integral) or patch_stride <= 0:
                raise ValueError(f"`patch_stride` must be a positive int, got {patch_stride!r}.")
            patch_size, patch_stride = int(patch_size), int(patch_stride)
        if not isinstance(queue_size, numbers.Integral) or queue_size < 0:
            raise ValueError(
                f"`queue_size` must be an int >= 0 (0 = no queue), got {queue_size!r}."
            )
        if not (isinstance(eps, numbers.Real) and 0 <= eps < float("inf")):
            raise ValueError(
                f"`eps` must be a finite number >= 0 (0, the default: the paper; 1e-6: the "
                f"released code, whose queue cost grows with queue_size^2), got {eps!r}."
            )
        if temperature is not None and not (
            isinstance(temperature, numbers.Real) and 0 < temperature < float("inf")
        ):
            raise ValueError(
                f"`temperature` must be None (the paper's kernel (cos + 1) / 2) or a "
                f"finite number > 0 (kernel exp(cos / temperature)), got {temperature!r}."
            )
        if group_by_image and patch_size is None and queue_size == 0:
            raise ValueError(
                "`group_by_image=True` makes one similarity set per image; without "
                "patches (patch_size=None) or a queue each set has a single sample. "
                "Set patch_size or queue_size."
            )
        self.patch_size = patch_size
        self.patch_stride = patch_stride
        self.group_by_image = bool(group_by_image)
        self.queue_size = int(queue_size)
        self.image_size = _pair(image_size, "image_size")
        self.channels = int(channels)
        self.divergence = divergence
        self.include_diagonal = bool(include_diagonal)
        self.kl_reduction = kl_reduction
        self.eps = float(eps)
        self.temperature = None if temperature is None else float(temperature)

        pre = {"mean": DIV2K_MEAN} if preprocessing == "div2k_mean" else preprocessing
        self._init_features(
            layers, backbone, weights, pre, feature_extractor, DEFAULT_LAYER, rank=None
        )
        # One name (or None: a user extractor's only output), as given.
        self.layers = None if self._source.layers is None else next(iter(self._source.layers))
        del self.layer_weights  # one layer: no per-layer weights
        self.preprocessing = preprocessing

        self._queue = None
        if self.queue_size:
            if self.patch_size is None and self.image_size is None:
                raise ValueError(
                    "D2SMLoss: queue_size > 0 with whole-image samples (patch_size=None) "
                    "needs `image_size=(height, width)` of the training images to size the "
                    "queue (the released DeST takes height/width for the same reason)."
                )
            side = (self.patch_size, self.patch_size) if self.patch_size else self.image_size
            dim = self._feature_dim(side)
            stats = None
            if QueueRowStatistics.applies(self.divergence, self.eps, self.temperature):
                stats = QueueRowStatistics(self.temperature, self.include_diagonal)
            self._queue = FeatureQueue(
                self.queue_size, dim, name=f"{self.name}_queue", row_statistics=stats
            )

    # ------------------------------------------------------------ features
    def _raw_features(self, images):
        feats = self._source(images)
        if len(feats) != 1:
            raise ValueError(
                f"{self.name}: the feature_extractor returns {sorted(feats)}; D2SM compares "
                f"one layer: pass layers='<name>' to choose it."
            )
        return next(iter(feats.values()))

    def _output_shape(self, hw):
        spec = tf.TensorSpec((1, hw[0], hw[1], self.channels), tf.float32)
        with tf.init_scope():
            fn = tf.function(self._raw_features, autograph=False)
            shape = fn.get_concrete_function(spec).structured_outputs.shape
        return shape

    def _feature_dim(self, hw):
        shape = self._output_shape(hw)
        dim = 1
        for s in shape[1:]:
            if s is None:
                raise ValueError(f"{self.name}: cannot infer the feature size for {hw} inputs.")
            dim *= int(s)
        if dim == 0:
            raise ValueError(
                f"{self.name}: the feature map for {hw[0]}x{hw[1]} inputs is empty "
                f"(shape {tuple(shape)}); the images are too small for `layers`={self.layers!r}."
            )
        return dim

    def features(self, images):
        """L2-normalised sample features ``(B, P, D)`` (float32) of RGB images."""
        if self.patch_size is None:
            f = self._raw_features(images)
            p = 1
        else:
            windows = extract_windows(images, self.patch_size, self.patch_stride)
            f = self._raw_features(windows)
            h, w = int(images.shape[1]), int(images.shape[2])
            p = len(window_grid(h, w, self.patch_size, self.patch_stride))
        dim = None
        if f.shape.rank is not None and None not in f.shape[1:]:
            dim = 1
            for s in f.shape[1:]:
                dim *= int(s)
            if dim == 0:
                raise ValueError(
                    f"{self.name}: the feature map is empty (shape {tuple(f.shape)}); the "
                    f"images/windows are too small for `layers`={self.layers!r}."
                )
        shape = [-1, p, dim] if dim is not None else tf.stack([tf.shape(images)[0], p, -1])
        f = tf.reshape(tf.cast(f, tf.float32), shape)
        return l2_normalize(f, NORM_EPS)

    # ------------------------------------------------------------ validation
    def validate(self, y_true, y_pred):
        # Explicit super(): autograph re-compiles this method and loses the __class__ cell.
        y_true, y_pred = super(D2SMLoss, self).validate(y_true, y_pred)
        if self.patch_size is not None:
            # Models such as FFDNet lose the static size of their output; the shapes are
            # equal (checked above), so take whatever is known from either tensor.
            if y_true.shape.is_compatible_with(y_pred.shape):
                merged = y_true.shape.merge_with(y_pred.shape)
                y_true = tf.ensure_shape(y_true, merged)
                y_pred = tf.ensure_shape(y_pred, merged)
            for arg, x in (("y_true", y_true), ("y_pred", y_pred)):
                validation.check_min_size(
                    x,
                    self.patch_size,
                    self.patch_size,
                    arg,
                    f"the patch window (patch_size={self.patch_size})",
                    self.name,
                )
                if x.shape[1] is None or x.shape[2] is None:
                    raise ValueError(
                        f"{self.name}: patches need a static image height and width, got "
                        f"`{arg}` of shape {tuple(x.shape)}. Feed fixed-size crops or set "
                        f"patch_size=None."
                    )
        return y_true, y_pred

    # ------------------------------------------------------------ loss
    def compute(self, y_true, y_pred, training=None):
        ctx = tf.distribute.get_replica_context()
        if self._queue is not None:
            self._queue.check_distribution(self.name)
        # Evaluation (RestorationModel.compute_loss(training=False)) never enqueues;
        # None (a direct call, a plain Keras model) behaves as training.
        mode = "eval" if training is False else "train"
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1

        # Two passes, not one on concat([y_pred, y_true]): the clean pass then needs
        # no backward through the backbone (step time vs PerceptualLoss 1.65x -> 1.0x).
        ft = tf.stop_gradient(self.features(tf.stop_gradient(y_true)))
        fs = self.features(y_pred)
        b_local = tf.shape(y_pred)[0]
        use_queue = self._queue is not None
        if use_queue and fs.shape[-1] is not None and fs.shape[-1] != self._queue.dim:
            if mode != "eval":
                raise ValueError(
                    f"{self.name}: features have {fs.shape[-1]} values per sample but the "
                    f"queue was sized for {self._queue.dim} (image_size={self.image_size}, "
                    f"patch_size={self.patch_size}). Train on images of the configured size "
                    f"(a RestorationModel's evaluate()/fit(validation_data=...) may use "
                    f"other sizes: they skip the queue)."
                )
            # Evaluation on another image size: whole-image features of another size
            # live in another space than the queued rows, so they cannot be compared
            # with them. The set is then the evaluation batch alone (as queue_size=0).
            use_queue = False
        offset = 0
        if replicas > 1:
            # Every replica builds the global set; all_gather's gradient all-reduces,
            # so with Keras' 1/replicas scaling the update equals single-device.
            static = fs.shape[1:]
            fs = ctx.all_gather(fs, axis=0)
            ft = ctx.all_gather(ft, axis=0)
            fs.set_shape([None, *static])
            ft.set_shape([None, *static])
            sizes = ctx.all_gather(tf.reshape(b_local, [1]), axis=0)
            offset = tf.reduce_sum(sizes[: ctx.replica_id_in_sync_group])
        b_global = tf.shape(fs)[0]
        p = fs.shape[1]
        static_b = y_pred.shape[0] * replicas if y_pred.shape[0] is not None else None
        self._check_set_size(static_b, p, use_queue)

        rows_s = tf.reshape(fs, [-1, fs.shape[-1] or tf.shape(fs)[-1]])
        rows_t = tf.reshape(ft, tf.shape(rows_s))
        asserts = []
        if use_queue:
            qs, qt, qmask = self._queue.read()
            cache = self._queue.read_cache()  # kept between steps
            if static_b is None:
                asserts.append(
                    tf.debugging.assert_less_equal(
                        tf.shape(rows_s)[0],
                        self.queue_size,
                        message=f"{self.name}: the global batch has more sample rows than "
                        f"queue_size={self.queue_size}",
                    )
                )
        else:
            qs = qt = qmask = cache = None
        # A batch whose size is only known at run time can still form a set too small
        # to carry any signal (e.g. tf.data .batch(1), or a last partial batch).
        too_small = None
        if not use_queue and static_b is None and not self.group_by_image and mode != "eval":
            if p < self._min_rows:
                too_small = tf.shape(rows_s)[0] < self._min_rows
                asserts.append(
                    tf.debugging.Assert(
                        tf.logical_not(too_small),
                        [self._set_size_message("this batch", "(run-time batch size)")],
                    )
                )
        if self.group_by_image:
            groups_s, groups_t = fs, ft
        else:
            groups_s, groups_t = rows_s[None], rows_t[None]
        with tf.control_dependencies(asserts):
            rows, _, n = set_divergence(
                groups_s,
                groups_t,
                qs,
                qt,
                qmask,
                queue_similarities=cache[:2] if isinstance(cache, QueueSimilarities) else None,
                queue_row_sums=cache.sums if isinstance(cache, QueueRowSums) else None,
                divergence=self.divergence,
                include_diagonal=self.include_diagonal,
                eps=self.eps,
                temperature=self.temperature,
            )
        c = 1.0 / (n * n) if self.kl_reduction == "mean_all" else 1.0 / n
        if self.group_by_image:
            per_sample = c * tf.reduce_sum(rows, axis=1)
        else:
            n_cur = b_global * p
            cur = tf.reduce_sum(tf.reshape(rows[0, :n_cur], tf.stack([b_global, p])), axis=1)
            queued = tf.reduce_sum(rows[0, n_cur:])
            per_sample = c * (tf.cast(b_global, tf.float32) * cur + queued)

        if too_small is not None:
            # XLA (Keras' default jit_compile) compiles assertions out: the loss then
            # reads NaN instead of a silent 0 (its gradient stays finite: zero).
            nan = tf.fill(tf.shape(per_sample), float("nan"))
            per_sample = tf.where(too_small, nan, per_sample)
        if self._queue is not None and mode != "eval":
            with tf.control_dependencies([per_sample]):
                ops = self._queue.enqueue(rows_s, rows_t, cache)
            with tf.control_dependencies(ops):
                per_sample = tf.identity(per_sample)
        return per_sample[offset:offset + b_local]

    @property
    def _min_rows(self):
        # With the diagonal excluded, a 2-row set leaves one neighbour per row: both
        # conditional distributions are [1] and the loss is exactly 0.
        return 2 if self.include_diagonal else 3

    def _set_size_message(self, what, detail):
        return (
            f"{self.name}: {what} gives a similarity set of fewer than {self._min_rows} "
            f"samples {detail}; with include_diagonal={self.include_diagonal} such a set "
            f"has a loss of exactly 0 and no gradient. Use a global batch of at least "
            f"{self._min_rows} images (with tf.data: .batch(n, drop_remainder=True)), "
            f"more windows per image (patch_size/patch_stride), or a queue (queue_size)."
        )

    def _check_set_size(self, static_b, p, use_queue=True):
        if static_b is not None:
            rows = static_b * p
            if use_queue and rows > self.queue_size:
                raise ValueError(
                    f"{self.name}: one global batch gives {rows} sample rows ({static_b} "
                    f"images x {p} patches) but queue_size={self.queue_size}; the queue must "
                    f"hold at least one batch. Increase queue_size or reduce the batch."
                )
        if use_queue:
            return
        per_set = p if self.group_by_image else (static_b * p if static_b is not None else None)
        if per_set is not None and per_set < self._min_rows:
            where = "each image" if self.group_by_image else "the global batch"
            detail = (
                f"({per_set}: global batch {static_b}, {p} window(s) per image, "
                f"group_by_image={self.group_by_image}, no queue)"
            )
            raise ValueError(self._set_size_message(where, detail))

    # ------------------------------------------------------------ state
    @property
    def queue_nbytes(self):
        """Bytes held by the queue buffers (0 without a queue)."""
        return self._queue.nbytes() if self._queue is not None else 0

    @property
    def queue_count(self):
        """Rows written so far (``min(count, queue_size)`` slots are filled)."""
        return int(self._queue.count.numpy()) if self._queue is not None else 0

    def queue_state(self):
        """``(queue_pred, queue_true, count)`` as NumPy arrays (None without a queue)."""
        if self._queue is None:
            return None
        q = self._queue
        return q.pred.numpy(), q.true.numpy(), int(q.count.numpy())

    def set_queue_enabled(self, enabled):
        """Switch enqueueing on/off at run time (used by ``QueueControl``)."""
        if self._queue is not None:
            self._queue.set_enabled(enabled)

    @contextlib.contextmanager
    def frozen_queue(self):
        """``with loss.frozen_queue():`` -- calls inside do not enqueue (custom loops)."""
        if self._queue is None:
            yield
            return
        with self._queue.frozen():
            yield

    def reset_queue(self):
        """Empty the queue (all slots become unfilled)."""
        if self._queue is not None:
            self._queue.reset()

    def save_own_variables(self, store):
        if self._queue is not None:
            self._queue.save(store)
        self._source.save_extractor_weights(store)

    def load_own_variables(self, store):
        if self._queue is None and self._source.saved_extractor() is None:
            return
        # Keras visits a compiled loss twice (``loss/`` and ``_compile_loss/...``)
        # and forgets a failure when a later visit (with no data) succeeds, so a
        # failed load is remembered per store and raised again.
        failed = getattr(self, "_failed_load", None)
        try:
            restored = self._source.load_extractor_weights(store)
            loaded = self._queue.load(store, self.name) if self._queue is not None else False
        except ValueError as e:
            self._failed_load = (id(store), e)
            raise
        if restored:
            self._fresh_extractor = False
        loaded = loaded or restored
        if not loaded and failed is not None and failed[0] == id(store):
            raise failed[1]
        if loaded:
            self._failed_load = None

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("patch_mode") == "image":  # saved before the argument was removed
            del config["patch_mode"]
        return super().from_config(config)

    def get_config(self):
        config = super().get_config()
        del config["layer_weights"]  # one layer: no per-layer weights
        return {
            **config,
            "layers": self.layers,  # one name, not the source's list
            "preprocessing": self.preprocessing,  # "div2k_mean" stays a name
            "image_size": list(self.image_size) if self.image_size else None,
        }
