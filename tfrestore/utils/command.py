"""Running a command-line command: usage mistakes and user errors as one ``error:`` line on
stderr with exit code 2, tracebacks only with ``--debug``. Shared by ``tfrestore`` (:mod:`tfrestore.cli`)
and the ``train/<task>.py`` scripts; imports no TensorFlow until a command runs."""

from __future__ import annotations

import argparse
import sys

__all__ = ["CliParser", "CliError", "one_line", "run_command"]


class CliParser(argparse.ArgumentParser):
    """Usage mistakes as one ``error:`` line that names the command, exit code 2."""

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(2, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")


class CliError(Exception):
    """A command-line usage error: printed as one ``error:`` line, exit code 2."""


def one_line(exc):
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# The user's mistakes, printed as one line. ValueError covers ConfigError, RunDirError,
# ImageFileError, TorchCheckpointError, ADMConversionError...: their messages name the file or
# option and the fix.
_USER_ERRORS = (CliError, OSError, ValueError)


def run_command(func, args, debug=False, tensorflow=True):
    """Run ``func(args)`` as a command: its exit code, or 2 after one ``error:`` line.

    ``debug``: tracebacks and TensorFlow's log instead. ``tensorflow``: import TensorFlow first
    (quietly), so that its start-up log lines are filtered wherever the command imports it.
    """
    from tfrestore.utils.tf_logging import import_tensorflow

    try:
        if tensorflow:
            import_tensorflow(verbose=debug)
        return func(args) or 0
    except _USER_ERRORS as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
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
