"""Command-line driver shared by ``train/<task>.py`` and ``tfrestore train <task>``."""

from __future__ import annotations

import argparse
import json
import os

from tfrestore.training.config import TASK_NAMES, ConfigError
from tfrestore.utils.command import RenamedFlag

__all__ = ["add_train_arguments", "check_training", "run_training", "script_main", "TASK_HELP"]

TASK_HELP = {
    "denoise": "Gaussian denoising (e.g. DnCNN / FFDNet / LiuDenoiser)",
    "super_resolution": "bicubic x2/x3/x4 super-resolution (e.g. EDSR)",
    "dehaze": "synthetic-haze removal (e.g. UNet)",
    "derain": "synthetic rain-streak removal (e.g. UNet)",
    "lowlight": "low-light enhancement with Poisson-Gaussian noise (e.g. UNet)",
}


# Integer options that set a config key: (argument dest, dotted config key).
_SHORTCUTS = (
    ("epochs", "train.epochs"),
    ("steps_per_epoch", "train.steps_per_epoch"),
    ("batch_size", "data.batch_size"),
    ("crop_size", "data.crop_size"),
    ("seed", "seed"),
)


def add_train_arguments(parser, config_required=True, default_config=None):
    """Options of a training command (shared by the scripts and the CLI)."""
    parser.add_argument(
        "--config",
        "-c",
        required=config_required and default_config is None,
        default=default_config,
        help="training config: a YAML file, or the name of a shipped config ('tfrestore configs' "
        "lists them)" + (f"; default: {os.path.relpath(default_config)}" if default_config else ""),
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted path, YAML value), e.g. --set train.epochs=3 "
        "--set losses[1].loss_weight=0.1; repeatable",
    )
    parser.add_argument(
        "--output-dir",
        "-o",
        default=None,
        help="run directory (default: output.dir from the config, else runs/<name>)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in the run directory, deleting the files an earlier run wrote there "
        "(backup, history.csv, best.keras, final.keras, TensorBoard logs, report; other files "
        "stay). Without it, a directory holding results is only reused to resume an interrupted "
        "run with the same config; a finished run or a changed config is refused "
        "(config: output.overwrite)",
    )
    parser.add_argument("--fresh", action=RenamedFlag, new="--overwrite")
    parser.add_argument(
        "--init",
        default=None,
        metavar="SOURCE",
        help="fine-tune: initialise the model's weights from a preset name (e.g. ffdnet_color), "
        "a .keras file (copied layer by layer by name) or a .weights.h5 file (the exact "
        "architecture); shortcut for --set model.init=SOURCE. A resumed run keeps its backup's "
        "weights",
    )
    parser.add_argument(
        "--allow-import",
        dest="allow_import",
        action="append",
        default=[],
        metavar="PKG",
        help="let model.type name a function of your own package, 'PKG.module:function' (a "
        "prefix match on the module's package); without it a config is data and any "
        "'module:function' in it is refused. Repeatable",
    )
    for dest, key in _SHORTCUTS:
        flag = "--" + dest.replace("_", "-")
        parser.add_argument(flag, type=int, default=None, help=f"shortcut for --set {key}=N")
    parser.add_argument("--crop", action=RenamedFlag, new="--crop-size", nargs="?")
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="shortcut for --set train.mixed_precision=true (mixed_float16)",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="skip the final held-out evaluation (table, grid.png, loss_curve.png)",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="Keras progress output: 0 silent, 1 progress bars, 2 one line per epoch",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (defaults filled in) and exit",
    )
    parser.add_argument(
        "--help-config",
        action="store_true",
        help="list every config key with its default and meaning, and exit",
    )
    return parser


def _overrides(args):
    out = list(args.overrides)
    for dest, key in _SHORTCUTS:
        value = getattr(args, dest)
        if value is not None:
            out.append(f"{key}={value}")
    if args.mixed_precision:
        out.append("train.mixed_precision=true")
    if getattr(args, "init", None) is not None:
        out.append(f"model.init={json.dumps(args.init)}")  # a JSON string is a YAML string
    return out


def _allowed_imports(args):
    from tfrestore.training.builders import check_allowed_imports

    return check_allowed_imports(getattr(args, "allow_import", None) or (), "--allow-import")


def _task_mismatch(task, config_task, config, script):
    """One line naming both tasks and the command that trains the config as it is.

    >>> _task_mismatch("dehaze", "denoise", "denoise", script=False)
    "the config denoise trains 'denoise' (its key 'task'), not 'dehaze'; run 'tfrestore train
    --config denoise' (the task may be left out: the config names it) or give a dehaze config"
    """
    shown = config if " " not in str(config) else repr(str(config))
    command = f"'tfrestore train --config {shown}'"
    if script:
        command += f" or 'python train/{config_task}.py --config {shown}'"
    asked = f"'{task}' as train/{task}.py does" if script else repr(task)
    return (
        f"the config {config} trains {config_task!r} (its key 'task'), not {asked}; run "
        f"{command}{'' if script else ' (the task may be left out: the config names it)'} or "
        f"give a {task} config"
    )


def check_training(task, args, script=False):
    """The part of :func:`run_training` that needs no TensorFlow: ``--help-config``, the config
    (file, keys, ``--set`` values, types) and ``--print-config``. Returns an exit code when
    the command is finished, else None (the config, loaded here once, is kept on ``args`` as a
    :class:`~tfrestore.training.run_config.RunConfig`). The command
    line runs it before importing TensorFlow, so that a mistake fails at once. ``task``: None
    takes the config's task; else the config's must equal it (``script``: the
    ``train/<task>.py`` script asks, and the message names the script too)."""
    from tfrestore.training.config import check_sources, describe_config, dump_config
    from tfrestore.training.run_config import load_run_config

    if args.help_config:
        print(describe_config())
        return 0
    if not args.config:
        raise ConfigError(
            "--config is required: a YAML file or a shipped config name ('tfrestore configs' "
            "lists them)"
        )
    rc = load_run_config(args.config, overrides=_overrides(args))
    if task is not None and rc.task != task:
        raise ConfigError(_task_mismatch(task, rc.task, args.config, script))
    if args.print_config:
        print(dump_config(rc.raw), end="")
        return 0
    check_sources(rc.raw)
    args.resolved_config = rc
    return None


def run_training(task, args):
    """Run (or describe) a training from parsed arguments; returns an exit code.

    Mistakes in the config or the run directory raise ``ConfigError`` (a ``ValueError``) or
    ``ImageFileError``; the command line prints them as one line.
    """
    rc = getattr(args, "resolved_config", None)
    if rc is None:
        code = check_training(task, args)
        if code is not None:
            return code
        rc = args.resolved_config
    from tfrestore.training.runner import train

    train(
        rc,
        output_dir=args.output_dir,
        overwrite=True if args.overwrite else None,
        report=False if args.no_report else None,
        verbose=args.verbose,
        allowed_imports=_allowed_imports(args),
    )
    return 0


def script_main(task, argv=None, default_config=None, description=None):
    """``main()`` of a ``train/<task>.py`` script."""
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r}; choose from {TASK_NAMES}")
    from tfrestore.utils.command import CliParser

    parser = CliParser(
        prog=f"train/{task}.py",
        description=description or f"Train a model for {TASK_HELP[task]}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(parser, default_config=default_config)
    parser.add_argument(
        "--debug", action="store_true", help="print tracebacks and TensorFlow's log messages"
    )
    args = parser.parse_args(argv)
    from tfrestore.utils.command import run_command

    return run_command(
        lambda a: run_training(task, a),
        args,
        debug=args.debug,
        precheck=lambda a: check_training(task, a, script=True),
    )
