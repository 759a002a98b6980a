"""Does a semantic loss give a better restorer? L1 vs L1 + each loss (λ sweep), same budget, seeds.

Protocol (colour denoising, Gaussian noise σ = 50/255 by default):

1. **Base restorer** (``--base``): ``toy`` pretrains a DnCNN (no BN) with L1 on
   ``cbsd432`` crops once (cached in the output directory, shared by every run);
   a preset name (``--base ffdnet_color``, :func:`tfrestore.models.from_preset`)
   starts from the authors' released weights instead, no pretraining. FFDNet's
   noise-level input is fed with σ for every batch and every test image. The
   "not fine-tuned" row is the base itself.
2. **Calibrate λ**: for each loss, λ is chosen so that the term's gradient with
   respect to the restored image is ``r`` times the L1 gradient at the base
   restorer's output (:func:`tfrestore.losses.gradient_ratios`; ``r`` from
   ``--ratios``), on one batch of the first seed. Gradient scales differ by
   orders of magnitude between losses, so equal λ would compare nothing; equal
   ratios put every loss at the same strength relative to the pixel term. One λ
   per (loss, ratio), shared by all seeds.
3. **Fine-tune** the base for the same number of steps once per (loss, λ) and
   once with L1 alone (the control: any gain must beat it, not the base), and
   all of it once per seed (``--seeds``, default 0,1,2). The seed sets the
   training crops, their noise and their order; the same seed gives the same
   batches to every row, so the rows of one seed are paired.
4. **Evaluate** on two held-out sets (``--test-set kodak24_500,cbsd68`` by default:
   Kodak24 as the papers' 500x500 crops, CBSD68 whole), AWGN with a fixed noise
   seed per image (the same noisy inputs for every row and seed); outputs are
   clipped to [0, 1] and rounded to 8 bits, as when saving. Per image: PSNR,
   SSIM, LPIPS-alex, and the semantic score of :mod:`tfrestore.metrics.semantic`
   (AlexNet ``relu5`` pooled descriptors of the image's whole 128-px tiles: mean
   cosine similarity restored vs clean, and top-1 retrieval of each clean tile
   among all clean tiles of the test set). No loss here trains with AlexNet.
5. **Statistics**: per row and test set, mean ± standard deviation over seeds
   of the image-averaged metrics; for ΔPSNR and ΔLPIPS against the control a
   paired bootstrap 95 % interval over test images (per image: the row's
   seed-averaged metric minus the control's; images resampled with replacement,
   ``--bootstrap`` resamples, seeded). The image bootstrap does not see
   seed-to-seed variation (the L1 control's LPIPS moves by ≈ 0.01 between seeds),
   so an effect is marked real only when its interval excludes 0 **and** at
   least 2 seeds finished and each seed's paired difference (row minus control,
   same batches) has the same sign. A λ is recommended only where ΔLPIPS is a
   real improvement on every test set with ΔPSNR within 0.1 dB of the control
   and all seeds finished; otherwise the report says that no λ helped measurably.

Losses: PerceptualLoss and PDLoss (identity and random_sphere projections) on
VGG16 relu2_2 + relu3_3 + relu4_3, ContextualLoss on relu3_3 + relu4_3, LPIPSLoss
(VGG), D2SMLoss on VGG16 conv5_3 (whole images + queue, and internal windows of
half the crop with stride a quarter, the paper's 224/56 on 512 scaled down), and
DiffLoss when an ADM checkpoint is found locally (skipped with the reason
otherwise). Torchvision VGG16/AlexNet weights come from $TFRESTORE_WEIGHTS_DIR.

Presets: ``--preset ffdnet`` (the default: the reference) fine-tunes FFDNet-colour;
``--preset full`` (or ``--base toy``) / ``--quick`` the toy DnCNN.

Measured on this project's 2-core CPU box (shared with other jobs, load ≈ 5, so
idle cores are faster), FFDNet-colour (852k parameters), batch 4 x 128 px, one
Adam step of L1 + term: L1 alone 0.74 s, PDLoss identity 2.0 s, PDLoss
random_sphere 2.6 s, PerceptualLoss 2.9 s, D2SMLoss whole image + queue 2.7 s,
D2SMLoss internal windows 4.1 s (tracing 1-7 s once per loss). One evaluation
pass over both test sets (24 Kodak 500x500 + 68 CBSD68 481x321; FFDNet forward
0.8 s / 0.5 s an image, LPIPS-alex 0.2 s / 0.1 s, SSIM and the semantic score
small): ≈ 70-90 s (≈ 2.5 s an image under heavy load). The ``ffdnet`` preset
(100 steps; the L1 control + PDLoss random_sphere, PDLoss identity,
PerceptualLoss, D2SMLoss whole image + queue and internal windows, at gradient
ratio 1; 3 seeds = 18 runs) adds up to ≈ 1,500 s of training + 6 evaluations
≈ 500 s per seed, ≈ 100-105 min for all 3 seeds plus the references: inside a
120-min budget on idle cores. The first real run (``nice -n 10``, load 5-10 from
other jobs on the 2 cores): references (noisy input, released model) 0:56 + 2:40;
seed 0, wall time per run (train + evaluation): L1 5:09 (1:57 + 3:11), Perceptual
7:52 (5:03 + 2:45), PDL identity 6:29 (4:20 + 2:06), PDL random_sphere 5:05
(3:31 + 1:31), D2SM queue 3:41 (2:19 + 1:20), D2SM windows 6:03 (4:02 + 1:55):
34 min for the seed under load; at load ≈ 5 the L1 run took 2:19 (0.6 s a step,
evaluation 1:19). ``--ratios`` and ``--losses`` are not part of a
run's identity: ``--ratios 1,3`` on the same ``--out`` adds the ratio-3 rows to
a finished run (≈ 30 min more per seed).

Learning rate (``ffdnet`` preset: 1e-5). The released FFDNet is strong and Adam's
first steps move every weight by about ``lr``: L1 fine-tuning for 100 steps gave,
on Kodak24 500x500 (σ = 50, released model 28.98 dB): lr 1e-4 → 28.53 dB (after 3
steps ≈ 21 dB, recovering), lr 5e-5 → 28.76 dB, lr 1e-5 → 29.03 dB. Only 1e-5
keeps the control at least as good as the released model, so the ``ffdnet``
preset uses it (the toy presets keep 1e-4).

Writes ``results.csv`` (one row per test set x row), ``results.md`` (one table
per test set) and ``psnr_vs_lpips.png`` (one panel per test set, error bars =
standard deviation over seeds) to ``--out``, after every finished run; every
run is stored under ``runs/`` with its per-image metrics (``--report-only``
recomputes all statistics from them) and skipped when the command is run again
with the same settings (an interrupted benchmark resumes). A directory holding
a run with other settings is refused unless ``--overwrite``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import zlib

DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_RATIOS = (0.3, 1.0, 3.0)
DEFAULT_TEST_SETS = "kodak24_500,cbsd68"
PRESETS = {
    # The toy DnCNN at a smaller scale: every loss at 3 ratios, 8 images of each test set
    # (≤ 15 min for one seed and one test set; seeds and test sets multiply it).
    "quick": dict(
        base="toy", crop=96, batch=2, steps=30, lr=1e-4,
        pretrain_steps=400, pretrain_crop=64, pretrain_batch=8, pretrain_lr=1e-3,
        depth=6, filters=32, queue=32, train_images=96,
        test_images=8, test_crop=256, tile=128, ratios=DEFAULT_RATIOS, losses="all",
    ),
    # The toy reference: with one seed and one test set it took ≈ 90 min; 3 seeds and two
    # test sets take ≈ 3-4x that.
    "full": dict(
        base="toy", crop=128, batch=4, steps=100, lr=1e-4,
        pretrain_steps=1500, pretrain_crop=64, pretrain_batch=16, pretrain_lr=1e-3,
        depth=8, filters=32, queue=128, train_images=432,
        test_images=0, test_crop=0, tile=128, ratios=DEFAULT_RATIOS, losses="all",
    ),
    # The released FFDNet-colour fine-tuned (≤ 120 min on 2 idle CPU cores, see above).
    "ffdnet": dict(
        base="ffdnet_color", crop=128, batch=4, steps=100, lr=1e-5,
        pretrain_steps=0, pretrain_crop=64, pretrain_batch=16, pretrain_lr=1e-3,
        depth=0, filters=0, queue=128, train_images=432,
        test_images=0, test_crop=0, tile=128, ratios=(1.0,),
        losses="pdl_sphere,pdl_identity,perceptual,d2sm_queue,d2sm_patches",
    ),
}
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
FEATURE_LAYERS = ["relu2_2", "relu3_3", "relu4_3"]  # each weighted 1
CONTEXTUAL_LAYERS = ["relu3_3", "relu4_3"]
METRICS = ("psnr", "ssim", "lpips_alex", "sem_cos", "sem_top1")
PSNR_TOLERANCE = 0.1  # dB: a recommended λ may cost at most this much PSNR
# Settings that change the numbers: a directory holding other values is another run.
_SIGNATURE_KEYS = (
    "preset", "base", "crop", "batch", "steps", "lr", "pretrain_steps", "pretrain_crop",
    "pretrain_batch", "pretrain_lr", "depth", "filters", "queue", "train_images", "test_images",
    "test_crop", "tile", "sigma", "seed", "weights", "train_dir", "test_dirs",
)  # not --seeds, --losses, --ratios: each run is its own file, so they extend a run
CSV_COLUMNS = (
    "test_set", "run", "loss", "ratio_target", "lambda", "ratio_start", "ratio_end", "steps",
    "n_seeds", "n_images",
    "psnr", "psnr_std", "ssim", "ssim_std", "lpips_alex", "lpips_alex_std",
    "sem_cos", "sem_cos_std", "sem_top1", "sem_top1_std",
    "d_psnr", "d_psnr_lo", "d_psnr_hi", "d_psnr_seed_min", "d_psnr_seed_max", "d_psnr_real",
    "d_lpips", "d_lpips_lo", "d_lpips_hi", "d_lpips_seed_min", "d_lpips_seed_max",
    "d_lpips_real", "seconds", "status",
)


# ----------------------------------------------------------------------------- arguments


def add_arguments(parser):
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None,
                        help="settings preset: quick / full (toy DnCNN) or ffdnet (the released "
                        "FFDNet-colour); default ffdnet (the reference), full with --base toy")
    parser.add_argument("--quick", action="store_true", help="same as --preset quick")
    parser.add_argument("--base", default=None,
                        help="restorer to fine-tune: 'toy' (a DnCNN pretrained here with L1) or "
                        "a tfrestore.models preset name, e.g. ffdnet_color (default: the "
                        "preset's)")
    parser.add_argument("--out", default=None,
                        help="output directory (default outputs/bench_semantic_<preset>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard the results of a run with other settings in --out")
    parser.add_argument("--report-only", action="store_true",
                        help="write results.csv/.md/.png from the runs finished so far in --out "
                        "and exit (safe while the benchmark is still running)")
    parser.add_argument("--losses", default=None,
                        help="comma-separated subset of " + ",".join(LOSS_KINDS)
                        + ", or all (the L1 control always runs); default: the preset's")
    parser.add_argument("--ratios", default=None,
                        help="gradient-norm ratios to the L1 term that set each λ "
                        "(default: the preset's; full: "
                        f"{','.join(f'{r:g}' for r in DEFAULT_RATIOS)})")
    parser.add_argument("--sigma", default="50/255", help="noise level (default %(default)s)")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated training seeds; every row runs once per seed "
                        f"(default {','.join(map(str, DEFAULT_SEEDS))})")
    parser.add_argument("--seed", type=int, default=None, help="one seed: same as --seeds N")
    parser.add_argument("--bootstrap", type=int, default=2000,
                        help="bootstrap resamples of the test images for the Δ intervals "
                        "(default %(default)s; changes only the report)")
    parser.add_argument("--test-set", "--test-sets", dest="test_set", default=DEFAULT_TEST_SETS,
                        help="held-out clean images, comma-separated: folders of "
                        "$TFRESTORE_DATA_DIR (kodak24_500, cbsd68, kodak24) or folder paths "
                        "(default %(default)s)")
    parser.add_argument("--train-dir", default=None,
                        help="training images (default $TFRESTORE_DATA_DIR/cbsd432)")
    parser.add_argument("--weights", choices=("torchvision", "none"), default="torchvision",
                        help="weights of the losses' and metrics' backbones and of a preset "
                        "base; 'none' = seeded random networks (tests only: the numbers mean "
                        "nothing)")
    for name, kind in (("steps", int), ("crop", int), ("batch", int), ("pretrain-steps", int),
                       ("test-images", int), ("test-crop", int), ("depth", int),
                       ("filters", int), ("queue", int), ("train-images", int), ("lr", float),
                       ("tile", int), ("pretrain-crop", int), ("pretrain-batch", int)):
        parser.add_argument(f"--{name}", type=kind, default=None,
                            help="override the preset's value" + (" (0 = all)" if name in (
                                "test-images",) else ""))


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
    base = args.base
    if args.quick and args.preset not in (None, "quick"):
        raise SystemExit("error: --quick and --preset disagree; give one of them")
    preset = "quick" if args.quick else args.preset
    if preset is None:  # the reference is the authors' FFDNet; --base toy the self-trained DnCNN
        preset = "full" if base == "toy" else "ffdnet"
    s = dict(PRESETS[preset], preset=preset)
    if base is not None:
        s["base"] = base
    if s["base"] != "toy":
        from tfrestore.models.presets import PRESETS as MODEL_PRESETS

        if s["base"] not in MODEL_PRESETS:
            raise SystemExit(f"error: --base: {s['base']!r} is neither 'toy' nor a preset; "
                             f"choose from toy, {', '.join(MODEL_PRESETS)}")
        p = MODEL_PRESETS[s["base"]]
        if p.args.get("channels", 3) != 3:
            raise SystemExit(f"error: --base: {s['base']} is a grey model; the losses need "
                             "colour images (choose a colour preset)")
        s["takes_sigma"] = p.takes_sigma
    else:
        s["takes_sigma"] = False
    for key in ("steps", "crop", "batch", "pretrain_steps", "test_images", "test_crop", "depth",
                "filters", "queue", "train_images", "lr", "tile", "pretrain_crop",
                "pretrain_batch"):
        value = getattr(args, key)
        if value is not None:
            s[key] = value
    s["sigma"] = _number(args.sigma, "--sigma")
    if args.seed is not None and args.seeds is not None:
        raise SystemExit("error: give --seeds or --seed, not both")
    if args.seed is not None:
        seeds = [int(args.seed)]
    elif args.seeds is not None:
        try:
            seeds = [int(t) for t in args.seeds.split(",") if t.strip()]
        except ValueError:
            raise SystemExit(f"error: --seeds must be comma-separated integers, got {args.seeds!r}")
    else:
        seeds = list(DEFAULT_SEEDS)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise SystemExit("error: --seeds must be distinct non-negative integers, e.g. 0,1,2")
    s["seeds"] = seeds
    s["seed"] = seeds[0]  # pretraining, calibration and the losses' own randomness
    s["bootstrap"] = int(args.bootstrap)
    if s["bootstrap"] < 100:
        raise SystemExit("error: --bootstrap must be at least 100 resamples")
    s["weights"] = args.weights
    data_dir = os.environ.get("TFRESTORE_DATA_DIR", "")
    s["train_dir"] = _resolve_dir(args.train_dir or "cbsd432", data_dir, "--train-dir")
    names = [t.strip() for t in args.test_set.split(",") if t.strip()]
    if not names:
        raise SystemExit("error: --test-set: give at least one folder")
    s["test_dirs"] = [_resolve_dir(t, data_dir, "--test-set") for t in names]
    s["test_names"] = _test_set_names(s["test_dirs"])
    losses = args.losses if args.losses is not None else s["losses"]
    if losses == "all":
        kinds = list(LOSS_KINDS)
    else:
        kinds = [k.strip() for k in losses.split(",") if k.strip()]
        bad = [k for k in kinds if k not in LOSS_KINDS and k != "l1"]
        if bad:
            raise SystemExit(f"error: --losses: unknown {bad}; choose from {list(LOSS_KINDS)}")
        kinds = [k for k in LOSS_KINDS if k in kinds]
    s["losses"] = kinds
    ratios = s["ratios"] if args.ratios is None else [
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


def _test_set_names(dirs):
    """Short unique names of the test folders (their base names, the parent added if needed)."""
    names = [os.path.basename(d.rstrip(os.sep)) for d in dirs]
    if len(set(names)) != len(names):
        names = [os.path.join(os.path.basename(os.path.dirname(d)), os.path.basename(d))
                 for d in dirs]
    return names


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
    _write_json(cfg_path, sig)


def _write_json(path, obj):
    from tfrestore.utils.files import atomic_output

    # A killed process never leaves a half-written result.
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)


def _read_json(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------- data


def test_noise_seed(set_name, image_name):
    """The fixed noise seed of one test image: the same noisy input for every row and seed."""
    return zlib.crc32(f"{set_name}/{image_name}".encode("utf-8"))


class TestSet:
    def __init__(self, name, names, clean, noisy):
        self.name, self.names, self.clean, self.noisy = name, names, clean, noisy


class Data:
    """Deterministic training batches and fixed noisy test sets.

    Batch ``step`` of stream ``phase`` for training seed ``seed`` depends only on
    ``(seed, phase, step)``: every row of one seed sees exactly the same crops and
    noise in the same order (rows are paired), and another seed other ones. The
    test noise depends only on the test set and image names.
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
        tile = settings["tile"]
        self.test = []
        for set_name, folder in zip(settings["test_names"], settings["test_dirs"]):
            test_paths = list_images(folder)
            if settings["test_images"]:
                test_paths = test_paths[: settings["test_images"]]
            if not test_paths:
                raise SystemExit(f"error: no images in {folder}")
            names, cleans, noisys = [], [], []
            for p in test_paths:
                img = np.asarray(read_image(p, channels=3), np.float32)
                c = settings["test_crop"]
                if c:
                    h, w = img.shape[:2]
                    ch, cw = min(c, h), min(c, w)
                    y0, x0 = (h - ch) // 2, (w - cw) // 2
                    img = img[y0:y0 + ch, x0:x0 + cw]
                if img.shape[0] < tile or img.shape[1] < tile:
                    raise SystemExit(f"error: test image {p} is smaller than one {tile}-px tile")
                name = os.path.splitext(os.path.basename(p))[0]
                rng = np.random.default_rng(test_noise_seed(set_name, name))
                noisy = img + rng.normal(0.0, settings["sigma"], img.shape).astype(np.float32)
                names.append(name)
                cleans.append(img)
                noisys.append(noisy.astype(np.float32))
            self.test.append(TestSet(set_name, names, cleans, noisys))

    def batch(self, phase, step, seed=None, n=None, crop=None):
        import numpy as np

        n = n or self.s["batch"]
        crop = crop or self.s["crop"]
        seed = self.s["seed"] if seed is None else seed
        rng = np.random.default_rng([seed, phase, step])
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
        return L.PerceptualLoss(list(FEATURE_LAYERS), backbone="vgg16", weights=w)
    if kind == "pdl_identity":
        return L.PDLoss(list(FEATURE_LAYERS), backbone="vgg16", weights=w, projection="identity")
    if kind == "pdl_sphere":
        return L.PDLoss(list(FEATURE_LAYERS), backbone="vgg16", weights=w,
                        projection="random_sphere", seed=settings["seed"])
    if kind == "contextual":
        return L.ContextualLoss(list(CONTEXTUAL_LAYERS), backbone="vgg16", weights=w,
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
    """Fill a D2SM queue with rows of the base restorer's outputs, so the
    calibration sees the set the loss will train with."""
    queue = getattr(term, "_queue", None)
    if queue is None:
        return
    for i in range(math.ceil(settings["queue"] / settings["batch"])):
        x, y = data.batch(Data.WARMUP, i)
        term(y, forward(model, x, settings))


# ----------------------------------------------------------------------------- model / training


def model_inputs(x, settings):
    """What the restorer takes for noisy images ``x``: ``x``, or ``[x, σ]`` for FFDNet
    (σ of shape ``(B, 1)``, the known noise level, for every image)."""
    if not settings.get("takes_sigma"):
        return x
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.float32)
    sigma = tf.fill(tf.stack([tf.shape(x)[0], 1]), tf.constant(settings["sigma"], tf.float32))
    return [x, sigma]


