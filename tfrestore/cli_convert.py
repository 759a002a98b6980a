"""Command line: ``tfrestore convert adm in.pt out.weights.h5 [--preset adm_256_uncond]``.

Also ``python -m tfrestore convert adm ...``. It sits at the top layer (next to
:mod:`tfrestore.cli`) because it ties the generic reader of :mod:`tfrestore.convert`
to the ADM model of :mod:`tfrestore.diffusion`. The output format follows the
extension: ``.weights.h5`` (Keras ``ADMUNet.save_weights``; load with
``ADMUNet.from_preset(...).load_weights(path)`` or ``DiffLoss(weights=path)``) or
``.npz`` (converted arrays keyed by the PyTorch names, Keras layout).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "main", "build_parser"]


def _convert_adm(args):
    import numpy as np

    from tfrestore.convert import TorchCheckpointError
    from tfrestore.diffusion.adm_weights import (
        ADMConversionError,
        convert_adm,
        load_adm_weights,
    )
    from tfrestore.diffusion.config import adm_config
    from tfrestore.diffusion.unet import ADMUNet

    output = args.output
    if not (output.endswith(".weights.h5") or output.endswith(".npz")):
        print(f"error: output must end in .weights.h5 or .npz, got {output!r}", file=sys.stderr)
        return 2
    try:
        if args.config:
            with open(args.config) as f:
                config = adm_config(json.load(f))
        else:
            config = adm_config(args.preset)
        weights = convert_adm(args.checkpoint, config)
    except (ADMConversionError, TorchCheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n_params = sum(int(v.size) for v in weights.values())
    verified = ""
    if args.verify or not output.endswith(".npz"):
        unet = ADMUNet(**config)
        try:
            load_adm_weights(unet, weights, verify=args.verify)
        except (ADMConversionError, FileNotFoundError) as exc:
            print(f"error: {exc} Nothing was written.", file=sys.stderr)
            return 1
        if args.verify:
            verified = f", outputs match {args.verify}"
    if output.endswith(".npz"):
        np.savez(output, **weights)
    else:
        unet.save_weights(output)
    print(f"converted {len(weights)} tensors ({n_params:,} parameters) -> {output}{verified}")
    return 0


def add_parser(subparsers):
    """Register ``convert`` (with its ``adm`` sub-command) on an argparse
    ``subparsers`` object; the handler is stored as ``func``."""
    from tfrestore.diffusion.config import ADM_PRESETS

    convert = subparsers.add_parser(
        "convert", help="convert PyTorch checkpoints to Keras weights (no torch needed)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = convert.add_subparsers(dest="kind", metavar="{adm}")
    kinds.required = True
    adm = kinds.add_parser(
        "adm", help="guided-diffusion ADM UNet (e.g. 256x256_diffusion_uncond.pt)",
        description="Convert an openai/guided-diffusion UNet checkpoint; keys and shapes "
        "are checked strictly against the hyper-parameters.",
    )
    adm.add_argument("checkpoint", help="input .pt/.pth (PyTorch zip format)")
    adm.add_argument("output", help="output .weights.h5 or .npz")
    group = adm.add_mutually_exclusive_group()
    group.add_argument("--preset", default="adm_256_uncond", choices=sorted(ADM_PRESETS),
                       help="architecture preset (default: adm_256_uncond)")
    group.add_argument("--config", help="JSON file of guided-diffusion hyper-parameters. "
                       "The attention flags (num_heads, num_head_channels, "
                       "num_heads_upsample, use_new_attention_order) cannot be checked "
                       "from the tensor shapes: use --verify")
    adm.add_argument("--verify", metavar="IO.npz",
                     help="reference outputs of the original model (.npz with x, t, out "
                     "and optionally h; NHWC): the converted UNet must reproduce them, "
                     "else nothing is written")
    adm.set_defaults(func=_convert_adm)
    return convert


def build_parser(prog="tfrestore convert"):
    parser = argparse.ArgumentParser(prog=prog.rsplit(" ", 1)[0])
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    return parser


def main(argv=None):
    """Entry point for ``tfrestore convert ...``: ``argv`` excludes the program and
    the word ``convert`` (``main(["adm", "in.pt", "out.weights.h5"])``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(["convert", *argv])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
