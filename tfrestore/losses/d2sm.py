"""D2SM: Deep Semantic Statistics Matching (Mei et al., ECCV 2022).

D2SM matches the *geometry* of a set of restored images in a semantic feature
space to the geometry of the corresponding clean images. For a set of ``N``
samples (whole images, or sliding-window patches of them) with L2-normalised
backbone features ``f'_i`` (restored) and ``f_i`` (clean), the cosine kernel
``K(a, b) = (a.b + 1) / 2`` gives conditional distributions
``g'_{j|i} = K(f'_i, f'_j) / sum_k K(f'_i, f'_k)`` (and ``g_{j|i}`` likewise), and
the loss is a divergence between them, e.g. the paper's
``KL(G' || G) = sum_i sum_j g'_{j|i} log(g'_{j|i} / g_{j|i})``.

Unlike the authors' released ``DeST`` (which computes its KL on the stored queue
under ``no_grad`` and therefore passes no gradient to the restoration network),
this loss differentiates through the current batch's features: it trains the
restorer as the paper describes.

**Queue ("memorised historic sampling").** With ``queue_size = q > 0`` the set is
the current (global) batch's rows followed by the ``q`` most recent rows of earlier
steps; as in the paper's eq. 7, queued rows are both neighbours and conditioning
rows of the full set. Current rows keep their gradient; queued rows are constants; never-filled
slots are masked out (no random rows); the batch is written into the ring *after*
the loss is computed and the pointer wraps. Under ``MirroredStrategy`` the
features are all-gathered, so every replica sees the global batch, the queue
holds all replicas' rows and the result equals a single-device run. The queue is
saved with the model (``.keras``, ``.weights.h5``, ``ModelCheckpoint``,
``BackupAndRestore``); weight files without queue state still load.

**Kernel temperature.** The paper's kernel ``(cos + 1) / 2`` gives nearly uniform
distributions on deep features (the cosines of different images lie in a narrow
band: their perplexity is 99.9-100 % of the uniform one), so the divergence and
its gradient are small. Measured with torchvision VGG16 conv5_3 at a half-denoised
prediction (sigma 50, ``python -m bench d2sm_signal``), ``||grad D2SM|| / ||grad
L1||`` at weight 1 is 0.03 (whole 64-px crops, batch 8, 64-row queue), 0.12 (whole
256-px crops), 0.50 (128/32 windows on 256-px crops, batch 2) and 0.48 (the
paper's 224/56 windows on 512-px crops, batch 2; 0.07 with batch 1).
``temperature=t`` uses ``exp(cos / t)`` instead (SNE's bandwidth), which makes
each distribution peak on the nearest neighbours; the same ratios are 9, 36, 113
and 89 at ``t = 0.1`` (1.1, 3.8, 15.6 and 2.6 (batch 1) at ``t = 0.3``). The
default ``None`` keeps the paper's kernel: the strength then differs 16x between
settings, so choose ``loss_weight`` (or ``temperature``) from the measured ratio
for your setting rather than from a fixed recipe.

**Set size.** Without the diagonal a similarity set of 2 rows has a loss of
exactly 0 (each row has one neighbour); sets need at least 3 rows (2 with
``include_diagonal=True``). A set known to be smaller when the step is traced is
a ``ValueError``; a batch whose size is only known at run time (``tf.data``
without ``drop_remainder``) is checked when it runs: an ``InvalidArgumentError``,
or, under XLA (which compiles assertions out), a NaN loss instead of a silent 0.

**Rules for stateful use.** (1) Build the loss inside ``strategy.scope()``
together with the model (otherwise the first call raises
:class:`QueueOutsideScopeError`). (2) Evaluation never
enqueues: :class:`tfrestore.models.RestorationModel` (every tfrestore model, and
any Keras model after :func:`tfrestore.losses.enable_loss_terms`) passes the
``training`` argument of Keras' ``Model.compute_loss`` to the loss, so
``evaluate()`` and ``fit(validation_data=...)`` trace no enqueue at all. A plain
``keras.Model`` cannot tell the loss which step runs it: add
:class:`tfrestore.callbacks.QueueControl` to ``fit``/``evaluate`` (it freezes the
queue during evaluation and rejects ``compile(loss=[L1(), D2SMLoss()])`` on a
single-output model: write ``L1() + D2SMLoss()``), and in custom loops use ``with
loss.frozen_queue(): ...`` for validation. (3) Never pass a queue loss as a
metric (it would enqueue twice per step). (4) Evaluation may use another image
size than training: whole-image features of another size cannot be compared
with the queued rows, so evaluation by a ``RestorationModel`` then computes the
loss on the evaluation batch alone (as ``queue_size=0``); its ``val_d2sm`` is
therefore not comparable with the training value, and an evaluation batch of
fewer than 3 images (e.g. the last partial one) gives 0 there: the run-time
set-size check applies to training steps only, so validation never stops a run.
Training on another size than ``image_size`` stays an error (so does any call
that does not say it evaluates: a plain Keras model, a direct call).

**Per-sample values.** Keras needs ``(B,)`` values whose batch mean is the loss.
Let ``c = 1 / N^2`` (``kl_reduction="mean_all"``) or ``1 / N`` (``"sum_rows_mean"``)
where ``N`` is the number of valid rows of a set, and ``r_i`` the divergence of
row ``i`` (summed over ``j``). With ``group_by_image=True`` every image ``b`` has
its own set (its ``P`` patches plus the queue) and its value is that set's loss
``c * sum_i r_i``. With ``group_by_image=False`` the global batch forms one set with
loss ``L = c * sum_i r_i``; image ``b`` receives ``c * (B * sum_{i in b} r_i +
sum_{i in queue} r_i)``, so the mean over the ``B`` images of the global batch is
exactly ``L`` and ``sample_weight`` weights each image's own rows.
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
# Measured on torchvision VGG16 conv5_3 and kodak24 crops: windows cut
# from one whole-image feature map gave gradients with cosine 0.3-0.4 to the exact ones
# (border cells see image context instead of the window's zero padding, and the
# pooling phase differs); an approximation that points elsewhere is not offered.
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

    Args:
        backbone: feature backbone for :func:`tfrestore.features.get_feature_extractor`
            (default ``"vgg19"``).
        layers: the one backbone layer compared, a name or a 1-element list
            (default ``"conv5_4"``: VGG19 conv5_4 *before* its ReLU, the released
            code's ``"54"``). With a ``feature_extractor`` returning a dict, the
            entry to use (None: its only entry).
        weights: backbone weights, as in :mod:`tfrestore.features` (``"imagenet"``,
            ``"torchvision"``, a file path, or ``None`` for seeded random weights).
        feature_extractor: optional Keras model/layer or callable mapping images to
            a feature map ``(B, h, w, C)`` (or to a dict, from which ``layers`` is
            taken); replaces the backbone. A Keras model/layer is saved with the
            loss (its config, and its weights in the loss's weight store, so
            ``.keras`` / ``.weights.h5`` files restore the same extractor; a loss
            rebuilt from a config alone warns on first use that its extractor has
            fresh weights). Register plain functions with
            ``keras.saving.register_keras_serializable``.
        preprocessing: None (default: the backbone's own input normalisation; a
            custom extractor receives ``[0, 1]`` images), ``"div2k_mean"`` (the
            released code: subtract the DIV2K RGB mean ``(0.4488, 0.4371, 0.4040)``
            and nothing else; meant for ``weights="torchvision"``), or any
            preprocessing of :mod:`tfrestore.features` (``"caffe"``, ``"torch"``,
            ``"none"``, a mean/std dict).
        patch_size, patch_stride: sliding windows (paper: 224 and 56 on 512x512
            crops; ``patch_stride=None`` means ``patch_size``). ``patch_size=None``:
            every whole image is one sample. The backbone runs on every window, as in
            the paper.
        group_by_image: one similarity set per image (its patches, plus the queue)
            instead of one set for the whole global batch (the released code).
        queue_size: number of historic rows kept per domain (0 = no queue, the
            default). Must be at least the number of rows per global batch
            (``B * patches``). The paper uses 256 with whole images and batch 32
            (face SR) and reports that more than 64 samples are needed (Fig. 8).
            Memory (``queue_nbytes``): ``2 * queue_size * D * 4`` bytes for the rows,
            e.g. 205 MB for 256 VGG19 conv5_4 rows of 224-pixel windows, plus a cache
            kept between steps so that a step compares only the new rows with the
            queue (``O(queue_size * rows * D)`` multiply-adds): with ``eps=0`` (the
            default) four float64 sums per queued row and no ``queue_size^2`` term at
            all; with ``eps > 0``, ``"js"`` or ``temperature < 0.003`` the queue's
            ``queue_size^2`` similarities (``8 * queue_size^2`` bytes; the queued rows'
            divergences still cost ``O(queue_size^2)`` elementwise per step)
            (``python -m bench queue``, D = 1024, one CPU thread: 51-66 ms vs
            0.78-1.47 s per step at ``queue_size=4096``).
        image_size: ``(height, width)`` of the training images; required with a
            queue and ``patch_size=None`` to size the queue (like ``DeST``'s
            height/width arguments).
        channels: image channels used to size the queue (default 3).
        divergence: ``"kl"`` (the paper's D2SM, KL(G'||G) weighted by the restored
            distribution), ``"ikl"`` (KL(G||G'), weighted by the clean one: what the
            only differentiable released variant computes), ``"js"``
            (Jensen-Shannon with the mixture) or ``"symmetric_kl"``
            ((KL(G'||G) + KL(G||G')) / 2, the paper's eq. 10 as printed). The
            first three are the objectives of the paper's Table 4.
        include_diagonal: include ``k = i`` in the normalisation (released code);
            the paper excludes it (default False).
        kl_reduction: ``"sum_rows_mean"`` (default; the paper's double sum divided
            by ``N``, i.e. the per-row divergence averaged over rows) or
            ``"mean_all"`` (mean over all ``N^2`` entries, the released code; ``N``
            times smaller).
        eps: added inside the logarithms. ``0`` (default) is the paper's formula
            (``0 log 0 = 0``) and lets a queue keep per-row sums instead of its
            ``queue_size^2`` similarities, so a step's cost grows linearly with
            ``queue_size`` (``divergence`` ``"kl"``, ``"ikl"``, ``"symmetric_kl"``;
            ``temperature`` None or >= 0.003; otherwise the similarity cache is used).
            ``1e-6`` is the released code; it shifts the loss by about ``eps * N``
            relative (N rows per set): 0.05 % at ``queue_size=256``, 0.75 % at 4096,
            gradient directions within cosine 0.99999 (``python -m bench queue``).
            The L2 normalisation always uses the released code's 1e-6.
        temperature: kernel bandwidth. ``None`` (default) is the paper's kernel
            ``K = (cos + 1) / 2``; a number ``t > 0`` uses ``K = exp(cos / t)``, the
            softmax kernel of SNE / t-SNE and contrastive learning. Deep features of
            natural images have cosines in a narrow band, so the paper's kernel
            gives nearly uniform distributions whose divergence, and gradient, is
            small: measured on torchvision VGG16 conv5_3 at a half-denoised
            prediction (``python -m bench d2sm_signal``), see the module notes and
            the README. A small temperature makes each sample's distribution peak on
            its nearest neighbours. Use it with ``include_diagonal=False`` (the
            default): with the diagonal, whose cosine is 1, a small temperature puts
            nearly all the mass on the sample itself.
        loss_weight, check_finite, reduction, dtype: see
            :class:`~tfrestore.losses.RestorationLoss`.

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
        return {
            **super().get_config(),
            "layers": self.layers,  # one name, not the source's {name: weight}
            "preprocessing": self.preprocessing,  # "div2k_mean" stays a name
            "image_size": list(self.image_size) if self.image_size else None,
        }
