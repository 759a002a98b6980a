"""The ``tfrestore`` command line (also ``python -m tfrestore``).

Building the parser imports neither TensorFlow nor Keras, so ``tfrestore --help`` and every
``tfrestore <command> --help`` answer at once; a command imports TensorFlow when it runs, with
TensorFlow's start-up log hidden (:mod:`tfrestore.utils.tf_logging`). A user error prints one ``error:``
line on stderr and exits with code 2; ``--debug`` prints the traceback and TensorFlow's log.
Help texts are written here (plain text), not taken from docstrings.
"""

from __future__ import annotations

import argparse
import os
import sys

from tfrestore.utils.command import (
    CliError,
    CliParser,
    check_output_path,
    check_seed,
    one_line,
    run_command,
)
from tfrestore.utils.files import OutputExistsError, check_output

__all__ = ["main", "build_parser", "run_command", "CliError", "CliParser"]

_DESCRIPTION = (
    "Semantic image-restoration losses and models for TensorFlow / Keras 3: train, evaluate and "
    "apply restoration models, convert checkpoints, plot feature spaces."
)
_EPILOG = (
    "'tfrestore COMMAND --help' explains the options of a command.\n\n"
    + "A mistake on the command line or in its files prints one 'error:' line and exits with code "
    "2. --debug (before or after the command) prints the full traceback instead and leaves "
    "TensorFlow's log on. TensorFlow's log is otherwise quiet (TF_CPP_MIN_LOG_LEVEL=2 unless the "
    "variable is set; TF_CPP_MIN_LOG_LEVEL=0 shows everything)."
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the task list's layout; descriptions are wrapped by :func:`_wrap`."""


def _wrap(text):
    import textwrap

    return "\n\n".join(textwrap.fill(par, 90) for par in text.split("\n\n"))


def _tile_value(text):
    """``--tile``: an int, ``"auto"`` or None (``off``)."""
    if text is None or isinstance(text, int):
        return text
    tile = str(text).strip().lower()
    if tile in ("auto", "off"):
        return None if tile == "off" else "auto"
    try:
        return int(tile)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a tile side in pixels, 'auto' or 'off', got {text!r}"
        ) from None


def _check_inference_args(args):
    """Tiling and memory flags, checked before a model is loaded (fail fast, name the flag)."""
    args.tile = _tile_value(args.tile)
    if isinstance(args.tile, int):
        if args.tile < 1:
            raise CliError(
                f"--tile must be a positive tile side in pixels, got {args.tile}; use --tile off "
                "to process the whole image at once, or --tile auto (the default) to tile when "
                "the image does not fit the memory budget"
            )
    if args.overlap is not None and args.overlap < 0:
        raise CliError(f"--overlap must be >= 0 pixels, got {args.overlap}")
    if isinstance(args.tile, int) and args.overlap is not None and args.overlap >= args.tile:
        raise CliError(
            f"--overlap ({args.overlap}) must be smaller than --tile ({args.tile}); use a larger "
            "--tile or a smaller --overlap"
        )
    if args.tile_batch is not None and args.tile_batch < 1:
        raise CliError(f"--tile-batch must be a positive number of tiles, got {args.tile_batch}")
    if args.max_memory is not None:
        from tfrestore.inference.memory import parse_memory

        try:
            parse_memory(args.max_memory)
        except ValueError as e:
            raise CliError(f"--max-memory: {e}") from None


def _check_sigma(sigma, image_max=1.0):
    """``--sigma`` is a standard deviation in image units: 25 on [0, 1] images is a mistake."""
    if sigma is None:
        return None
    if sigma < 0:
        raise CliError(f"--sigma must be >= 0, got {sigma:g}")
    if sigma > 1.0 and image_max <= 1.0:
        raise CliError(
            f"--sigma {sigma:g} is above the images' data range [0, 1] (noise levels are in image "
            f"units); did you mean --sigma {sigma:g}/255?"
        )
    return sigma


def _check_model_inputs(args, model):
    """Two-input models (image, noise level) need ``--sigma``."""
    if len(getattr(model, "inputs", None) or []) >= 2 and args.sigma is None:
        raise CliError(
            f"the model {args.model} ({model.name}) takes a noise-level input besides the "
            "image; pass --sigma, e.g. --sigma 25/255"
        )


def _check_writable(path, flag, overwrite, inputs=()):
    """Refuse an output that cannot be written and an existing file (above all an input)
    unless --overwrite (:func:`tfrestore.utils.files.check_output`)."""
    try:
        check_output(path, flag, overwrite, inputs, input_overwrite=True)
    except OutputExistsError as e:
        raise CliError(str(e)) from None


