"""One-line command errors: Keras' call wrapper and ANSI codes removed, Ctrl-C's message kept."""

import pytest

from tfrestore.utils.command import one_line, run_command

KERAS_WRAPPED = (
    "Exception encountered when calling InputCheck.call().\n\n"
    "\x1b[1mUNet: `inputs` must have height and width divisible by 16, got 63x63.\x1b[0m\n\n"
    "Arguments received by InputCheck.call():\n  \u2022 x=tf.Tensor(shape=(8, 63, 63, 3))"
)


def test_one_line_unwraps_keras_and_strips_ansi():
    text = one_line(ValueError(KERAS_WRAPPED))
    assert text == "UNet: `inputs` must have height and width divisible by 16, got 63x63."
    # inside another message (a ConfigError naming the section) the wrapper goes too
    assert one_line(ValueError("config section 'data': " + KERAS_WRAPPED)) == (
        "config section 'data': UNet: `inputs` must have height and width divisible by 16, "
        "got 63x63."
    )
    assert one_line(ValueError("\x1b[31mred\x1b[0m and plain")) == "red and plain"
    assert one_line(ValueError("")) == "ValueError"


def _raise(exc):
    def func(args):
        raise exc

    return func


@pytest.mark.parametrize(
    "exc,code,line",
    [
        (ValueError(KERAS_WRAPPED), 2, "error: UNet: `inputs` must have height"),
        (KeyboardInterrupt(), 130, "error: interrupted"),
        (KeyboardInterrupt("interrupted; run the same command again to resume"), 130,
         "error: interrupted; run the same command again to resume"),
    ],
)
def test_run_command_prints_one_clean_line(exc, code, line, capsys):
    assert run_command(_raise(exc), None, tensorflow=False) == code
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and err.startswith(line), err
    assert "\x1b" not in err and "Exception encountered" not in err
