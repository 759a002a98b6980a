"""The authors' released FFDNet/DnCNN weights in tfrestore vs the PSNR their papers publish.

Every preset of :func:`tfrestore.models.list_presets` is evaluated on the test sets
of its paper's tables at the published noise levels, with the authors' MATLAB demo
protocol: additive white Gaussian noise on the 8-bit clean image scaled to [0, 1]
(the noisy input is *not* clipped, except for the ``*_clip`` models, which were
trained on noisy images clipped and rounded to 8 bits), FFDNet given the true σ,
the output clipped and rounded to 8 bits, PSNR over all pixels and channels against
the 8-bit reference, averaged over the images. Noise is drawn with NumPy from a seed
per (σ, image), so every run sees the same noisy images.

Test sets come from ``$TFRESTORE_DATA_DIR``: ``cbsd68`` (CBSD68), ``kodak24_500`` (the
papers' 500x500 Kodak24 crops), ``bsd68`` (grey BSD68) and ``set12``. The DnCNN-S
preset is evaluated from both released files (MatConvNet ``.mat`` and KAIR's ``.pth``),
whose outputs are compared too.

Prints paper vs tfrestore per cell and the largest |Δ|; ``--csv`` writes the table.
The whole table took about 65 minutes on the shared 2-core development machine (CDnCNN-B,
20 full-resolution layers, is half of it); ``--presets``/``--sigmas``/
``--max-images`` select a part.
"""

from __future__ import annotations

import csv
import os
import time

import numpy as np

#: (preset, test set label, folder under $TFRESTORE_DATA_DIR, noise levels in 0..255).
TABLE = (
    ("ffdnet_color", "CBSD68", "cbsd68", (15, 25, 35, 50, 75)),
    ("ffdnet_color", "Kodak24", "kodak24_500", (15, 25, 35, 50, 75)),
    ("cdncnn_b_color", "CBSD68", "cbsd68", (15, 25, 35, 50, 75)),
    ("cdncnn_b_color", "Kodak24", "kodak24_500", (15, 25, 35, 50, 75)),
    ("ffdnet_gray", "BSD68", "bsd68", (15, 25, 35, 50, 75)),
    ("dncnn_s25_gray", "Set12", "set12", (25,)),
    ("dncnn_s25_gray", "BSD68", "bsd68", (25,)),
    ("dncnn_s25_gray_kair", "Set12", "set12", (25,)),
    ("dncnn_s25_gray_kair", "BSD68", "bsd68", (25,)),
    ("ffdnet_color_clip", "CBSD68", "cbsd68", (15, 25, 35, 50, 75)),
    ("ffdnet_gray_clip", "BSD68", "bsd68", (15, 25, 35, 50, 75)),
    ("dncnn_s50_color", "CBSD68", "cbsd68", (50,)),
)
TOLERANCE_DB = 0.05


def add_arguments(parser):
    parser.add_argument("--presets", default=None,
                        help="comma-separated preset names (default: every preset in the table)")
    parser.add_argument("--sigmas", default=None,
                        help="comma-separated noise levels in 0..255 (default: each row's levels)")
    parser.add_argument("--max-images", type=int, default=None,
                        help="use the first N images of each test set (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")
    parser.add_argument("--csv", default=None, help="write the table to this CSV file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")


def test_images(folder, channels, max_images=None):
    """The 8-bit images of a test folder of ``$TFRESTORE_DATA_DIR``, sorted by name."""
    from tfrestore.data.io import list_images, read_image

    data_dir = os.environ.get("TFRESTORE_DATA_DIR", "")
    path = os.path.join(data_dir, folder)
    if not data_dir or not os.path.isdir(path):
        raise FileNotFoundError(
            f"test set {folder!r} not found: set TFRESTORE_DATA_DIR to the folder holding "
            f"{folder}/ (now {data_dir!r})"
        )
    files = sorted(list_images(path))[:max_images]
    return [(os.path.basename(f), read_image(f, channels=channels, dtype="uint8")) for f in files]


def noisy_input(clean_u8, sigma, seed, index, clip=False):
    """The demo's noisy input: float32 clean/255 + σ/255 · N(0, 1); clipped and rounded to
    8 bits for models trained that way."""
    rng = np.random.default_rng([seed, int(round(sigma * 100)), index])
    x = clean_u8.astype(np.float32) / 255.0
    y = x + (sigma / 255.0) * rng.standard_normal(x.shape).astype(np.float32)
    if clip:
        y = np.clip(np.round(y * 255.0), 0, 255).astype(np.float32) / 255.0
    return y