def _check_image_extension(path, flag):
    from PIL import Image

    ext = os.path.splitext(path)[1].lower()
    if ext not in Image.registered_extensions():
        raise CliError(
            f"{flag} {path}: cannot tell the image format from the extension {ext or '(none)'!r}; "
            "use e.g. .png, .tif, .jpg, .bmp or .webp"
        )


#: Names of ``tfrestore.models.presets.PRESETS`` (listed here so that a missing ``--model`` is
#: reported without importing TensorFlow; a test keeps the two equal).
MODEL_PRESET_NAMES = (
    "ffdnet_color",
    "ffdnet_gray",
    "ffdnet_color_clip",
    "ffdnet_gray_clip",
    "cdncnn_b_color",
    "dncnn_s50_color",
    "dncnn_s25_gray",
    "dncnn_s25_gray_kair",
)


def _check_model_path(path):
    """``--model`` names an existing file or folder or a preset (the messages of
    :func:`tfrestore.inference.restore.load_model`, without TensorFlow)."""
    if os.path.exists(path):
        if os.path.isdir(path) and not any(
            os.path.isfile(os.path.join(path, n)) for n in ("best.keras", "final.keras")
        ):
            raise FileNotFoundError(
                f"{path} is a directory without best.keras or final.keras; pass a .keras file "
                "or a training run directory"
            )
        return
    if path in MODEL_PRESET_NAMES:
        return
    if os.sep not in path and "." not in path:
        import difflib

        close = difflib.get_close_matches(path, MODEL_PRESET_NAMES, n=1)
        if close:
            raise FileNotFoundError(
                f"no model file, run directory or preset called {path!r}; did you mean the "
                f"preset {close[0]!r}?"
            )
    raise FileNotFoundError(
        f"model file or run directory not found: {path} (nor a preset name: see "
        "tfrestore.models.list_presets())"
    )


def _check_input_file(path):
    if not os.path.isfile(path):
        what = "is a folder, not an image file" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"image file {path!r} {what}")


def _check_image_source(text, flag):
    """A folder or file that does not exist (a glob is checked when it is expanded)."""
    if text == "default" or any(c in text for c in "*?["):
        return
    if not os.path.exists(text):
        raise FileNotFoundError(f"{flag}: image folder {text!r} does not exist")


# --------------------------------------------------------------------------- subcommands


def _add_command(sub, name, help, description, epilog=None):
    """A subcommand parser: wrapped plain-text description, ``--debug`` accepted after it too."""
    return sub.add_parser(
        name,
        help=help,
        description=_wrap(description),
        epilog=epilog,
        formatter_class=_Formatter,
        parents=[_debug_option()],
    )


def _debug_option():
    parent = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand without --debug leaves the top-level value alone.
    parent.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print tracebacks and TensorFlow's log messages",
    )
    return parent


# --------------------------------------------------------------------------- train


def _add_train(sub):
    from tfrestore.training.config import TASK_NAMES
    from tfrestore.training.script import TASK_HELP, add_train_arguments

    p = _add_command(
        sub,
        "train",
        help="train a restoration model from a YAML config",
        description="Train a restoration model with model.fit from a YAML config (model, weighted "
        "losses, data, optimizer/schedule, epochs): a shipped config's name ('tfrestore configs' "
        "lists them) or a file, e.g. 'tfrestore train --config denoise_demo' (the task is "
        "optional: the config names it). Writes config.yaml, history.csv, TensorBoard logs, "
        "best.keras, "
        "final.keras and a held-out report to the run directory; re-running a killed run with "
        "the same config resumes it. A run directory holding other results (a finished run, a "
        "different config) is refused unless --overwrite is given; two trainings cannot share a "
        "run directory (it is locked while one runs).",
        epilog="tasks:\n" + "\n".join(f"  {t:<17} {TASK_HELP[t]}" for t in TASK_NAMES),
    )
    p.add_argument(
        "task",
        nargs="?",
        choices=TASK_NAMES,
        metavar="task",
        help="optional, the config names it (a different task is refused): one of "
        + ", ".join(TASK_NAMES),
    )
    add_train_arguments(p, config_required=False)
    p.set_defaults(func=_cmd_train, precheck=_check_train)


def _check_train(args):
    """The config (file, keys, --set values and types), --help-config and --print-config,
    before TensorFlow is imported."""
    from tfrestore.training.script import check_training

    return check_training(args.task, args)