def forward(model, x, settings, training=False):
    return model(model_inputs(x, settings), training=training)


def build_model(settings):
    """The base restorer: a fresh toy DnCNN, or the preset (its released weights; seeded
    random weights with ``--weights none``)."""
    import keras

    from tfrestore import models

    keras.utils.set_random_seed(settings["seed"])
    if settings["base"] == "toy":
        return models.DnCNN(depth=settings["depth"], filters=settings["filters"], channels=3,
                            batch_norm=False, name="bench_dncnn")
    from tfrestore.models.presets import get_preset

    preset = get_preset(settings["base"])
    if settings["weights"] == "none":
        return getattr(models, preset.architecture)(**preset.args, name=preset.name)
    return models.from_preset(settings["base"])


def _progbar(target, label):
    import keras

    print(label, flush=True)
    interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    return keras.utils.Progbar(target, interval=0.05 if interactive else 30.0, unit_name="step")


class Trainer:
    """Adam on ``L1 + λ · term`` with one traced step, reused by every λ and seed of a loss.

    Tracing a step through VGG16 takes longer than many steps on a busy CPU, so
    the runs of one loss share the step; :meth:`reset` restores the base
    weights, a fresh optimizer state and the loss's own state (a D2SM queue, a
    DiffLoss random stream), so each run starts exactly as a new one would.
    """

    def __init__(self, model, lr, term=None, lr_drop_at=None, settings=None):
        import keras
        import tensorflow as tf

        from tfrestore.losses import L1

        settings = settings or {}
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
                pred = forward(model, x, settings, training=True)
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

    def fit(self, data, steps, phase, label="", crop=None, batch=None, seed=None):
        """Train on batches ``0 .. steps-1`` of ``phase`` (training seed ``seed``);
        returns seconds."""
        import tensorflow as tf

        lam = float(self.lam.numpy())
        bar = _progbar(steps, label)
        t0 = time.time()
        for i in range(steps):
            x, y = data.batch(phase, i, seed=seed, n=batch, crop=crop)
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


