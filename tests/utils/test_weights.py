"""Weights files: a damaged file is named (``CorruptWeightsError``), not reported as missing."""

import numpy as np
import pytest

from tfrestore.utils import CorruptWeightsError
from tfrestore.utils.weights import load_npz


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_npz_weights_name_the_file(tmp_path):
    from tfrestore.features.sources import load_state_dict

    path = tmp_path / "vgg16.npz"
    np.savez(path, **{"features.0.weight": np.ones((64, 3, 3, 3), "float32")})
    _truncate(path, 0.5)
    for load in (load_npz, load_state_dict):  # the reader, and a loss backbone's loader using it
        with pytest.raises(CorruptWeightsError, match=r"'.*vgg16\.npz' is damaged or truncated"):
            load(path)