def _cmd_train(args):
    from tfrestore.training.script import run_training

    return run_training(args.task, args)


# ------------------------------------------------------------------ shared inference options


def _int_option(p, flag, default, help):
    p.add_argument(flag, type=int, default=default, help=f"{help} (default %(default)s)")


def _add_inference_options(p):
    p.add_argument(
        "--model",
        "-m",
        required=True,
        help="trained model: a .keras file, a training run directory (uses best.keras, else "
        "final.keras) or a preset name such as ffdnet_color (the authors' released weights; "
        "python -c 'import tfrestore.models as m; print(m.list_presets())' lists them)",
    )
    p.add_argument(
        "--tile",
        type=_tile_value,
        default="auto",
        metavar="N|auto|off",
        help="tile side in input pixels for tiled inference; 'auto' (default): the whole image "
        "when it fits the memory budget (--max-memory), else the largest tiles that fit; 'off': "
        "the whole image at once, whatever its size. Tiles overlap by the model's receptive "
        "field, so the result equals the whole-image result",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="overlap of neighbouring tiles in input pixels (default and minimum: the model's "
        "receptive field - 1; a smaller value is raised to it, with a note)",
    )
    p.add_argument(
        "--receptive-field",
        default=None,
        metavar="N|auto",
        help="model receptive field in pixels (default: measured when tiling; 'auto' also "
        "prints it): blending ignores each tile's inexact border",
    )
    p.add_argument(
        "--tile-batch",
        type=int,
        default=None,
        help="tiles per model call (default 4 with --tile N, 1 with --tile auto)",
    )
    p.add_argument(
        "--max-memory",
        default=None,
        metavar="SIZE",
        help="memory budget of inference, e.g. 4G or 512M (default: $TFRESTORE_MAX_MEMORY, else "
        "half the available RAM, at most 70%% of the GPU's memory); larger images are tiled",
    )
    p.add_argument(
        "--sigma",
        type=str,
        default=None,
        help="noise level (image units, e.g. 25/255) for two-input models such as FFDNet",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that already exist (by default an existing output, and "
        "above all the input image itself, is refused)",
    )


def _parse_number(text, name):
    if text is None:
        return None
    from tfrestore.training.config import resolve_fractions

    value = resolve_fractions(text)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CliError(f"{name} must be a number or a fraction like 25/255, got {text!r}") from None


def _receptive_field(args, model, sigma=None):
    rf = args.receptive_field
    if rf is None:
        return None
    if rf == "auto":
        from tfrestore.inference.restore import measured_receptive_field

        value = measured_receptive_field(model, sigma=sigma)
        print(f"receptive field: {value if value else 'unbounded (global operations)'} px")
        return value
    try:
        value = int(rf)
    except ValueError:
        raise CliError(f"--receptive-field must be an integer or 'auto', got {rf!r}") from None
    if value < 1:
        raise CliError(f"--receptive-field must be a positive number of pixels, got {value}")
    return value


def _plan_options(args):
    return dict(
        tile_size=args.tile,
        overlap=args.overlap,
        batch_size=args.tile_batch,
        max_memory=args.max_memory,
    )


# --------------------------------------------------------------------------- restore


def _add_restore(sub):
    p = _add_command(
        sub,
        "restore",
        help="restore one image with a trained model (tiled for large images)",
        description="Restore an image file with a trained model. An image whose inference "
        "would need more memory than the budget (--max-memory) is processed in overlapping "
        "tiles blended in host memory, with the same result as the whole image; a line says so.",
    )
    p.add_argument("input", help="input image file (PNG, JPEG, BMP, GIF, WebP, TIFF)")
    p.add_argument(
        "output",
        help="output image file (format from the extension); greyscale inputs give greyscale "
        "outputs, 16-bit inputs 16-bit outputs (.png, or .tif for greyscale)",
    )
    _add_inference_options(p)
    p.set_defaults(func=_cmd_restore, precheck=_check_restore)


def _check_restore(args):
    """Every check of ``tfrestore restore`` that needs no TensorFlow (run before importing it)."""
    _check_inference_args(args)
    _check_writable(args.output, "output", args.overwrite, inputs=[args.input])
    _check_image_extension(args.output, "output")
    _check_sigma(_parse_number(args.sigma, "--sigma"))
    _check_model_path(args.model)
    _check_input_file(args.input)


def _cmd_restore(args):
    import numpy as np

    from tfrestore.data import read_image
    from tfrestore.data.io import image_details, read_alpha
    from tfrestore.inference.restore import (
        load_model,
        predict_image,
        save_image,
        supports_16_bit,
        supports_alpha,
        to_grey,
    )

    sigma = _parse_number(args.sigma, "--sigma")  # checked, with the rest, by _check_restore
    # A readable input is checked before the model loads (a missing one: after, as before).
    details = image_details(args.input) if os.path.isfile(args.input) else None
    if details is not None and details.alpha and not supports_alpha(args.output):
        raise CliError(
            f"{args.input} has an alpha channel (transparency), which "
            f"{os.path.splitext(args.output)[1]} output cannot store; use a .png (or .tif, "
            ".webp) output to keep it, or remove the alpha channel from the input first"
        )
    model = load_model(args.model)
    _check_model_inputs(args, model)
    channels = model.inputs[0].shape[-1] or 3
    image = read_image(args.input, channels=channels)
    details = details or image_details(args.input)
    out = predict_image(
        model,
        image,
        receptive_field=_receptive_field(args, model, sigma),
        sigma=sigma,
        on_note=lambda n: print(f"note: {n}"),
        **_plan_options(args),
    )
    notes = []
    if details.channels == 1 and out.shape[-1] == 3:
        out = to_grey(out)  # a grey input stays grey (the colour model saw R = G = B)
    if details.alpha:
        # The colour channels are restored; alpha is put back as it was (resized for SR).
        alpha = read_alpha(args.input)
        if alpha.shape[:2] != out.shape[:2]:
            alpha = _resize_alpha(alpha, out.shape[:2])
            notes.append(
                f"note: the alpha channel was resized from {image.shape[1]}x{image.shape[0]} to "
                f"{out.shape[1]}x{out.shape[0]} (bicubic); the colour channels were restored"
            )
        else:
            notes.append("note: the alpha channel is carried over unchanged (colour restored)")
        out = np.concatenate([out, alpha], axis=-1)
    bit_depth = 8
    if details.bit_depth == 16:
        if supports_16_bit(args.output, out.shape[-1]):
            bit_depth = 16
        else:
            notes.append(
                f"note: the input is 16-bit but {os.path.splitext(args.output)[1]} output is "
                "written with 8 bits; use a .png output to keep 16 bits"
            )
    save_image(args.output, out, bit_depth=bit_depth)
    for n in notes:
        print(n)
    print(
        f"{args.input} ({image.shape[1]}x{image.shape[0]}) -> {args.output} "
        f"({out.shape[1]}x{out.shape[0]})"
    )
    return 0


def _resize_alpha(alpha, size):
    from PIL import Image

    h, w = size
    import numpy as np

    plane = Image.fromarray(np.ascontiguousarray(alpha[..., 0], np.float32))  # mode "F"
    return np.clip(np.asarray(plane.resize((w, h), Image.BICUBIC)), 0.0, 1.0)[..., None]


# --------------------------------------------------------------------------- eval


def _add_eval(sub):
    p = _add_command(
        sub,
        "eval",
        help="PSNR/SSIM/LPIPS of a trained model on a set of images (table + CSV)",
        description="Evaluate a trained model: for every clean image, the degraded input and the "
        "restored output are compared with it (PSNR, SSIM, and LPIPS when its weights are "
        "available). Degraded inputs come from --lq (real pairs, matched by file name) or are "
        "synthesised with --degradation, or with the degradation of the training run's "
        "config.yaml when --model is (in) a run directory.",
    )
    _add_inference_options(p)
    p.add_argument(
        "--data",
        "-d",
        required=True,
        help="clean images: a folder, a glob, one file, or 'default' (the two embedded photographs "
        "held out from training by the default split)",
    )
    p.add_argument(
        "--lq", default=None, help="folder of degraded inputs matching --data by file name"
    )
    p.add_argument(
        "--degradation",
        default=None,
        help='synthetic degradation as YAML, e.g. "{type: gaussian_noise, sigma: 25/255}" or '
        'the config spelling "{type: gaussian_noise, args: {sigma: 25/255}}" (default: the '
        "run's config)",
    )
    _int_option(p, "--scale", 1, "SR scale of --lq pairs")
    _int_option(p, "--seed", 0, "seed of the synthetic degradation")
    p.add_argument("--max-images", type=int, default=None, help="evaluate at most this many images")
    p.add_argument(
        "--color",
        choices=("rgb", "y", "gray"),
        default="rgb",
        help="metric colour space ('y' = BT.601 luma, the SR-paper convention; "
        "default %(default)s)",
    )
    p.add_argument(
        "--crop-border",
        type=int,
        default=0,
        help="border pixels excluded from the metrics (default %(default)s)",
    )
    p.add_argument(
        "--lpips",
        choices=("auto", "on", "off"),
        default="auto",
        help="LPIPS column: auto = when its weights are available (default %(default)s)",
    )
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--save-dir", default=None, help="write the restored images to this folder")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar over the images")
    p.set_defaults(func=_cmd_eval, precheck=_check_eval)