def quantize(image):
    """Clip to [0, 1] and round to 8 bits, as when the restored image is saved."""
    import numpy as np

    return np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0


def whole_tiles(image, tile):
    """The image's non-overlapping ``tile``-px tiles that lie wholly inside it."""
    h, w = image.shape[:2]
    return [image[y:y + tile, x:x + tile]
            for y in range(0, h - tile + 1, tile) for x in range(0, w - tile + 1, tile)]


class Evaluator:
    """Per-image metrics of a restorer on every test set (the noisy inputs are fixed)."""

    def __init__(self, data, settings):
        from tfrestore.metrics.semantic import semantic_features

        self.data, self.s = data, settings
        self.backbone_weights = None if settings["weights"] == "none" else "torchvision"
        self.clean_feats = {}
        for ts in data.test:
            tiles = [t for img in ts.clean for t in whole_tiles(img, settings["tile"])]
            self.clean_feats[ts.name] = semantic_features(tiles, weights=self.backbone_weights)

    def __call__(self, model=None):
        """``{test set: {"names": [...], metric: [per-image values]}}`` of ``model``
        (``None``: the noisy input itself), outputs clipped and rounded to 8 bits."""
        import numpy as np

        from tfrestore.metrics import lpips, psnr, ssim
        from tfrestore.metrics.semantic import semantic_features

        lp = _lpips_kwargs("alexnet", self.s["weights"])
        result = {}
        for ts in self.data.test:
            rows, counts, tiles = [], [], []
            for clean, noisy in zip(ts.clean, ts.noisy):
                if model is None:
                    out = quantize(noisy)
                else:
                    out = quantize(np.asarray(forward(model, noisy[None], self.s))[0])
                c, r = clean[None], out[None].astype(np.float32)
                rows.append((
                    float(np.asarray(psnr(c, r))[0]),
                    float(np.asarray(ssim(c, r))[0]),
                    float(np.asarray(lpips(c, r, backbone="alexnet", **lp))[0]),
                ))
                t = whole_tiles(r[0], self.s["tile"])
                counts.append(len(t))
                tiles += t
            fr = np.asarray(semantic_features(tiles, weights=self.backbone_weights), np.float64)
            fc = np.asarray(self.clean_feats[ts.name], np.float64)
            cos = np.sum(fr * fc, axis=1)
            sims = fr @ fc.T  # restored tile (query) x clean tile (gallery)
            # Top-1: no other clean tile at least as similar as its own (ties count against).
            top1 = ((sims >= np.diag(sims)[:, None]).sum(axis=1) - 1) < 1
            edges = np.cumsum([0] + counts)
            rows = np.asarray(rows)
            result[ts.name] = {
                "names": list(ts.names),
                "psnr": rows[:, 0].tolist(), "ssim": rows[:, 1].tolist(),
                "lpips_alex": rows[:, 2].tolist(),
                "sem_cos": [float(np.mean(cos[a:b])) for a, b in zip(edges[:-1], edges[1:])],
                "sem_top1": [float(np.mean(top1[a:b])) for a, b in zip(edges[:-1], edges[1:])],
            }
        return result


