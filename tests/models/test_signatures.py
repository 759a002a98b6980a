"""One argument order and one name per concept for every restorer factory (issue 11)."""

import inspect

import pytest

from tfrestore.models import EDSR, DnCNN, FFDNet, LiuDenoiser, UNet

# channels, [scale,] depth, filters, <model specific ...>, name
EXPECTED_HEAD = {
    DnCNN: ["channels", "depth", "filters"],
    FFDNet: ["channels", "depth", "filters"],
    EDSR: ["channels", "scale", "depth", "filters"],
    UNet: ["channels", "filters"],
    LiuDenoiser: ["channels"],
}


@pytest.mark.parametrize("factory", list(EXPECTED_HEAD), ids=lambda f: f.__name__)
def test_factory_argument_order(factory):
    names = list(inspect.signature(factory).parameters)
    head = EXPECTED_HEAD[factory]
    assert names[: len(head)] == head
    assert names[-1] == "name"
    for retired in ("num_blocks", "blocks", "n_blocks", "num_filters", "in_channels"):
        assert retired not in names


def test_positional_channels_first():
    import numpy as np

    x = np.zeros((1, 8, 8, 3), "float32")
    assert DnCNN(3, 3, 4)(x).shape == (1, 8, 8, 3)
    assert EDSR(3, 2, 1, 4)(x).shape == (1, 16, 16, 3)
    assert LiuDenoiser(3, "same")(x).shape == (1, 8, 8, 3)


@pytest.mark.parametrize("factory", list(EXPECTED_HEAD), ids=lambda f: f.__name__)
def test_non_integer_channels_name_the_argument(factory):
    with pytest.raises(TypeError, match=rf"{factory.__name__}: `channels` \(the first argument"):
        factory("valid")