def restore(model, noisy, sigma):
    """The model's output for one HWC image, clipped and rounded to 8 bits."""
    x = noisy[None]
    if len(model.inputs) == 2:
        out = model([x, np.full((1, 1), sigma / 255.0, np.float32)], training=False)
    else:
        out = model(x, training=False)
    return np.clip(np.round(np.asarray(out)[0] * 255.0), 0, 255).astype(np.uint8)


def psnr_u8(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def evaluate(model, images, sigma, seed=0, clip=False):
    """Mean PSNR (dB) of ``model`` over ``images`` at noise level ``sigma`` (0..255) and the
    per-image values."""
    values = [
        psnr_u8(clean, restore(model, noisy_input(clean, sigma, seed, i, clip), sigma))
        for i, (_, clean) in enumerate(images)
    ]
    return float(np.mean(values)), values


def _select(args):
    from tfrestore.models.presets import PRESETS

    rows = list(TABLE)
    if args.presets:
        wanted = [p.strip() for p in args.presets.split(",") if p.strip()]
        bad = [p for p in wanted if p not in PRESETS]
        if bad:
            raise SystemExit(f"error: --presets: unknown {bad}; choose from {list(PRESETS)}")
        rows = [r for r in rows if r[0] in wanted]
    if args.sigmas:
        try:
            sigmas = {float(s) for s in args.sigmas.split(",") if s.strip()}
        except ValueError:
            raise SystemExit(f"error: --sigmas must be numbers in 0..255, got {args.sigmas!r}")
        if any(not 0 < s <= 255 for s in sigmas):
            raise SystemExit(f"error: --sigmas are noise levels in 0..255 (e.g. 25), got "
                             f"{sorted(sigmas)}")
        rows = [(p, n, f, tuple(s for s in sig if s in sigmas)) for p, n, f, sig in rows]
        rows = [r for r in rows if r[3]]
    if not rows:
        raise SystemExit("error: --presets/--sigmas select no row of the table")
    if args.max_images is not None and args.max_images < 1:
        raise SystemExit(f"error: --max-images must be >= 1, got {args.max_images}")
    return rows


def run(args):
    from tfrestore.models.presets import PRESETS, from_preset

    rows = _select(args)
    if args.csv and os.path.exists(args.csv) and not args.overwrite:
        raise SystemExit(f"error: --csv {args.csv!r} exists; pass --overwrite to replace it")
    models, results, t_start = {}, [], time.time()
    print(f"{'preset':<20} {'test set':<8} {'sigma':>5} {'paper':>6} {'tfrestore':>9} "
          f"{'delta':>6}  images  s")
    for name, label, folder, sigmas in rows:
        preset = PRESETS[name]
        if name not in models:
            models[name] = from_preset(name)
        images = test_images(folder, preset.args["channels"], args.max_images)
        for sigma in sigmas:
            t0 = time.time()
            value, _ = evaluate(models[name], images, sigma, args.seed, clip=preset.clip)
            paper = preset.published.get(label, {}).get(sigma)
            delta = None if paper is None else value - paper
            results.append(dict(preset=name, test_set=label, sigma=sigma, images=len(images),
                                paper=paper, tfrestore=round(value, 4),
                                delta=None if delta is None else round(delta, 4)))
            print(f"{name:<20} {label:<8} {sigma:>5g} "
                  f"{'–' if paper is None else f'{paper:.2f}':>6} {value:9.3f} "
                  f"{'' if delta is None else f'{delta:+.3f}':>6}  {len(images):>6} "
                  f"{time.time() - t0:4.0f}", flush=True)
    compared = [r for r in results if r["delta"] is not None]
    if compared:
        worst = max(compared, key=lambda r: abs(r["delta"]))
        within = sum(abs(r["delta"]) <= TOLERANCE_DB for r in compared)
        print(f"\n{within}/{len(compared)} cells within {TOLERANCE_DB} dB of the paper; largest "
              f"|delta| {abs(worst['delta']):.3f} dB ({worst['preset']} {worst['test_set']} "
              f"sigma={worst['sigma']:g}); {time.time() - t_start:.0f} s")
    if "dncnn_s25_gray" in models and "dncnn_s25_gray_kair" in models:
        images = test_images("set12", 1, 1)
        noisy = noisy_input(images[0][1], 25, args.seed, 0)
        a = np.asarray(models["dncnn_s25_gray"](noisy[None]))
        b = np.asarray(models["dncnn_s25_gray_kair"](noisy[None]))
        print(f"DnCNN-S .mat vs .pth: max |output difference| {np.abs(a - b).max():.2e} "
              f"({images[0][0]})")
    if args.csv:
        tmp = args.csv + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(results[0]))
            writer.writeheader()
            writer.writerows(results)
        os.replace(tmp, args.csv)
        print(f"wrote {args.csv}")
    bad = [r for r in compared if abs(r["delta"]) > TOLERANCE_DB]
    return 1 if bad else 0