def set_means(metrics):
    """``{test set: {metric: image mean}}`` of :class:`Evaluator` output."""
    import numpy as np

    return {name: {m: float(np.mean(v[m])) for m in METRICS} for name, v in metrics.items()}


# ----------------------------------------------------------------------------- runs


def _row_id(kind, ratio=None):
    return "l1" if kind == "l1" else f"{kind}_r{ratio:g}"


def _run_id(kind, ratio=None, seed=None):
    """The file name of one run: its row and its training seed."""
    return f"{_row_id(kind, ratio)}_s{seed}"


def base_label(s):
    if s["base"] == "toy":
        return f"DnCNN-{s['depth']}x{s['filters']} pretrained {s['pretrain_steps']} steps with L1"
    random = ", random: --weights none" if s["weights"] == "none" else ""
    return f"{s['base']} (released weights{random})"


def pretrain(out, model, data, s):
    """The toy base: pretrain with L1 once (cached). A preset base is used as it is."""
    if s["base"] != "toy":
        return {"seconds": None}
    path = os.path.join(out, "pretrain.weights.h5")
    meta_path = os.path.join(out, "pretrain.json")
    if os.path.isfile(path) and os.path.isfile(meta_path):
        model.load_weights(path)
        meta = _read_json(meta_path)
        print(f"pretrained restorer: loaded {path} ({meta['seconds']:.0f} s when trained)")
        return meta
    trainer = Trainer(model, s["pretrain_lr"], lr_drop_at=int(0.8 * s["pretrain_steps"]),
                      settings=s)
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
    """Gradient-norm ratio of the λ = 1 term to L1 at the base restorer's output, on
    one batch of the first seed (persisted: resumed runs and all seeds use the same λ)."""
    from tfrestore.losses import L1, gradient_ratios

    path = os.path.join(out, "calibration.json")
    cal = _read_json(path) or {}
    if kind in cal:
        return cal[kind]
    term = build_term(kind, s)
    _warm_queue(term, model, data, s)
    x, y = data.batch(Data.CALIBRATE, 0)
    rows = gradient_ratios([L1(), term], y, model=model, inputs=model_inputs(x, s))
    cal[kind] = rows[1]["ratio"]
    _write_json(path, cal)
    return cal[kind]


