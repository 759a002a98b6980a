"""``data_range``: one spelling of an image value range for every check."""

import numpy as np
import pytest

from tfrestore.utils import validation


def test_as_range_reads_a_peak_or_a_pair():
    assert validation.as_range(1) == (0.0, 1.0)
    assert validation.as_range(np.float32(255)) == (0.0, 255.0)
    assert validation.as_range([-1, 1]) == (-1.0, 1.0)
    assert validation.as_range(None) is None


@pytest.mark.parametrize("bad", [0, -1.0, (1, 1), (2, 1), (0, 1, 2), "1", True, float("inf")])
def test_as_range_names_the_argument(bad):
    with pytest.raises(ValueError, match=r"my_loss: `data_range` must be a positive number r"):
        validation.as_range(bad, owner="my_loss")


def test_check_values_accepts_either_spelling():
    x = np.full((1, 2, 2, 3), 200.0, "float32")
    assert validation.check_values(x, "y_true", data_range=255) is x
    assert validation.check_values(x, "y_true", data_range=(0, 255)) is x
    with pytest.raises(ValueError, match=r"far outside the range \[0, 1\]"):
        validation.check_values(x, "y_true", data_range=1.0)
