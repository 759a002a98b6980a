"""Does a semantic loss give a better restorer? L1 vs L1 + each loss (λ sweep), same budget.

Protocol (colour denoising, Gaussian noise σ = 50/255 by default):

1. **Pretrain once** a DnCNN (no BN) with L1 on ``cbsd432`` crops; the checkpoint is
   cached in the output directory and shared by every run.
2. **Calibrate λ**: for each loss, λ is chosen so that the term's gradient with
   respect to the restored image is ``r`` times the L1 gradient at the pretrained
   restorer's output (:func:`tfrestore.losses.gradient_ratios`; ``r`` from
   ``--ratios``, default 0.3, 1, 3). Gradient scales differ by orders of
   magnitude between losses, so equal λ would compare nothing; equal ratios put
   every loss at the same strength relative to the pixel term.
3. **Fine-tune** the pretrained restorer for the same number of steps, with the
   same seed and the same batches, once per (loss, λ), and once with L1 alone
   (the control: any gain must beat it, not the pretrained model).
4. **Evaluate** on held-out images (``kodak24`` by default): PSNR, SSIM,
   LPIPS-alex, and the semantic score of :mod:`tfrestore.metrics.semantic`
   (AlexNet ``relu5`` pooled descriptors of 128-px tiles: mean cosine similarity
   restored vs clean, and top-1 retrieval of each clean tile among all clean
   tiles of the test set). No loss here trains with AlexNet (LPIPSLoss uses VGG).

Losses: PerceptualLoss and PDLoss (identity and random_sphere projections) on
VGG16 relu2_2 + relu3_3 + relu4_3, ContextualLoss on relu3_3 + relu4_3, LPIPSLoss
(VGG), D2SMLoss on VGG16 conv5_3 (whole images + queue, and internal windows of
half the crop with stride a quarter, the paper's 224/56 on 512 scaled down), and
DiffLoss when an ADM checkpoint is found locally (skipped with the reason
otherwise). Torchvision VGG16/AlexNet weights come from $TFRESTORE_WEIGHTS_DIR.

Writes ``results.csv``, ``results.md`` and ``psnr_vs_lpips.png`` to ``--out``;
every finished run is stored under ``runs/`` and skipped when the command is run
again with the same settings (an interrupted benchmark resumes). A directory
holding a run with other settings is refused unless ``--overwrite``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time

PRESETS = {
    # ≤ 15 min on 2 idle CPU cores: every loss and 3 ratios, at a smaller scale.
    "quick": dict(
        crop=96, batch=2, steps=30, lr=1e-4,
        pretrain_steps=400, pretrain_crop=64, pretrain_batch=8, pretrain_lr=1e-3,
        depth=6, filters=32, queue=32, train_images=96,
        test_images=8, test_crop=256, tile=128,
    ),
    # The reference (≤ 90 min on 2 idle CPU cores).
    "full": dict(
        crop=128, batch=4, steps=100, lr=1e-4,
        pretrain_steps=1500, pretrain_crop=64, pretrain_batch=16, pretrain_lr=1e-3,
        depth=8, filters=32, queue=128, train_images=432,
        test_images=24, test_crop=0, tile=128,
    ),
}
DEFAULT_RATIOS = (0.3, 1.0, 3.0)
LOSS_KINDS = (
    "perceptual", "pdl_identity", "pdl_sphere", "contextual", "lpips_vgg",
    "d2sm_queue", "d2sm_patches", "diffloss",
)
LABELS = {
    "l1": "L1 (control)",
    "perceptual": "+ PerceptualLoss (VGG16 relu2_2,3_3,4_3)",
    "pdl_identity": "+ PDLoss identity (same layers)",
    "pdl_sphere": "+ PDLoss random_sphere (same layers)",
    "contextual": "+ ContextualLoss (relu3_3, relu4_3)",
    "lpips_vgg": "+ LPIPSLoss (VGG)",
    "d2sm_queue": "+ D2SMLoss (conv5_3, whole image + queue)",
    "d2sm_patches": "+ D2SMLoss (conv5_3, internal windows)",
    "diffloss": "+ DiffLoss (ADM 256 uncond)",
}
FEATURE_LAYERS = {"relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0}
CONTEXTUAL_LAYERS = {"relu3_3": 1.0, "relu4_3": 1.0}
# Settings that change the numbers: a directory holding other values is another run.
_SIGNATURE_KEYS = (
    "preset", "crop", "batch", "steps", "lr", "pretrain_steps", "pretrain_crop",
    "pretrain_batch", "pretrain_lr", "depth", "filters", "queue", "train_images", "test_images",
    "test_crop", "tile", "sigma", "seed", "weights", "train_dir", "test_dir",
)
CSV_COLUMNS = (
    "run", "loss", "ratio_target", "lambda", "ratio_start", "ratio_end", "steps",
    "psnr", "ssim", "lpips_alex", "sem_cos", "sem_top1", "d_psnr", "d_lpips", "seconds", "status",
)


# ----------------------------------------------------------------------------- arguments


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true", help="the quick preset (≤ 15 min)")
    parser.add_argument("--out", default=None,
                        help="output directory (default outputs/bench_semantic_<preset>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard the results of a run with other settings in --out")
    parser.add_argument("--report-only", action="store_true",
                        help="write results.csv/.md/.png from the runs finished so far in --out "
                        "and exit (safe while the benchmark is still running)")
    parser.add_argument("--losses", default="all",
                        help="comma-separated subset of " + ",".join(LOSS_KINDS)
                        + " (the L1 control always runs); default all")
    parser.add_argument("--ratios", default=None,
                        help="gradient-norm ratios to the L1 term that set each λ "
                        f"(default {','.join(f'{r:g}' for r in DEFAULT_RATIOS)})")
    parser.add_argument("--sigma", default="50/255", help="noise level (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-set", default="kodak24",
                        help="held-out clean images: a folder of $TFRESTORE_DATA_DIR (kodak24, "
                        "cbsd68) or any folder path (default %(default)s)")
    parser.add_argument("--train-dir", default=None,
                        help="training images (default $TFRESTORE_DATA_DIR/cbsd432)")
    parser.add_argument("--weights", choices=("torchvision", "none"), default="torchvision",
                        help="backbone weights of losses and metrics; 'none' = seeded random "
                        "networks (tests only: the numbers mean nothing)")
    for name, kind in (("steps", int), ("crop", int), ("batch", int), ("pretrain-steps", int),
                       ("test-images", int), ("test-crop", int), ("depth", int),
                       ("filters", int), ("queue", int), ("train-images", int), ("lr", float),
                       ("tile", int), ("pretrain-crop", int), ("pretrain-batch", int)):
        parser.add_argument(f"--{name}", type=kind, default=None,
                            help="override the preset's value")


def _number(text, flag):
    try:
        if isinstance(text, str) and "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (TypeError, ValueError, ZeroDivisionError):
        raise SystemExit(f"error: {flag} must be a number or a fraction like 50/255, got {text!r}")


def resolve_settings(args):
    """The effective settings (preset + overrides) as a plain dict."""
    preset = "quick" if args.quick else "full"
    s = dict(PRESETS[preset], preset=preset)
    for key in ("steps", "crop", "batch", "pretrain_steps", "test_images", "test_crop", "depth",
                "filters", "queue", "train_images", "lr", "tile", "pretrain_crop",
                "pretrain_batch"):
        value = getattr(args, key)
        if value is not None:
            s[key] = value
    s["sigma"] = _number(args.sigma, "--sigma")
    s["seed"] = int(args.seed)
    s["weights"] = args.weights
    data_dir = os.environ.get("TFRESTORE_DATA_DIR", "")
    s["train_dir"] = _resolve_dir(args.train_dir or "cbsd432", data_dir, "--train-dir")
    s["test_dir"] = _resolve_dir(args.test_set, data_dir, "--test-set")
    if args.losses == "all":
        kinds = list(LOSS_KINDS)
    else:
        kinds = [k.strip() for k in args.losses.split(",") if k.strip()]
        bad = [k for k in kinds if k not in LOSS_KINDS and k != "l1"]
        if bad:
            raise SystemExit(f"error: --losses: unknown {bad}; choose from {list(LOSS_KINDS)}")
        kinds = [k for k in LOSS_KINDS if k in kinds]
    s["losses"] = kinds
    ratios = DEFAULT_RATIOS if args.ratios is None else [
        _number(r, "--ratios") for r in args.ratios.split(",") if r.strip()
    ]
    if not ratios or min(ratios) <= 0:
        raise SystemExit("error: --ratios must be positive numbers, e.g. 0.3,1,3")
    s["ratios"] = [float(r) for r in ratios]
    if s["crop"] % 32:
        raise SystemExit(f"error: --crop must be a multiple of 32 (VGG conv5 and D2SM windows), "
                         f"got {s['crop']}")
    if s["batch"] < 2:
        raise SystemExit("error: --batch must be >= 2 (D2SM compares the images of a batch)")
    return s


def _resolve_dir(name, data_dir, flag):
    if os.path.isdir(name):
        return os.path.abspath(name)
    if data_dir and os.path.isdir(os.path.join(data_dir, name)):
        return os.path.abspath(os.path.join(data_dir, name))
    where = f"$TFRESTORE_DATA_DIR={data_dir!r}" if data_dir else "$TFRESTORE_DATA_DIR (unset)"
    raise SystemExit(f"error: {flag}: {name!r} is neither a folder nor a folder of {where}; "
                     "set TFRESTORE_DATA_DIR or give a folder path")


# ----------------------------------------------------------------------------- output dir


def signature(settings):
    return {k: settings[k] for k in _SIGNATURE_KEYS}


def prepare_out_dir(out, settings, overwrite):
    """Create/validate ``out``: same settings resume, other settings need --overwrite."""
    os.makedirs(out, exist_ok=True)
    cfg_path = os.path.join(out, "config.json")
    sig = signature(settings)
    if os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            old = json.load(f)
        if old != sig:
            diff = [f"{k}: {old.get(k)!r} -> {sig.get(k)!r}"
                    for k in sig if old.get(k) != sig.get(k)]
            diff += [f"{k}: {old[k]!r} -> (absent)" for k in old if k not in sig]
            if not overwrite:
                raise SystemExit(
                    f"error: {out} holds a benchmark run with other settings ({'; '.join(diff)}); "
                    "pass --overwrite to discard it, or choose another --out"
                )
            for name in ("runs", "pretrain.weights.h5", "pretrain.json", "calibration.json",
                         "results.csv", "results.md", "psnr_vs_lpips.png", "config.json"):
                p = os.path.join(out, name)
                if os.path.isdir(p):
                    shutil.rmtree(p)
                elif os.path.exists(p):
                    os.remove(p)
            print(f"--overwrite: discarded the previous run in {out} ({'; '.join(diff)})")
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(sig, f, indent=1, sort_keys=True)


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)  # a killed process never leaves a half-written result


def _read_json(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------- data


class Data:
    """Deterministic training batches and a fixed noisy test set.

    Batch ``step`` of stream ``phase`` depends only on ``(seed, phase, step)``, so
    every run sees exactly the same crops and noise in the same order.
    """

    PRETRAIN, FINETUNE, CALIBRATE, WARMUP = 0, 1, 2, 3

    def __init__(self, settings):
        import numpy as np

        from tfrestore.data import list_images, read_image

        self.s = settings
        paths = list_images(settings["train_dir"])
        if not paths:
            raise SystemExit(f"error: no images in {settings['train_dir']}")
        paths = paths[: settings["train_images"]]
        need = max(settings["crop"], settings["pretrain_crop"])
        self.train = []
        for p in paths:
            img = read_image(p, channels=3, dtype="uint8")
            img = np.asarray(img)
            if min(img.shape[:2]) >= need:
                self.train.append(img)
        if not self.train:
            raise SystemExit(f"error: no training image in {settings['train_dir']} is at least "
                             f"{need} px on each side")
        test_paths = list_images(settings["test_dir"])[: settings["test_images"]]
        if not test_paths:
            raise SystemExit(f"error: no images in {settings['test_dir']}")
        tile = settings["tile"]
        self.test_names, self.test_clean, self.test_noisy = [], [], []
        for i, p in enumerate(test_paths):
            img = np.asarray(read_image(p, channels=3), np.float32)
            c = settings["test_crop"]
            if c:
                h, w = img.shape[:2]
                ch, cw = min(c, h), min(c, w)
                y0, x0 = (h - ch) // 2, (w - cw) // 2
                img = img[y0:y0 + ch, x0:x0 + cw]
            h, w = img.shape[:2]
            img = img[: h - h % tile, : w - w % tile]  # whole tiles for the semantic score
            if img.shape[0] < tile or img.shape[1] < tile:
                raise SystemExit(f"error: test image {p} is smaller than one {tile}-px tile")
            rng = np.random.default_rng([settings["seed"], 1000 + i])
            noisy = img + rng.normal(0.0, settings["sigma"], img.shape).astype(np.float32)
            self.test_names.append(os.path.splitext(os.path.basename(p))[0])
            self.test_clean.append(img)
            self.test_noisy.append(noisy.astype(np.float32))

    def batch(self, phase, step, n=None, crop=None):
        import numpy as np

        n = n or self.s["batch"]
        crop = crop or self.s["crop"]
        rng = np.random.default_rng([self.s["seed"], phase, step])
        clean = np.empty((n, crop, crop, 3), np.float32)
        for b in range(n):
            img = self.train[int(rng.integers(len(self.train)))]
            y = int(rng.integers(img.shape[0] - crop + 1))
            x = int(rng.integers(img.shape[1] - crop + 1))
            c = img[y:y + crop, x:x + crop]
            if rng.integers(2):
                c = c[:, ::-1]
            clean[b] = c.astype(np.float32) / 255.0
        noisy = clean + rng.normal(0.0, self.s["sigma"], clean.shape).astype(np.float32)
        return noisy, clean


# ----------------------------------------------------------------------------- losses


def diffloss_weights():
    """``(path, None)`` of a local ADM 256 checkpoint, or ``(None, reason)``. Never downloads."""
    from tfrestore.diffusion.pretrained import PRETRAINED_ADM
    from tfrestore.utils.weights import WeightsNotFoundError, resolve_weights_file

    info = PRETRAINED_ADM["adm_256_uncond"]
    for name in (info["converted"], info["original"]):
        try:
            return resolve_weights_file(name, origin=None), None
        except WeightsNotFoundError:
            pass
    return None, (f"no ADM checkpoint: put {info['converted']} or {info['original']} into "
                  "$TFRESTORE_WEIGHTS_DIR to include DiffLoss")


def _lpips_kwargs(backbone, weights):
    if weights == "none":
        chans = {"alexnet": (64, 192, 384, 256, 256), "vgg16": (64, 128, 256, 512, 512)}[backbone]
        return dict(weights=None, lin_weights=[[1.0] * c for c in chans])
    return dict(weights="torchvision")


def build_term(kind, settings):
    """The auxiliary loss of ``kind`` (weight 1), or raise ``_Skip(reason)``."""
    from tfrestore import losses as L

    w = None if settings["weights"] == "none" else "torchvision"
    crop = settings["crop"]
    if kind == "perceptual":
        return L.PerceptualLoss(dict(FEATURE_LAYERS), backbone="vgg16", weights=w)
    if kind == "pdl_identity":
        return L.PDLoss(dict(FEATURE_LAYERS), backbone="vgg16", weights=w, projection="identity")
    if kind == "pdl_sphere":
        return L.PDLoss(dict(FEATURE_LAYERS), backbone="vgg16", weights=w,
                        projection="random_sphere", seed=settings["seed"])
    if kind == "contextual":
        return L.ContextualLoss(dict(CONTEXTUAL_LAYERS), backbone="vgg16", weights=w,
                                seed=settings["seed"])
    if kind == "lpips_vgg":
        return L.LPIPSLoss(backbone="vgg16", **_lpips_kwargs("vgg16", settings["weights"]))
    if kind == "d2sm_queue":
        return L.D2SMLoss(backbone="vgg16", layers="conv5_3", weights=w, patch_size=None,
                          queue_size=settings["queue"], image_size=(crop, crop))
    if kind == "d2sm_patches":
        return L.D2SMLoss(backbone="vgg16", layers="conv5_3", weights=w, patch_size=crop // 2,
                          patch_stride=crop // 4)
    if kind == "diffloss":
        if settings["weights"] == "none":  # exercises the path with a tiny random UNet
            return L.DiffLoss(unet="adm_tiny", weights=None, seed=settings["seed"])
        path, why = diffloss_weights()
        if path is None:
            raise _Skip(why)
        return L.DiffLoss(weights=path, seed=settings["seed"])
    raise ValueError(f"unknown loss kind {kind!r}")


class _Skip(Exception):
    pass


def _warm_queue(term, model, data, settings):
    """Fill a D2SM queue with rows of the pretrained restorer's outputs, so the
    calibration sees the set the loss will train with."""
    queue = getattr(term, "_queue", None)
    if queue is None:
        return
    for i in range(math.ceil(settings["queue"] / settings["batch"])):
        x, y = data.batch(Data.WARMUP, i)
        term(y, model(x, training=False))


# ----------------------------------------------------------------------------- model / training


def build_model(settings):
    import keras

    from tfrestore.models import DnCNN

    keras.utils.set_random_seed(settings["seed"])
    return DnCNN(depth=settings["depth"], filters=settings["filters"], channels=3,
                 batch_norm=False, name="bench_dncnn")


def _progbar(target, label):
    import keras

    print(label, flush=True)
    interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    return keras.utils.Progbar(target, interval=0.05 if interactive else 30.0, unit_name="step")


class Trainer:
    """Adam on ``L1 + λ · term`` with one traced step, reused by every λ of a loss.

    Tracing a step through VGG16 takes longer than many steps on a busy CPU, so
    the runs of one loss share the step; :meth:`reset` restores the pretrained
    weights, a fresh optimizer state and the loss's own state (a D2SM queue, a
    DiffLoss random stream), so each run starts exactly as a new one would.
    """

    def __init__(self, model, lr, term=None, lr_drop_at=None):
        import keras
        import tensorflow as tf

        from tfrestore.losses import L1

        self.model, self.term = model, term
        if lr_drop_at:
            lr = keras.optimizers.schedules.PiecewiseConstantDecay([lr_drop_at], [lr, lr * 0.1])
        self.opt = keras.optimizers.Adam(lr)
        self.opt.build(model.trainable_variables)
        self._opt_init = [v.numpy() for v in self.opt.variables]
        self.lam = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self._state_init = [(v, v.numpy()) for v in _term_state(term)]
        pixel = L1()

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                l_pix = pixel(y, pred)
                total, l_term = l_pix, tf.constant(0.0)
                if term is not None:
                    l_term = tf.cast(term(y, pred), tf.float32)
                    total = l_pix + self.lam * l_term
            grads = tape.gradient(total, model.trainable_variables)
            self.opt.apply_gradients(zip(grads, model.trainable_variables))
            return l_pix, l_term

        self._step = step

    def reset(self, weights, lam=0.0):
        self.model.set_weights(weights)
        for v, init in zip(self.opt.variables, self._opt_init):
            v.assign(init)
        for v, init in self._state_init:
            v.assign(init)
        self.lam.assign(float(lam))

    def fit(self, data, steps, phase, label="", crop=None, batch=None):
        """Train on batches ``0 .. steps-1`` of ``phase``; returns seconds."""
        import tensorflow as tf

        lam = float(self.lam.numpy())
        bar = _progbar(steps, label)
        t0 = time.time()
        for i in range(steps):
            x, y = data.batch(phase, i, n=batch, crop=crop)
            l_pix, l_term = self._step(tf.constant(x), tf.constant(y))
            values = [("l1", float(l_pix))]
            if self.term is not None:
                values.append((self.term.name, float(l_term) * lam))
            bar.update(i + 1, values)
        return time.time() - t0


def _term_state(term):
    """Variables a loss changes while training (restored between runs of one loss)."""
    out = []
    queue = getattr(term, "_queue", None)
    if queue is not None:
        out += [queue.pred, queue.true, queue.count]
    step = getattr(term, "_step", None)  # DiffLoss random-stream position
    if step is not None and hasattr(step, "assign"):
        out.append(step)
    return out


# ----------------------------------------------------------------------------- evaluation


class Evaluator:
    def __init__(self, data, settings):
        from tfrestore.metrics.semantic import semantic_features

        self.data, self.s = data, settings
        self.backbone_weights = None if settings["weights"] == "none" else "torchvision"
        self.clean_feats = semantic_features(self._tiles(data.test_clean),
                                             weights=self.backbone_weights)

    def _tiles(self, images):
        t = self.s["tile"]
        out = []
        for img in images:
            for y in range(0, img.shape[0], t):
                for x in range(0, img.shape[1], t):
                    out.append(img[y:y + t, x:x + t])
        return out

    def __call__(self, model=None):
        """Mean metrics of ``model`` on the test set (``None``: the noisy input itself)."""
        import numpy as np

        from tfrestore.metrics import lpips, psnr, ssim
        from tfrestore.metrics.semantic import (
            retrieval_accuracy,
            semantic_features,
            semantic_similarity,
        )

        lp = _lpips_kwargs("alexnet", self.s["weights"])
        outs, rows = [], []
        for clean, noisy in zip(self.data.test_clean, self.data.test_noisy):
            if model is None:
                out = np.clip(noisy, 0.0, 1.0)
            else:
                out = np.clip(np.asarray(model(noisy[None], training=False))[0], 0.0, 1.0)
            c, r = clean[None], out[None]
            rows.append((
                float(np.asarray(psnr(c, r))[0]),
                float(np.asarray(ssim(c, r))[0]),
                float(np.asarray(lpips(c, r, backbone="alexnet", **lp))[0]),
            ))
            outs.append(out)
        feats = semantic_features(self._tiles(outs), weights=self.backbone_weights)
        m = np.mean(np.asarray(rows), axis=0)
        return {
            "psnr": float(m[0]), "ssim": float(m[1]), "lpips_alex": float(m[2]),
            "sem_cos": float(np.mean(semantic_similarity(self.clean_feats, feats))),
            "sem_top1": retrieval_accuracy(self.clean_feats, feats),
        }


# ----------------------------------------------------------------------------- runs


def _run_id(kind, ratio=None):
    return "l1" if kind == "l1" else f"{kind}_r{ratio:g}"


def pretrain(out, model, data, s):
    path = os.path.join(out, "pretrain.weights.h5")
    meta_path = os.path.join(out, "pretrain.json")
    if os.path.isfile(path) and os.path.isfile(meta_path):
        model.load_weights(path)
        meta = _read_json(meta_path)
        print(f"pretrained restorer: loaded {path} ({meta['seconds']:.0f} s when trained)")
        return meta
    trainer = Trainer(model, s["pretrain_lr"], lr_drop_at=int(0.8 * s["pretrain_steps"]))
    secs = trainer.fit(data, s["pretrain_steps"], Data.PRETRAIN,
                       label=f"pretraining DnCNN-{s['depth']}x{s['filters']} with L1: "
                       f"{s['pretrain_steps']} steps, {s['pretrain_batch']} x "
                       f"{s['pretrain_crop']} px",
                       crop=s["pretrain_crop"], batch=s["pretrain_batch"])
    model.save_weights(path)
    meta = {"seconds": secs}
    _write_json(meta_path, meta)
    return meta


def calibrate(out, kind, model, data, s):
    """Gradient-norm ratio of the λ = 1 term to L1 at the pretrained restorer's output
    (persisted: resumed runs reuse the same λ)."""
    from tfrestore.losses import L1, gradient_ratios

    path = os.path.join(out, "calibration.json")
    cal = _read_json(path) or {}
    if kind in cal:
        return cal[kind]
    term = build_term(kind, s)
    _warm_queue(term, model, data, s)
    x, y = data.batch(Data.CALIBRATE, 0)
    rows = gradient_ratios([L1(), term], y, model=model, inputs=x)
    cal[kind] = rows[1]["ratio"]
    _write_json(path, cal)
    return cal[kind]


def run_one(out, kind, ratio, lam, trainer, pre_weights, data, evaluator, s, label):
    from tfrestore.losses import L1, gradient_ratios

    model, term = trainer.model, trainer.term
    trainer.reset(pre_weights, lam or 0.0)
    secs = trainer.fit(data, s["steps"], Data.FINETUNE, label=label)
    result = {"run": _run_id(kind, ratio), "loss": kind, "ratio_target": ratio, "lambda": lam,
              "steps": s["steps"], "seconds": secs, "status": "ok"}
    if term is not None:
        x, y = data.batch(Data.CALIBRATE, 0)
        result["ratio_end"] = gradient_ratios([L1(), term], y, model=model, inputs=x,
                                              weights=[1.0, lam])[1]["ratio"]
        result["ratio_start"] = ratio
    result.update(evaluator(model))
    model.save_weights(os.path.join(out, "runs", result["run"] + ".weights.h5"))
    _write_json(os.path.join(out, "runs", result["run"] + ".json"), result)
    return result


def plan(s):
    runs = [("l1", None)]
    for kind in s["losses"]:
        runs += [(kind, r) for r in s["ratios"]]
    return runs


def run(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    s = resolve_settings(args)
    out = args.out or os.path.join("outputs", f"bench_semantic_{s['preset']}")
    if args.report_only:
        return report_only(out, s)
    prepare_out_dir(out, s, args.overwrite)
    t_start = time.time()
    print(f"semantic benchmark ({s['preset']} preset) -> {out}")
    print(f"  train: {s['train_dir']} ({s['train_images']} images max), σ = {s['sigma'] * 255:.4g}"
          f"/255, fine-tune {s['steps']} steps of {s['batch']} x {s['crop']} px, lr {s['lr']:g}")
    print(f"  test: {s['test_dir']} ({s['test_images']} images, "
          f"{'crop ' + str(s['test_crop']) if s['test_crop'] else 'whole'}), weights: "
          f"{s['weights']}, gradient ratios {s['ratios']}")

    data = Data(s)
    s["n_test"] = len(data.test_clean)
    model = build_model(s)
    pre = pretrain(out, model, data, s)
    pre_weights = model.get_weights()
    evaluator = Evaluator(data, s)

    refs = _read_json(os.path.join(out, "runs", "_references.json"))
    if refs is None:
        refs = {"noisy": evaluator(None), "pretrained": evaluator(model)}
        refs["pretrained"]["seconds"] = pre["seconds"]
        _write_json(os.path.join(out, "runs", "_references.json"), refs)

    todo = plan(s)
    results, skipped, done_times, trainers = {}, {}, [], {}
    for n, (kind, ratio) in enumerate(todo, 1):
        rid = _run_id(kind, ratio)
        path = os.path.join(out, "runs", rid + ".json")
        prev = _read_json(path)
        if prev is not None:
            results[rid] = prev
            print(f"[{n}/{len(todo)}] {rid}: done before, skipped")
            continue
        lam = None
        if kind != "l1":
            model.set_weights(pre_weights)
            try:
                base = calibrate(out, kind, model, data, s)
            except _Skip as e:
                skipped[kind] = str(e)
                print(f"[{n}/{len(todo)}] {rid}: skipped ({e})")
                continue
            model.set_weights(pre_weights)
            lam = ratio / base if base > 0 else float("nan")
            if not math.isfinite(lam):
                skipped[kind] = f"its gradient at the pretrained output is {base:g} x L1's"
                continue
        remaining = sum(1 for k, r in todo[n - 1:]
                        if not os.path.isfile(os.path.join(out, "runs", _run_id(k, r) + ".json")))
        eta = ""
        # The L1 control is cheaper than a loss run: estimate from loss runs once there are.
        times = [t for k, t in done_times if k != "l1"] or [t for _, t in done_times]
        if times:
            eta = f", ETA {_fmt_secs(remaining * sum(times) / len(times))}"
        label = (f"[{n}/{len(todo)}] {rid}"
                 + (f": λ = {lam:.4g} (gradient {ratio:g} x L1's)" if lam is not None else "")
                 + eta)
        t0 = time.time()
        if trainers.get(kind) is None:
            trainers.clear()  # one loss's networks and queue at a time
            trainers[kind] = Trainer(model, s["lr"], None if kind == "l1" else build_term(kind, s))
        res = run_one(out, kind, ratio, lam, trainers[kind], pre_weights, data, evaluator, s,
                      label)
        done_times.append((kind, time.time() - t0))
        results[rid] = res
        print(f"    PSNR {res['psnr']:.2f}  SSIM {res['ssim']:.4f}  LPIPS {res['lpips_alex']:.4f}"
              f"  sem-cos {res['sem_cos']:.4f}  top-1 {res['sem_top1']:.3f}"
              + (f"  ratio at end {res['ratio_end']:.3g}" if "ratio_end" in res else "")
              + f"  ({_fmt_secs(done_times[-1][1])})", flush=True)

    rows = table_rows(todo, results, skipped, refs)
    write_outputs(out, rows, s, _read_json(os.path.join(out, "calibration.json")) or {})
    print(f"\nwrote {out}/results.csv, results.md, psnr_vs_lpips.png "
          f"({_fmt_secs(time.time() - t_start)} this session)\n")
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        print(f.read())
    return 0


def report_only(out, s):
    """Tables and plot from the finished runs in ``out`` (no training, no networks)."""
    from tfrestore.data import list_images

    cfg = _read_json(os.path.join(out, "config.json"))
    refs = _read_json(os.path.join(out, "runs", "_references.json"))
    if cfg is None or refs is None:
        raise SystemExit(f"error: --report-only: {out} holds no benchmark results yet")
    if cfg != signature(s):
        diff = [k for k in cfg if cfg.get(k) != signature(s).get(k)]
        raise SystemExit(f"error: --report-only: {out} holds a run with other settings "
                         f"(differs in {', '.join(diff)}); pass the same flags as that run")
    s["n_test"] = len(list_images(s["test_dir"])[: s["test_images"]])
    todo = plan(s)
    results = {}
    for kind, ratio in todo:
        r = _read_json(os.path.join(out, "runs", _run_id(kind, ratio) + ".json"))
        if r is not None:
            results[r["run"]] = r
    skipped = {}
    if "diffloss" in s["losses"] and s["weights"] != "none":
        why = diffloss_weights()[1]
        if why:
            skipped["diffloss"] = why
    rows = table_rows(todo, results, skipped, refs)
    write_outputs(out, rows, s, _read_json(os.path.join(out, "calibration.json")) or {})
    n_todo = len(todo) - sum(len(s["ratios"]) for k in skipped)
    print(f"{len(results)} of {n_todo} runs finished; wrote {out}/results.csv, results.md, "
          "psnr_vs_lpips.png\n")
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        print(f.read())
    return 0


def _fmt_secs(t):
    t = int(round(t))
    if t >= 3600:
        return f"{t // 3600}:{t % 3600 // 60:02d}:{t % 60:02d}"
    return f"{t // 60}:{t % 60:02d}"


# ----------------------------------------------------------------------------- outputs


def table_rows(todo, results, skipped, refs):
    """CSV rows: references, the control, then every run (skipped ones with a status)."""
    control = results.get("l1")
    rows = []
    for name in ("noisy", "pretrained"):
        r = dict(refs[name], run=name, loss=name, status="reference")
        r["steps"] = 0
        rows.append(r)
    seen_skip = set()
    for kind, ratio in todo:
        rid = _run_id(kind, ratio)
        if rid in results:
            r = dict(results[rid])
            if control is not None:
                r["d_psnr"] = r["psnr"] - control["psnr"]
                r["d_lpips"] = r["lpips_alex"] - control["lpips_alex"]
            rows.append(r)
        elif kind in skipped and kind not in seen_skip:
            seen_skip.add(kind)
            rows.append({"run": kind, "loss": kind, "status": "skipped: " + skipped[kind]})
    return [{c: r.get(c) for c in CSV_COLUMNS} for r in rows]


def write_outputs(out, rows, s, calibration=None):
    import csv

    with open(os.path.join(out, "results.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v))
                        for k, v in r.items()})
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(rows, s, calibration))
    plot(rows, os.path.join(out, "psnr_vs_lpips.png"), s)


def _f(v, spec):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def recommendations(rows, tolerance=0.1):
    """Per loss: the run with the lowest LPIPS among those within ``tolerance`` dB of the
    control's PSNR, if its LPIPS beats the control's; else None."""
    control = next((r for r in rows if r["run"] == "l1"), None)
    if control is None:
        return {}
    rec = {}
    for r in rows:
        if r["status"] != "ok" or r["run"] == "l1":
            continue
        if r["psnr"] < control["psnr"] - tolerance or r["lpips_alex"] >= control["lpips_alex"]:
            rec.setdefault(r["loss"], None)
            continue
        best = rec.get(r["loss"])
        if best is None or r["lpips_alex"] < best["lpips_alex"]:
            rec[r["loss"]] = r
    return rec


def markdown(rows, s, calibration=None):
    lines = [
        f"Semantic benchmark, {s['preset']} preset: DnCNN-{s['depth']}x{s['filters']} pretrained "
        f"{s['pretrain_steps']} steps with L1, then fine-tuned {s['steps']} steps of "
        f"{s['batch']} x {s['crop']} px crops per row (same seed and batches); "
        f"σ = {s['sigma'] * 255:.4g}/255; test: {os.path.basename(s['test_dir'])} "
        f"({s.get('n_test', s['test_images'])} images"
        + (f", centre {s['test_crop']} px" if s["test_crop"] else "") + "). "
        "λ is set so the term's gradient is `ratio` x the L1 gradient at the pretrained output; "
        "`ratio end` is the same ratio at the fine-tuned output. sem-cos: cosine similarity of "
        f"AlexNet relu5 pooled descriptors of {s['tile']}-px tiles (restored vs clean); top-1: "
        "retrieval of each clean tile among all clean tiles from its restored tile. "
        "Δ: difference to the L1 control (PSNR higher and LPIPS lower are better).",
        "",
        "| loss | ratio | λ | ratio end | PSNR | SSIM | LPIPS-alex | sem-cos | top-1 | ΔPSNR | "
        "ΔLPIPS | time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        label = {"noisy": "noisy input", "pretrained": "pretrained (L1), not fine-tuned"}.get(
            r["run"], LABELS.get(r["loss"], r["loss"]))
        if str(r["status"]).startswith("skipped"):
            lines.append(f"| {label} | {r['status']} |" + " |" * 10)
            continue
        lines.append(
            f"| {label} | {_f(r['ratio_target'], 'g')} | {_f(r['lambda'], '.3g')} | "
            f"{_f(r['ratio_end'], '.3g')} | {_f(r['psnr'], '.2f')} | {_f(r['ssim'], '.4f')} | "
            f"{_f(r['lpips_alex'], '.4f')} | {_f(r['sem_cos'], '.4f')} | "
            f"{_f(r['sem_top1'], '.3f')} | {_f(r['d_psnr'], '+.2f')} | "
            f"{_f(r['d_lpips'], '+.4f')} | {_fmt_secs(r['seconds']) if r['seconds'] else ''} |"
        )
    if calibration:
        lines += ["", "Gradient-norm ratio of each term at λ = 1 to the L1 term, at the "
                  "pretrained restorer's output (one batch of training crops): divide a target "
                  "ratio by it to get λ.", ""]
        for kind in LOSS_KINDS:
            if kind in calibration:
                lines.append(f"- {LABELS[kind]}: {calibration[kind]:.3g}")
    rec = recommendations(rows)
    if rec:
        lines += ["", "Recommended λ (lowest LPIPS-alex within 0.1 dB of the control's PSNR and "
                  "below the control's LPIPS; none = no λ tried beats L1 at this scale):", ""]
        for kind in LOSS_KINDS:
            if kind in rec:
                r = rec[kind]
                lines.append(f"- {LABELS[kind]}: " + (
                    "none" if r is None else
                    f"λ = {r['lambda']:.3g} (gradient ratio {r['ratio_target']:g}; "
                    f"ΔLPIPS {r['d_lpips']:+.4f}, ΔPSNR {r['d_psnr']:+.2f} dB)"))
    return "\n".join(lines) + "\n"


def plot(rows, path, s):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    markers = "osD^v<>P"
    for i, kind in enumerate(LOSS_KINDS):
        pts = [r for r in rows if r["loss"] == kind and r["status"] == "ok"]
        if not pts:
            continue
        ax.plot([r["lpips_alex"] for r in pts], [r["psnr"] for r in pts], markers[i % 8] + "-",
                label=LABELS[kind], alpha=0.8)
        for r in pts:
            ax.annotate(f"{r['ratio_target']:g}", (r["lpips_alex"], r["psnr"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    for run, marker, color, name in (("l1", "*", "black", "L1 control"),
                                     ("pretrained", "x", "grey", "pretrained")):
        r = next((r for r in rows if r["run"] == run), None)
        if r is not None:
            ax.plot([r["lpips_alex"]], [r["psnr"]], marker=marker, linestyle="none",
                    markersize=12 if run == "l1" else 9, color=color, label=name)
    ax.set_xlabel("LPIPS-alex (lower is better)")
    ax.set_ylabel("PSNR dB (higher is better)")
    ax.set_title(f"Semantic benchmark ({s['preset']}): labels = gradient ratio to L1", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

