"""Command line ``tfrestore viz`` for :func:`tfrestore.viz.plot_feature_space`: its options
(:func:`add_arguments`) and its handler (:func:`run`), registered by :mod:`tfrestore.cli`;
:data:`EPILOG` gives examples."""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["add_arguments", "run", "load_images", "EPILOG"]

EPILOG = """examples:
  # clean images and two synthetic noise levels, VGG19 conv5_4, 224/56 patches
  tfrestore viz --images clean=../shared/data/kodak24 --sigma 0.1 --sigma 0.2 \\
      --crop-size 512 --patch-size 224 --patch-stride 56 --out feature_space.png

  # clean vs restored (files matched by sorted name), torchvision VGG16 weights
  tfrestore viz --images clean=gt/ --images restored=out/ --backbone vgg16 \\
      --layers conv5_3 --weights torchvision --out map.png"""

_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")


def load_images(folder, crop_size, max_images=None):
    """Centre crops ``crop_size x crop_size`` of the RGB images in ``folder`` (sorted by
    name), as float32 ``[0, 1]``; images smaller than ``crop_size`` are resized up first."""
    from PIL import Image, ImageOps

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--images: image folder {folder!r} does not exist")
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(_EXTS))
    if max_images:
        names = names[:max_images]
    if not names:
        raise ValueError(f"--images: no images ({', '.join(_EXTS)}) in {folder!r}")
    out = []
    size = crop_size
    for name in names:
        with Image.open(os.path.join(folder, name)) as raw:
            img = ImageOps.exif_transpose(raw).convert("RGB")  # as displayed (EXIF orientation)
        w, h = img.size
        if min(w, h) < size:
            scale = size / min(w, h)
            img = img.resize(
                (max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC
            )
            w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        out.append(np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255.0)
    return np.stack(out)


def add_arguments(parser):
    from tfrestore.utils.command import RenamedFlag

    parser.add_argument(
        "--images",
        action="append",
        default=[],
        metavar="NAME=DIR",
        required=True,
        help="a named set of images (repeatable), e.g. --images clean=gt/ "
        "--images restored=out/",
    )
    parser.add_argument(
        "--sigma",
        action="append",
        type=float,
        default=[],
        metavar="SIGMA",
        help="add a set: the first set plus Gaussian noise of this standard deviation in the "
        "data range [0, 1], e.g. 0.1 (repeatable)",
    )
    parser.add_argument("--out", "-o", default="feature_space.png", help="PNG file to write")
    parser.add_argument(
        "--crop-size", type=int, default=224, help="side of the centre crop in pixels"
    )
    # Removed spellings (issue 20): one error line naming the new flag.
    parser.add_argument("--set", action=RenamedFlag, new="--images", nargs="?")
    parser.add_argument("--noise", action=RenamedFlag, new="--sigma", nargs="?")
    parser.add_argument("--size", action=RenamedFlag, new="--crop-size", nargs="?")
    parser.add_argument("--max-images", type=int, default=32, help="images per set (0 = all)")
    parser.add_argument(
        "--backbone", default="vgg19", help="feature network: vgg16, vgg19, ... (default vgg19)"
    )
    parser.add_argument(
        "--layers", default="conv5_4", help="backbone layer (conv5_4 = before the ReLU)"
    )
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet | torchvision | a weights file | none (random, for testing)",
    )
    parser.add_argument(
        "--patch-size", type=int, default=None, help="sliding windows (default: whole crops)"
    )
    parser.add_argument(
        "--patch-stride",
        type=int,
        default=None,
        help="step between sliding windows in pixels (default: --patch-size, no overlap)",
    )
    parser.add_argument(
        "--perplexity",
        type=float,
        default=None,
        help="t-SNE perplexity (default: chosen from the number of points)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the noise and of t-SNE (default 0)"
    )
    parser.add_argument("--title", default=None, help="plot title (default: none)")
    return parser


def run(args):
    from tfrestore.utils.command import CliError, check_output_path, check_seed
    from tfrestore.viz.feature_space import MissingVizDependency, plot_feature_space

    check_seed(args.seed, "--seed")
    check_output_path(args.out, "--out")

    sets = {}
    for item in args.images:
        if "=" not in item:
            raise ValueError(f"--images expects NAME=DIR, e.g. clean=gt/, got {item!r}")
        name, folder = item.split("=", 1)
        sets[name] = load_images(folder, args.crop_size, args.max_images or None)
    rng = np.random.default_rng(args.seed)
    first = next(iter(sets.values()))
    for sigma in args.sigma:
        sets[f"noisy σ={sigma:g}"] = np.clip(
            first + rng.normal(0, sigma, first.shape), 0, 1
        ).astype(np.float32)
    weights = None if str(args.weights).lower() == "none" else args.weights
    try:
        plot_feature_space(
            sets,
            args.out,
            title=args.title,
            backbone=args.backbone,
            layers=args.layers,
            weights=weights,
            patch_size=args.patch_size,
            patch_stride=args.patch_stride,
            perplexity=args.perplexity,
            seed=args.seed,
        )
    except MissingVizDependency as e:
        raise CliError(str(e)) from None
    print(f"wrote {args.out} ({', '.join(f'{k}: {len(v)}' for k, v in sets.items())} images)")
    return 0