def _check_eval(args):
    """Every check of ``tfrestore eval`` that needs no TensorFlow (run before importing it)."""
    _check_inference_args(args)
    check_seed(args.seed, "--seed")
    if args.csv:
        _check_writable(args.csv, "--csv", args.overwrite)
    if args.save_dir:
        check_output_path(args.save_dir, "--save-dir", folder=True)
    _check_sigma(_parse_number(args.sigma, "--sigma"))
    _check_model_path(args.model)
    _check_image_source(args.data, "--data")
    if args.lq:
        _check_image_source(args.lq, "--lq")


def _run_config_for(model_path):
    from tfrestore.training.config import load_saved_config

    d = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    cfg_path = os.path.join(d, "config.yaml")
    return load_saved_config(cfg_path) if os.path.isfile(cfg_path) else None


def _unique_names(paths):
    """A row/file name per image: the file stem, or the whole file name where stems collide
    (``x.png`` and ``x.jpg`` must not share a table row nor overwrite each other's output)."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    names = [os.path.basename(p) if stems.count(s) > 1 else s for p, s in zip(paths, stems)]
    seen = {}
    for i, name in enumerate(names):  # same file name in two folders of a glob
        if name in seen:
            names[i] = os.path.relpath(paths[i]).replace(os.sep, "_")
        seen[name] = i
    return names


def _cmd_eval(args):
    import numpy as np
    import yaml

    from tfrestore import data
    from tfrestore.inference.evaluate import (
        add_mean_row,
        evaluate_degraded,
        evaluate_model,
        format_table,
        write_csv,
    )
    from tfrestore.inference.restore import load_model, save_image
    from tfrestore.training.config import resolve_fractions

    sigma = _parse_number(args.sigma, "--sigma")  # checked, with the rest, by _check_eval
    model = load_model(args.model)
    _check_model_inputs(args, model)
    channels = model.inputs[0].shape[-1] or 3
    if args.data == "default":
        names = list(data.DEFAULT_SPLITS["test"])
        clean = list(zip(names, data.default_images(names)))
    else:
        paths = data.list_images(args.data)
        clean = list(zip(_unique_names(paths), paths))
    if args.max_images:
        clean = clean[: args.max_images]
    if args.save_dir:
        sources = [p for _, p in clean if isinstance(p, str)]
        for name, _ in clean:
            _check_writable(
                os.path.join(args.save_dir, f"{name}.png"), "--save-dir", args.overwrite, sources
            )

    def load(x):
        return x if isinstance(x, np.ndarray) else data.read_image(x, channels=channels)

    if args.lq:
        if args.data == "default":
            raise CliError("--lq needs --data to be a folder of clean images")
        lq_paths, gt_paths = data.match_pairs(
            data.list_images(args.lq), [p for _, p in clean], scale=args.scale
        )
        items = [
            (os.path.splitext(os.path.basename(gt))[0], load(lq), load(gt))
            for lq, gt in zip(lq_paths, gt_paths)
        ]
        degradation_text = f"real pairs from {args.lq}"
    else:
        if args.degradation:
            try:
                spec = resolve_fractions(yaml.safe_load(args.degradation))
            except yaml.YAMLError as e:
                raise CliError(f"--degradation is not valid YAML ({one_line(e)})") from None
            if isinstance(spec, str):
                spec = {"type": spec}
            if not isinstance(spec, dict):
                raise CliError(
                    "--degradation must be a degradation name or a YAML mapping, e.g. "
                    f'"{{type: gaussian_noise, sigma: 25/255}}"; got {args.degradation!r}'
                )
            try:
                deg = data.get_degradation(spec)
            except (TypeError, ValueError) as e:
                raise CliError(f"--degradation {args.degradation!r}: {one_line(e)}") from None
        else:
            cfg = _run_config_for(args.model)
            if cfg is None:
                raise CliError(
                    "no --lq and no --degradation given, and the model is not in a "
                    "training run directory "
                    "with config.yaml; say how to degrade the clean images"
                )
            deg = data.build_degradation(cfg["data"]["degradation"])
        degradation_text = repr(deg)
    lp = {"auto": "auto", "on": True, "off": False}[args.lpips]
    options = dict(
        receptive_field=_receptive_field(args, model, sigma),
        sigma=sigma,
        color=args.color,
        crop_border=args.crop_border,
        lpips=lp,
        return_images=True,
        progress=not args.quiet,
        **_plan_options(args),
    )
    if args.lq:
        rows, notes, images = evaluate_model(model, items, **options)
    else:
        clean_images = ((name, load(src)) for name, src in clean)
        rows, notes, images = evaluate_degraded(model, clean_images, deg, args.seed, **options)
    table = add_mean_row(rows)
    print(f"model: {args.model}\ndegradation: {degradation_text}\n")
    print(format_table(table))
    for n in notes:
        print(f"note: {n}")
    if args.csv:
        write_csv(table, args.csv)
        print(f"table written to {args.csv}")
    if args.save_dir:
        for name, _, restored, _ in images:
            save_image(os.path.join(args.save_dir, f"{name}.png"), restored)
        print(f"restored images written to {args.save_dir}")
    return 0


# --------------------------------------------------------------------------- parser / main


# --------------------------------------------------------------------------- configs


def _add_configs(sub):
    p = _add_command(
        sub,
        "configs",
        help="list the shipped training configs, or print one",
        description="The training configs shipped with tfrestore (train/configs/ of the source "
        "tree). 'tfrestore train --config NAME' accepts these names; copy one with "
        "'tfrestore configs show NAME > my.yaml' to edit it.",
    )
    actions = p.add_subparsers(
        dest="action", metavar="action", parser_class=CliParser, help="list (default) or show"
    )
    actions.add_parser(
        "list", help="name and description of each config (the default)", parents=[_debug_option()]
    )
    show = actions.add_parser("show", help="print a config's YAML text", parents=[_debug_option()])
    show.add_argument("name", help="config name (from 'tfrestore configs')")
    p.set_defaults(func=_cmd_configs, tensorflow=False)


def _cmd_configs(args):
    from tfrestore.training.config import find_config, shipped_configs

    if args.action == "show":
        with open(find_config(args.name, files=False), encoding="utf-8") as f:
            sys.stdout.write(f.read())
        return 0
    configs = shipped_configs()
    width = max(map(len, configs), default=0)
    for name, info in configs.items():
        print(f"{name:<{width}}  {info.description}")
    return 0


# --------------------------------------------------------------------------- convert / viz


def _add_convert(sub):
    from tfrestore.cli_convert import add_parser

    add_parser(sub, parents=[_debug_option()], formatter_class=_Formatter, wrap=_wrap)


def _add_viz(sub):
    from tfrestore.cli_viz import EPILOG, add_arguments

    p = _add_command(
        sub,
        "viz",
        help="t-SNE map of backbone features of image sets (optional extra: tfrestore[viz])",
        description="Plot a t-SNE map of backbone features of image sets (e.g. clean, noisy and "
        "restored images): the feature space D2SM matches statistics in. Needs the viz extra "
        "(pip install 'tfrestore[viz]').",
        epilog=EPILOG,
    )
    add_arguments(p)
    p.set_defaults(func=_cmd_viz)


def _cmd_viz(args):
    from tfrestore.cli_viz import run

    return run(args)


# --------------------------------------------------------------------------- parser / main


def build_parser():
    """The full ``tfrestore`` argument parser (imports no TensorFlow)."""
    from tfrestore import __version__

    parser = CliParser(
        prog="tfrestore", description=_wrap(_DESCRIPTION), epilog=_wrap(_EPILOG),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"tfrestore {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error print the traceback (not one line); keep TensorFlow's log messages",
    )
    sub = parser.add_subparsers(
        dest="command",
        metavar="command",
        parser_class=CliParser,
        help="what to do ('tfrestore COMMAND --help' explains a command)",
    )
    sub.required = True
    _add_train(sub)
    _add_eval(sub)
    _add_restore(sub)
    _add_configs(sub)
    _add_convert(sub)
    _add_viz(sub)
    parser.set_defaults(tensorflow=True)
    return parser


def main(argv=None):
    """Entry point (``tfrestore`` console script and ``python -m tfrestore``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return run_command(
        args.func,
        args,
        debug=args.debug,
        tensorflow=args.tensorflow,
        precheck=getattr(args, "precheck", None),
    )


if __name__ == "__main__":
    sys.exit(main())
