"""Running a command-line command: usage mistakes and user errors as one ``error:`` line on
stderr with exit code 2, tracebacks only with ``--debug``. Shared by ``tfrestore`` (:mod:`tfrestore.cli`)
and the ``train/<task>.py`` scripts; imports no TensorFlow until a command runs."""

from __future__ import annotations

import argparse
import numbers
import os
import re
import sys

__all__ = [
    "CliParser",
    "CliError",
    "RenamedFlag",
    "one_line",
    "run_command",
    "check_output_path",
    "check_seed",
    "SEED_MAX",
]

#: largest seed every random generator tfrestore seeds accepts (NumPy's legacy seeding)
SEED_MAX = 2**32 - 1


class CliParser(argparse.ArgumentParser):
    """Usage mistakes as one ``error:`` line that names the command, exit code 2."""

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(2, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")


class RenamedFlag(argparse.Action):
    """A removed spelling of a flag: one usage-error line naming the new one (exit 2 with
    :class:`CliParser`). ``nargs`` defaults to 0; give the old flag's ``nargs`` (e.g.
    ``"?"``) so its value is not read as another argument.

    >>> parser = CliParser(prog="demo")
    >>> _ = parser.add_argument("--sigma", type=float)
    >>> _ = parser.add_argument("--noise", action=RenamedFlag, new="--sigma", nargs="?")
    >>> parser.parse_args(["--noise", "0.1"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """

    def __init__(self, option_strings, dest, new, nargs=0, **kwargs):
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed {self.new}: use {self.new}")


class CliError(Exception):
    """A command-line usage error: printed as one ``error:`` line, exit code 2."""


def check_output_path(path, flag, folder=False):
    """Refuse, before any work, an output ``path`` that cannot be written: a parent is a file,
    a file path that is a folder (or a ``folder=True`` path that is a file), or a nearest
    existing folder that is not writable. Raises :class:`CliError` naming ``flag``.

    >>> check_output_path(__file__ + "/out.png", "output")
    Traceback (most recent call last):
    ...
    tfrestore.utils.command.CliError: output .../command.py/out.png: .../command.py is a file, not a folder, so nothing can be written under it; choose another output path
    """
    full = os.path.abspath(os.fspath(path))
    if os.path.exists(full):
        if folder and not os.path.isdir(full):
            raise CliError(f"{flag} {path} is a file, not a folder; give a folder path")
        if not folder and os.path.isdir(full):
            raise CliError(
                f"{flag} {path} is a folder; give a file path, e.g. "
                f"{os.path.join(os.fspath(path), 'out.png')}"
            )
        target = full if folder else os.path.dirname(full)
    else:
        target = os.path.dirname(full)
        while not os.path.exists(target) and os.path.dirname(target) != target:
            target = os.path.dirname(target)
        if not os.path.isdir(target):
            raise CliError(
                f"{flag} {path}: {target} is a file, not a folder, so nothing can be written "
                "under it; choose another output path"
            )
    if not os.access(target, os.W_OK | os.X_OK):
        raise CliError(f"{flag} {path}: the folder {target} is not writable; choose another path")


def check_seed(value, name="--seed"):
    """``value`` as an int seed in ``[0, 2**32 - 1]`` (what NumPy, Python and TensorFlow all
    accept); otherwise ``ValueError`` naming ``name``.

    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    ValueError: --seed must be an integer from 0 to 4294967295, got -1; pick a seed in that range
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
        0 <= value <= SEED_MAX
    ):
        raise ValueError(
            f"{name} must be an integer from 0 to {SEED_MAX}, got {value!r}; pick a seed in that "
            "range"
        )
    return int(value)


#: ANSI escape sequences (colours, bold: Keras' messages carry them) and the wrapper Keras puts
#: around an error raised inside a layer's ``call``.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_KERAS_CALL = re.compile(r"Exception encountered when calling [\w.]+\.call\(\)\.\s*", re.S)
_KERAS_ARGS = re.compile(r"\s*Arguments received by [\w.]+\.call\(\):.*$", re.S)


def one_line(exc):
    """``exc``'s message as one line: ANSI escape codes removed, Keras' "Exception encountered
    when calling X.call()" wrapper (and its "Arguments received" list) replaced by the inner
    message.

    >>> one_line(ValueError("Exception encountered when calling InputCheck.call().\\n\\n"
    ...     "\\x1b[1mUNet: the input must be 64 pixels\\x1b[0m\\n\\nArguments received by "
    ...     "InputCheck.call():\\n  • x=tf.Tensor(shape=(1, 63, 63, 3))"))
    'UNet: the input must be 64 pixels'
    """
    text = _ANSI.sub("", str(exc)).strip()
    inner = _KERAS_CALL.sub("", text)
    if inner != text:
        text = _KERAS_ARGS.sub("", inner)
    text = " ".join(text.split())
    return text or type(exc).__name__


# The user's mistakes, printed as one line. ValueError covers ConfigError, RunDirError,
# ImageFileError, TorchCheckpointError, ADMConversionError...: their messages name the file or
# option and the fix.
_USER_ERRORS = (CliError, OSError, ValueError)


def run_command(func, args, debug=False, tensorflow=True, precheck=None):
    """Run ``func(args)`` as a command: its exit code, or 2 after one ``error:`` line.

    ``debug``: tracebacks and TensorFlow's log instead. ``tensorflow``: import TensorFlow first
    (quietly), so that its start-up log lines are filtered wherever the command imports it.
    ``precheck(args)``: checks of flags, files and configs run before TensorFlow is imported
    (a mistake costs a fraction of a second, not TensorFlow's start-up); it may return an exit
    code to finish the command without TensorFlow (``--print-config``), else None.
    """
    from tfrestore.utils.tf_logging import import_tensorflow

    try:
        if precheck is not None:
            code = precheck(args)
            if code is not None:
                return code
        if tensorflow:
            import_tensorflow(verbose=debug)
        return func(args) or 0
    except _USER_ERRORS as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a command may say how to go on (tfrestore train: resume)
        print(f"error: {one_line(e) if str(e).strip() else 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not a user error: one line unless --debug
        if debug:
            raise
        print(
            f"error: internal error ({type(e).__name__}: {one_line(e)}); rerun with --debug "
            "for the traceback and report it",
            file=sys.stderr,
        )
        return 1