def run_one(out, kind, ratio, lam, seed, trainer, base_weights, data, evaluator, s, label):
    from tfrestore.losses import L1, gradient_ratios

    t0 = time.time()
    model, term = trainer.model, trainer.term
    trainer.reset(base_weights, lam or 0.0)
    secs = trainer.fit(data, s["steps"], Data.FINETUNE, label=label, seed=seed)
    result = {"run": _run_id(kind, ratio, seed), "row": _row_id(kind, ratio), "loss": kind,
              "ratio_target": ratio, "lambda": lam, "seed": seed, "steps": s["steps"],
              "seconds": secs, "status": "ok"}
    if term is not None:
        x, y = data.batch(Data.CALIBRATE, 0)
        result["ratio_end"] = gradient_ratios([L1(), term], y, model=model,
                                              inputs=model_inputs(x, s),
                                              loss_weights=[1.0, lam])[1]["ratio"]
        result["ratio_start"] = ratio
    t1 = time.time()
    result["metrics"] = evaluator(model)
    result["eval_seconds"] = time.time() - t1
    model.save_weights(os.path.join(out, "runs", result["run"] + ".weights.h5"))
    result["wall_seconds"] = time.time() - t0
    _write_json(os.path.join(out, "runs", result["run"] + ".json"), result)
    return result


def plan(s):
    """The rows: the L1 control, then every (loss, ratio)."""
    runs = [("l1", None)]
    for kind in s["losses"]:
        runs += [(kind, r) for r in s["ratios"]]
    return runs


def schedule(s):
    """Every run, seed by seed (a complete, paired table of the first seed comes first):
    ``[(seed, kind, ratio), ...]``."""
    return [(seed, kind, ratio) for seed in s["seeds"] for kind, ratio in plan(s)]


