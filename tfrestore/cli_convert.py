"""Command line: ``tfrestore convert adm in.pt out.weights.h5 [--preset adm_256_uncond]``,
``tfrestore convert matconvnet FFDNet_color.mat out.keras`` and ``tfrestore convert torch
dncnn_25.pth out.keras`` (the authors' released FFDNet/DnCNN weights).

Also ``python -m tfrestore convert adm ...``. It sits at the top layer (beside
:mod:`tfrestore.cli`, which registers it) because it ties the generic reader of
:mod:`tfrestore.convert` to the ADM model of :mod:`tfrestore.diffusion`. The output format follows the
extension: ``.weights.h5`` (Keras ``ADMUNet.save_weights``; load with
``ADMUNet.from_preset(...).load_weights(path)`` or ``DiffLoss(weights=path)``) or
``.npz`` (converted arrays keyed by the PyTorch names, Keras layout).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "build_parser", "PRESET_NAMES"]

#: Names of ``tfrestore.diffusion.ADM_PRESETS`` (listed here so that building the parser does not
#: import TensorFlow; a test keeps the two equal).
PRESET_NAMES = ("adm_256_uncond", "adm_tiny")

_DESCRIPTION = (
    "Convert PyTorch checkpoints to Keras weights without PyTorch. The output format follows the "
    "extension: .weights.h5 (Keras ADMUNet.save_weights; load it with "
    "ADMUNet.from_preset(...).load_weights(path) or DiffLoss(weights=path)) or .npz (the "
    "converted arrays keyed by the PyTorch names, in Keras layout)."
)


def _check_exists(path, what):
    import os

    if path and not os.path.isfile(path):
        why = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"{what} {path!r} {why}")


def _check_adm(args):
    """The checks of ``convert adm`` that need no TensorFlow (run before importing it)."""
    from tfrestore.utils.files import check_output

    output = args.output
    if not (output.endswith(".weights.h5") or output.endswith(".npz")):
        raise ValueError(f"output must end in .weights.h5 or .npz, got {output!r}")
    _check_exists(args.checkpoint, "checkpoint file")
    _check_exists(args.config, "--config file")
    _check_exists(args.verify, "--verify file")
    check_output(output, "output", args.overwrite, (args.checkpoint, args.verify, args.config))


def _convert_adm(args):
    import numpy as np

    from tfrestore.diffusion.adm_weights import ADMConversionError, convert_adm, load_adm_weights
    from tfrestore.diffusion.config import adm_config
    from tfrestore.diffusion.unet import ADMUNet

    from tfrestore.utils.files import atomic_output

    output = args.output
    _check_adm(args)
    if args.config:
        with open(args.config) as f:
            try:
                raw = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"--config {args.config}: not valid JSON ({e})") from None
        try:
            config = adm_config(raw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"--config {args.config}: {e}") from None
    else:
        config = adm_config(args.preset)
    weights = convert_adm(args.checkpoint, config)
    n_params = sum(int(v.size) for v in weights.values())
    verified = ""
    if args.verify or not output.endswith(".npz"):
        unet = ADMUNet(**config)
        try:
            load_adm_weights(unet, weights, verify=args.verify)
        except (ADMConversionError, FileNotFoundError) as exc:
            raise ValueError(f"{exc} Nothing was written.") from exc
        if args.verify:
            verified = f", outputs match {args.verify}"
    with atomic_output(output) as tmp:
        if output.endswith(".npz"):
            np.savez(tmp, **weights)
        else:
            unet.save_weights(tmp)
    print(f"converted {len(weights)} tensors ({n_params:,} parameters) -> {output}{verified}")
    return 0


def _check_released(args):
    """The checks of ``convert matconvnet|torch`` that need no TensorFlow (run before it)."""
    import os

    from tfrestore.utils.files import check_output

    source, output = args.checkpoint, args.output
    if not (output.endswith(".weights.h5") or output.endswith(".keras")):
        raise ValueError(f"output must end in .keras or .weights.h5, got {output!r}")
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{args.kind} file {source!r} does not exist")
    check_output(output, "output", args.overwrite, (source,))
    is_mat = not source.lower().endswith((".pth", ".pt"))
    if (args.kind == "matconvnet") != is_mat:
        other = "matconvnet" if is_mat else "torch"
        raise ValueError(f"{source!r} looks like a {other} file: use `tfrestore convert {other}`")


def _convert_released(args):
    from tfrestore.utils.files import atomic_output

    source, output = args.checkpoint, args.output
    _check_released(args)
    from tfrestore.models.released import load_released_weights, read_released
    from tfrestore import models

    released = read_released(source)
    builder = "FFDNet" if released.architecture == "ffdnet" else "DnCNN"
    model = load_released_weights(getattr(models, builder)(**released.builder_args()), released)
    with atomic_output(output) as tmp:
        if output.endswith(".keras"):
            model.save(tmp)
        else:
            model.save_weights(tmp)
    args_text = ", ".join(f"{k}={v!r}" for k, v in released.builder_args().items())
    print(
        f"converted {builder} ({len(released.convolutions)} convolutions, "
        f"{model.count_params():,} parameters) -> {output}"
    )
    if output.endswith(".weights.h5"):
        print(f"load with: tfrestore.models.{builder}({args_text}).load_weights({output!r})")
    return 0


def add_parser(subparsers, parents=(), formatter_class=argparse.HelpFormatter, wrap=None):
    """Register ``convert`` (with its ``adm`` sub-command) on an argparse
    ``subparsers`` object; the handler is stored as ``func``. Imports no TensorFlow."""
    wrap = wrap or (lambda text: text)
    convert = subparsers.add_parser(
        "convert",
        help="convert PyTorch checkpoints to Keras weights (no torch needed)",
        description=wrap(_DESCRIPTION),
        parents=list(parents),
        formatter_class=formatter_class,
    )
    kinds = convert.add_subparsers(
        dest="kind", metavar="{adm,matconvnet,torch}", parser_class=type(convert), help="the checkpoint's model"
    )
    kinds.required = True
    adm = kinds.add_parser(
        "adm",
        help="guided-diffusion ADM UNet (e.g. 256x256_diffusion_uncond.pt)",
        description=wrap(
            "Convert an openai/guided-diffusion UNet checkpoint; keys and shapes are checked "
            "strictly against the hyper-parameters."
        ),
        parents=list(parents),
        formatter_class=formatter_class,
    )
    adm.add_argument("checkpoint", help="input .pt/.pth (PyTorch zip format)")
    adm.add_argument("output", help="output .weights.h5 or .npz")
    group = adm.add_mutually_exclusive_group()
    group.add_argument(
        "--preset",
        default="adm_256_uncond",
        choices=PRESET_NAMES,
        help="architecture preset (default: adm_256_uncond)",
    )
    group.add_argument(
        "--config",
        help="JSON file of guided-diffusion hyper-parameters. The attention flags (num_heads, "
        "num_head_channels, num_heads_upsample, use_new_attention_order) cannot be checked from "
        "the tensor shapes: use --verify",
    )
    adm.add_argument(
        "--verify",
        metavar="IO.npz",
        help="reference outputs of the original model (.npz with x, t, out and optionally h; "
        "NHWC): the converted UNet must reproduce them, else nothing is written",
    )
    adm.add_argument("--overwrite", action="store_true", help="replace an existing output")
    adm.set_defaults(func=_convert_adm, precheck=_check_adm)
    for kind, what, example in (
        ("matconvnet", "MatConvNet simplenn .mat (MATLAB v7.3)", "FFDNet_color.mat"),
        ("torch", "PyTorch state dict .pth (zip or legacy format)", "dncnn_25.pth"),
    ):
        p = kinds.add_parser(
            kind,
            help=f"the authors' FFDNet/DnCNN weights as a {what}, e.g. {example}",
            description=wrap(
                f"Convert released FFDNet/DnCNN weights ({what}) into a tfrestore model; the "
                "architecture is read from the file. Output: .keras (the whole model) or "
                ".weights.h5 (weights only; the builder call to load them is printed)."
            ),
            parents=list(parents),
            formatter_class=formatter_class,
        )
        p.add_argument("checkpoint", help=f"input {example}")
        p.add_argument("output", help="output .keras or .weights.h5")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output")
        p.set_defaults(func=_convert_released, precheck=_check_released)
    return convert


def build_parser(prog="tfrestore convert"):
    parser = argparse.ArgumentParser(prog=prog.rsplit(" ", 1)[0])
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    return parser