def run(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    s = resolve_settings(args)
    out = args.out or os.path.join("outputs", f"bench_semantic_{s['preset']}")
    if args.report_only:
        return report_only(out, s)
    prepare_out_dir(out, s, args.overwrite)
    t_start = time.time()
    print(f"semantic benchmark ({s['preset']} preset, base {base_label(s)}) -> {out}")
    print(f"  train: {s['train_dir']} ({s['train_images']} images max), σ = {s['sigma'] * 255:.4g}"
          f"/255, fine-tune {s['steps']} steps of {s['batch']} x {s['crop']} px, lr {s['lr']:g}, "
          f"seeds {s['seeds']}")
    print(f"  test: {', '.join(s['test_names'])} ("
          f"{str(s['test_images']) + ' images each' if s['test_images'] else 'all images'}, "
          f"{'crop ' + str(s['test_crop']) if s['test_crop'] else 'whole'}), weights: "
          f"{s['weights']}, gradient ratios {s['ratios']}", flush=True)

    data = Data(s)
    model = build_model(s)
    pre = pretrain(out, model, data, s)
    base_weights = model.get_weights()
    evaluator = Evaluator(data, s)

    ref_path = os.path.join(out, "runs", "_references.json")
    refs = _read_json(ref_path)
    if refs is None:
        t0 = time.time()
        refs = {"noisy": {"metrics": evaluator(None)}}
        t1 = time.time()
        refs["pretrained"] = {"metrics": evaluator(model), "seconds": pre["seconds"],
                              "eval_seconds": time.time() - t1}
        refs["noisy"]["eval_seconds"] = t1 - t0
        _write_json(ref_path, refs)
        print(f"references evaluated: noisy {_fmt_secs(t1 - t0)}, base "
              f"{_fmt_secs(refs['pretrained']['eval_seconds'])} (one evaluation pass)")
    for name, m in set_means(refs["pretrained"]["metrics"]).items():
        print(f"  base on {name}: PSNR {m['psnr']:.2f}  SSIM {m['ssim']:.4f}  "
              f"LPIPS {m['lpips_alex']:.4f}" + _published(s, name))

    todo = schedule(s)
    skipped, done_times, trainers = {}, [], {}
    for n, (seed, kind, ratio) in enumerate(todo, 1):
        rid = _run_id(kind, ratio, seed)
        path = os.path.join(out, "runs", rid + ".json")
        if os.path.isfile(path):
            print(f"[{n}/{len(todo)}] {rid}: done before, skipped")
            continue
        if kind in skipped:
            continue
        lam = None
        if kind != "l1":
            model.set_weights(base_weights)
            try:
                cal = calibrate(out, kind, model, data, s)
            except _Skip as e:
                skipped[kind] = str(e)
                print(f"[{n}/{len(todo)}] {rid}: skipped ({e})")
                continue
            model.set_weights(base_weights)
            lam = ratio / cal if cal > 0 else float("nan")
            if not math.isfinite(lam):
                skipped[kind] = f"its gradient at the base output is {cal:g} x L1's"
                print(f"[{n}/{len(todo)}] {rid}: skipped ({skipped[kind]})")
                continue
        remaining = sum(1 for sd, k, r in todo[n - 1:] if k not in skipped and not os.path.isfile(
            os.path.join(out, "runs", _run_id(k, r, sd) + ".json")))
        eta = ""
        # The L1 control is cheaper than a loss run: estimate from loss runs once there are.
        times = [t for k, t in done_times if k != "l1"] or [t for _, t in done_times]
        if times:
            eta = f", ETA {_fmt_secs(remaining * sum(times) / len(times))}"
        label = (f"[{n}/{len(todo)}] {rid}"
                 + (f": λ = {lam:.4g} (gradient {ratio:g} x L1's)" if lam is not None else "")
                 + eta)
        if trainers.get(kind) is None:
            if kind == "diffloss" or "diffloss" in trainers:
                trainers.clear()  # the ADM UNet is big: one loss's networks at a time
            trainers[kind] = Trainer(model, s["lr"], None if kind == "l1" else build_term(kind, s),
                                     settings=s)
        res = run_one(out, kind, ratio, lam, seed, trainers[kind], base_weights, data, evaluator,
                      s, label)
        done_times.append((kind, res["wall_seconds"]))
        means = set_means(res["metrics"])
        print("    " + "; ".join(
            f"{name}: PSNR {m['psnr']:.2f} SSIM {m['ssim']:.4f} LPIPS {m['lpips_alex']:.4f} "
            f"sem-cos {m['sem_cos']:.4f}" for name, m in means.items())
              + (f"; ratio at end {res['ratio_end']:.3g}" if "ratio_end" in res else "")
              + f"  (wall {_fmt_secs(res['wall_seconds'])}: train {_fmt_secs(res['seconds'])}, "
              f"eval {_fmt_secs(res['eval_seconds'])})", flush=True)
        _report(out, s, skipped)  # the tables are always up to date

    n_done = _report(out, s, skipped)
    print(f"\n{n_done} runs finished; wrote {out}/results.csv, results.md, psnr_vs_lpips.png "
          f"({_fmt_secs(time.time() - t_start)} this session)\n")
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        print(f.read())
    return 0


def _published(s, set_name):
    if s["base"] == "toy" or s["weights"] == "none":
        return ""
    from tfrestore.models.presets import get_preset

    key = {"kodak24_500": "Kodak24", "kodak24": "Kodak24", "cbsd68": "CBSD68"}.get(set_name)
    table = get_preset(s["base"]).published.get(key, {})
    level = round(s["sigma"] * 255)
    if key and level in table and abs(s["sigma"] * 255 - level) < 1e-6:
        return f"  (published {table[level]:.2f} dB)"
    return ""


def load_results(out, s):
    """``{row id: {seed: run result}}`` of the finished runs in ``out``."""
    results = {}
    for seed, kind, ratio in schedule(s):
        r = _read_json(os.path.join(out, "runs", _run_id(kind, ratio, seed) + ".json"))
        if r is not None:
            results.setdefault(_row_id(kind, ratio), {})[seed] = r
    return results


def _report(out, s, skipped):
    refs = _read_json(os.path.join(out, "runs", "_references.json"))
    results = load_results(out, s)
    rows = summarize(plan(s), results, skipped, refs, s)
    write_outputs(out, rows, s, _read_json(os.path.join(out, "calibration.json")) or {})
    return sum(len(v) for v in results.values())


def report_only(out, s):
    """Tables and plot from the finished runs in ``out`` (no training, no networks)."""
    cfg = _read_json(os.path.join(out, "config.json"))
    refs = _read_json(os.path.join(out, "runs", "_references.json"))
    if cfg is None or refs is None:
        raise SystemExit(f"error: --report-only: {out} holds no benchmark results yet")
    if cfg != signature(s):
        diff = [k for k in cfg if cfg.get(k) != signature(s).get(k)]
        raise SystemExit(f"error: --report-only: {out} holds a run with other settings "
                         f"(differs in {', '.join(diff)}); pass the same flags as that run")
    skipped = {}
    if "diffloss" in s["losses"] and s["weights"] != "none":
        why = diffloss_weights()[1]
        if why:
            skipped["diffloss"] = why
    n_done = _report(out, s, skipped)
    n_todo = sum(1 for _, k, _ in schedule(s) if k not in skipped)
    print(f"{n_done} of {n_todo} runs finished; wrote {out}/results.csv, results.md, "
          "psnr_vs_lpips.png\n")
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        print(f.read())
    return 0


def _fmt_secs(t):
    t = int(round(t))
    if t >= 3600:
        return f"{t // 3600}:{t % 3600 // 60:02d}:{t % 60:02d}"
    return f"{t // 60}:{t % 60:02d}"


# ----------------------------------------------------------------------------- statistics


def paired_bootstrap(diff, resamples=2000, seed=0, level=0.95):
    """Mean of per-image differences ``diff`` and its bootstrap ``level`` interval.

    The images are resampled with replacement ``resamples`` times (NumPy generator
    seeded with ``seed``); the interval is the percentile interval of the resampled
    means. Returns ``(mean, low, high)``.
    """
    import numpy as np

    diff = np.asarray(diff, np.float64)
    if diff.ndim != 1 or diff.size == 0:
        raise ValueError(f"`diff` must be a non-empty 1-D array, got shape {diff.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(int(resamples), diff.size))
    means = diff[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(diff.mean()), float(low), float(high)


def seed_stats(runs_by_seed, set_name, metric):
    """Mean and standard deviation (ddof 1; None for one seed) over seeds of the
    image-averaged ``metric``."""
    import numpy as np

    per_seed = [float(np.mean(r["metrics"][set_name][metric])) for r in runs_by_seed.values()]
    mean = float(np.mean(per_seed))
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
    return mean, std


def seed_averaged(runs_by_seed, seeds, set_name, metric):
    """Per-image ``metric`` averaged over ``seeds``, ``(n_images,)``."""
    import numpy as np

    return np.mean([runs_by_seed[sd]["metrics"][set_name][metric] for sd in seeds], axis=0)


def paired_delta(row_runs, control_runs, set_name, metric, resamples=2000, seed=0):
    """Δ = row - control of ``metric`` on ``set_name`` over the seeds both have finished:
    ``(mean, low, high, per_seed)`` (paired bootstrap over images of the seed-averaged
    per-image differences; ``per_seed`` = the image-mean difference of each common seed,
    the seed-to-seed spread the image bootstrap does not see), or None."""
    import numpy as np

    seeds = sorted(set(row_runs) & set(control_runs))
    if not seeds:
        return None
    names_r = row_runs[seeds[0]]["metrics"][set_name]["names"]
    names_c = control_runs[seeds[0]]["metrics"][set_name]["names"]
    if names_r != names_c:
        raise ValueError(f"{set_name}: the row and the control were evaluated on other images")
    d = (seed_averaged(row_runs, seeds, set_name, metric)
         - seed_averaged(control_runs, seeds, set_name, metric))
    per_seed = [float(np.mean(row_runs[sd]["metrics"][set_name][metric])
                      - np.mean(control_runs[sd]["metrics"][set_name][metric])) for sd in seeds]
    if not np.any(d):
        return 0.0, 0.0, 0.0, per_seed
    return (*paired_bootstrap(d, resamples, seed), per_seed)


def _real(lo, hi, per_seed=None):
    """Real: the image-bootstrap interval excludes 0 and, when seeds are given, there are
    at least 2 and every seed's paired difference has the interval's sign (the interval
    alone ignores seed-to-seed variation)."""
    if not (lo > 0 or hi < 0):
        return "no"
    if per_seed is None:
        return "yes"
    if len(per_seed) < 2:
        return "no (1 seed)"
    return "yes" if all((v > 0) == (lo > 0) and v != 0 for v in per_seed) else "no (seeds disagree)"


def summarize(todo, results, skipped, refs, s):
    """CSV rows, test set by test set: the references (noisy input, the base), the
    control, then every row with finished runs (skipped losses with their reason).

    ``results`` is ``{row id: {seed: run}}``; Δ columns compare with the control over
    the seeds both finished (paired over seeds and images)."""
    import numpy as np

    control = results.get("l1", {})
    boot = dict(resamples=s.get("bootstrap", 2000), seed=0)
    rows = []
    for set_name in s["test_names"]:
        for name in ("noisy", "pretrained"):
            if refs is None or set_name not in refs[name]["metrics"]:
                continue
            ref = {0: refs[name]}  # one "seed": the references do not train
            r = {"test_set": set_name, "run": name, "loss": name, "status": "reference",
                 "steps": 0, "seconds": refs[name].get("seconds"),
                 "n_images": len(refs[name]["metrics"][set_name]["psnr"])}
            for m in METRICS:
                r[m] = seed_stats(ref, set_name, m)[0]
            if control:
                for m, col in (("psnr", "d_psnr"), ("lpips_alex", "d_lpips")):
                    # the reference against the seed-averaged control
                    seeds = sorted(control)
                    d = (np.asarray(refs[name]["metrics"][set_name][m])
                         - seed_averaged(control, seeds, set_name, m))
                    mean, lo, hi = paired_bootstrap(d, **boot)
                    r.update({col: mean, col + "_lo": lo, col + "_hi": hi,
                              col + "_real": _real(lo, hi)})
            rows.append(r)
        seen_skip = set()
        for kind, ratio in todo:
            rid = _row_id(kind, ratio)
            runs = results.get(rid)
            if runs:
                first = runs[min(runs)]
                r = {"test_set": set_name, "run": rid, "loss": kind, "status": "ok",
                     "ratio_target": first.get("ratio_target"), "lambda": first.get("lambda"),
                     "ratio_start": first.get("ratio_start"), "steps": first.get("steps"),
                     "n_seeds": len(runs),
                     "n_images": len(first["metrics"][set_name]["psnr"]),
                     "seconds": float(np.mean([x.get("wall_seconds", x["seconds"])
                                               for x in runs.values()]))}
                ends = [x["ratio_end"] for x in runs.values() if x.get("ratio_end") is not None]
                r["ratio_end"] = float(np.mean(ends)) if ends else None
                for m in METRICS:
                    r[m], r[m + "_std"] = seed_stats(runs, set_name, m)
                for m, col in (("psnr", "d_psnr"), ("lpips_alex", "d_lpips")):
                    delta = paired_delta(runs, control, set_name, m, **boot) if control else None
                    if delta is not None:
                        mean, lo, hi, per_seed = delta
                        r.update({col: mean, col + "_lo": lo, col + "_hi": hi,
                                  col + "_seed_min": min(per_seed),
                                  col + "_seed_max": max(per_seed),
                                  col + "_real": "" if kind == "l1" else _real(lo, hi, per_seed)})
                rows.append(r)
            elif kind in skipped and kind not in seen_skip:
                seen_skip.add(kind)
                rows.append({"test_set": set_name, "run": kind, "loss": kind,
                             "status": "skipped: " + skipped[kind]})
    return [{c: r.get(c) for c in CSV_COLUMNS} for r in rows]


# ----------------------------------------------------------------------------- outputs


def write_outputs(out, rows, s, calibration=None):
    import csv

    from tfrestore.utils.files import atomic_output

    csv_path = os.path.join(out, "results.csv")
    with atomic_output(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v))
                        for k, v in r.items()})
    md_path = os.path.join(out, "results.md")
    with atomic_output(md_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(markdown(rows, s, calibration))
    plot(rows, os.path.join(out, "psnr_vs_lpips.png"), s)


def _f(v, spec):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _pm(mean, std, spec):
    if mean is None:
        return ""
    return format(mean, spec) + ("" if std is None else " ± " + format(std, spec))


def _delta(r, col, spec):
    if r.get(col) is None:
        return ""
    text = format(r[col], spec)
    if r.get(col + "_lo") is not None and r["run"] != "l1":
        text += f" [{format(r[col + '_lo'], spec)}, {format(r[col + '_hi'], spec)}]"
        if r.get(col + "_seed_min") is not None and (r.get("n_seeds") or 0) > 1:
            text += (f" seeds {format(r[col + '_seed_min'], spec)}…"
                     f"{format(r[col + '_seed_max'], spec)}")
    if r.get(col + "_real") == "yes":
        text = f"**{text}**"
    return text


def recommendations(rows, tolerance=PSNR_TOLERANCE, min_seeds=1):
    """Per loss: the row with the largest LPIPS gain among those whose ΔLPIPS interval
    lies below 0 and is marked real (every seed agrees), whose mean ΔPSNR is within
    ``tolerance`` dB of the control, on **every** test set, with at least ``min_seeds``
    seeds finished; None when no row of that loss qualifies."""
    sets = list(dict.fromkeys(r["test_set"] for r in rows))
    by_run = {}
    for r in rows:
        if r["status"] == "ok" and r["run"] != "l1":
            by_run.setdefault(r["run"], {})[r["test_set"]] = r
    rec = {}
    for run, per_set in by_run.items():
        kind = next(iter(per_set.values()))["loss"]
        rec.setdefault(kind, None)
        if set(per_set) != set(sets):
            continue
        ok = all(
            p.get("d_lpips_hi") is not None and p["d_lpips_hi"] < 0
            and p.get("d_lpips_real") == "yes" and (p.get("n_seeds") or 0) >= min_seeds
            and p.get("d_psnr") is not None and p["d_psnr"] >= -tolerance
            for p in per_set.values()
        )
        if not ok:
            continue
        gain = sum(p["d_lpips"] for p in per_set.values()) / len(per_set)
        best = rec[kind]
        if best is None or gain < best["d_lpips_mean"]:
            first = per_set[sets[0]]
            rec[kind] = dict(first, d_lpips_mean=gain, per_set=per_set)
    return rec


def markdown(rows, s, calibration=None):
    n_seeds = len(s["seeds"])
    lines = [
        f"Semantic benchmark, {s['preset']} preset: base {base_label(s)}, fine-tuned "
        f"{s['steps']} steps of {s['batch']} x {s['crop']} px crops per row, lr {s['lr']:g}, "
        f"once per training seed ({', '.join(map(str, s['seeds']))}; the same seed gives every "
        f"row the same batches); σ = {s['sigma'] * 255:.4g}/255, outputs clipped and rounded to "
        "8 bits. Metrics: mean ± standard deviation over seeds of the image means "
        f"({n_seeds} seeds planned; `seeds` = finished). Δ: row minus the L1 control (PSNR "
        "higher and LPIPS lower are better), per image averaged over the seeds both "
        f"finished, with a paired bootstrap 95 % interval over test images "
        f"({s.get('bootstrap', 2000)} resamples) and the range of the per-seed paired "
        "differences (`seeds a…b`); **bold** = real: the interval excludes 0 and every seed's "
        "difference has its sign (2 seeds at least; the image bootstrap alone ignores "
        "seed-to-seed variation). For the references the Δ compares them with the "
        "seed-averaged control "
        "(a positive ΔPSNR of the base = fine-tuning with L1 alone lost PSNR). "
        "λ is set so the term's gradient is `ratio` x the L1 gradient at the base's output; "
        "`ratio end` is the same ratio at the fine-tuned output (mean over seeds). sem-cos: "
        f"cosine similarity of AlexNet relu5 pooled descriptors of whole {s['tile']}-px tiles "
        "(restored vs clean); top-1: retrieval of each clean tile among all clean tiles of the "
        "set from its restored tile. time: wall time per run (training + evaluation).",
    ]
    for set_name in s["test_names"]:
        set_rows = [r for r in rows if r["test_set"] == set_name]
        if not set_rows:
            continue
        n_img = next((r["n_images"] for r in set_rows if r.get("n_images")), "?")
        lines += [
            "", f"### {set_name} ({n_img} images" + (
                f", centre {s['test_crop']} px" if s["test_crop"] else ", whole") + ")", "",
            "| row | ratio | λ | ratio end | seeds | PSNR | SSIM | LPIPS-alex | sem-cos | top-1 "
            "| ΔPSNR [95 % CI] | ΔLPIPS [95 % CI] | time |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in set_rows:
            label = {"noisy": "noisy input",
                     "pretrained": ("pretrained (L1), not fine-tuned" if s["base"] == "toy"
                                    else f"{s['base']} (released), not fine-tuned")}.get(
                r["run"], LABELS.get(r["loss"], r["loss"]))
            if str(r["status"]).startswith("skipped"):
                lines.append(f"| {label} | {r['status']} |" + " |" * 11)
                continue
            lines.append(
                f"| {label} | {_f(r['ratio_target'], 'g')} | {_f(r['lambda'], '.3g')} | "
                f"{_f(r['ratio_end'], '.3g')} | {_f(r['n_seeds'], 'd')} | "
                f"{_pm(r['psnr'], r['psnr_std'], '.2f')} | "
                f"{_pm(r['ssim'], r['ssim_std'], '.4f')} | "
                f"{_pm(r['lpips_alex'], r['lpips_alex_std'], '.4f')} | "
                f"{_pm(r['sem_cos'], r['sem_cos_std'], '.4f')} | "
                f"{_pm(r['sem_top1'], r['sem_top1_std'], '.3f')} | "
                f"{_delta(r, 'd_psnr', '+.2f')} | {_delta(r, 'd_lpips', '+.4f')} | "
                f"{_fmt_secs(r['seconds']) if r['seconds'] else ''} |"
            )
    if calibration:
        lines += ["", "Gradient-norm ratio of each term at λ = 1 to the L1 term, at the "
                  "base restorer's output (one batch of training crops of the first seed): "
                  "divide a target ratio by it to get λ.", ""]
        for kind in LOSS_KINDS:
            if kind in calibration:
                lines.append(f"- {LABELS[kind]}: {calibration[kind]:.3g}")
    rec = recommendations(rows, min_seeds=len(s["seeds"]))
    if rec:
        lines += ["", "Recommended λ (a real ΔLPIPS improvement on every test set — "
                  f"{', '.join(s['test_names'])} — with mean ΔPSNR within {PSNR_TOLERANCE:g} dB "
                  f"of the control, all {len(s['seeds'])} seeds finished; the largest mean LPIPS "
                  "gain among those):", ""]
        for kind in LOSS_KINDS:
            if kind in rec:
                r = rec[kind]
                lines.append(f"- {LABELS[kind]}: " + (
                    "none" if r is None else
                    f"λ = {r['lambda']:.3g} (gradient ratio {r['ratio_target']:g}; " + "; ".join(
                        f"{name}: ΔLPIPS {p['d_lpips']:+.4f} [{p['d_lpips_lo']:+.4f}, "
                        f"{p['d_lpips_hi']:+.4f}], ΔPSNR {p['d_psnr']:+.2f} dB"
                        for name, p in r["per_set"].items()) + ")"))
        pending = sorted({r["run"] for r in rows if r["status"] == "ok" and r["run"] != "l1"
                          and (r.get("n_seeds") or 0) < len(s["seeds"])})
        if pending:
            lines += ["", f"Incomplete: {len(pending)} rows have not finished all "
                      f"{len(s['seeds'])} seeds ({', '.join(pending)}); no recommendation "
                      "for them yet."]
        elif all(v is None for v in rec.values()):
            lines += ["", "**No λ helped measurably**: no row with all seeds finished has a "
                      "real ΔLPIPS improvement on every test set within the PSNR tolerance."]
    return "\n".join(lines) + "\n"


def plot(rows, path, s):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [n for n in s["test_names"] if any(r["test_set"] == n for r in rows)] or [""]
    fig, axes = plt.subplots(1, len(sets), figsize=(7.0 * len(sets), 5.5), squeeze=False)
    markers = "osD^v<>P"

    def err(v):
        return 0.0 if v is None else v

    for ax, set_name in zip(axes[0], sets):
        set_rows = [r for r in rows if r["test_set"] == set_name]
        for i, kind in enumerate(LOSS_KINDS):
            pts = [r for r in set_rows if r["loss"] == kind and r["status"] == "ok"]
            if not pts:
                continue
            ax.errorbar([r["lpips_alex"] for r in pts], [r["psnr"] for r in pts],
                        xerr=[err(r["lpips_alex_std"]) for r in pts],
                        yerr=[err(r["psnr_std"]) for r in pts], fmt=markers[i % 8] + "-",
                        capsize=3, label=LABELS[kind], alpha=0.8)
            for r in pts:
                ax.annotate(f"{r['ratio_target']:g}", (r["lpips_alex"], r["psnr"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        for run, marker, color, name in (("l1", "*", "black", "L1 control"),
                                         ("pretrained", "x", "grey", "base, not fine-tuned")):
            r = next((r for r in set_rows if r["run"] == run), None)
            if r is not None:
                ax.errorbar([r["lpips_alex"]], [r["psnr"]], xerr=[err(r["lpips_alex_std"])],
                            yerr=[err(r["psnr_std"])], fmt=marker, capsize=3,
                            markersize=12 if run == "l1" else 9, color=color, label=name)
        ax.set_xlabel("LPIPS-alex (lower is better)")
        ax.set_ylabel("PSNR dB (higher is better)")
        ax.set_title(f"{set_name}: {s['base']}, {len(s['seeds'])} seeds (error bars: std over "
                     "seeds); labels = gradient ratio", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    from tfrestore.utils.files import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
