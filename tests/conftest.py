"""Test configuration: 2 logical CPUs for MirroredStrategy, shared paths, markers."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrestore.testing import configure_logical_cpus, get_mirrored_strategy  # noqa: E402

configure_logical_cpus(2)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("TFRESTORE_SHARED_DIR", REPO.parent / "shared"))


def _dir(env, default):
    p = os.environ.get(env)
    return pathlib.Path(p) if p else default


WEIGHTS_DIR = _dir("TFRESTORE_WEIGHTS_DIR", SHARED / "weights")
DATA_DIR = _dir("TFRESTORE_DATA_DIR", SHARED / "data")
VECTORS_DIR = SHARED / "vectors"


@pytest.fixture(scope="session")
def strategy():
    s = get_mirrored_strategy()
    if s is None:
        pytest.fail("2 logical CPU devices are required (configure_logical_cpus failed)")
    return s


@pytest.fixture(scope="session")
def weights_dir():
    if not WEIGHTS_DIR.is_dir():
        pytest.skip(f"pretrained weights not available: {WEIGHTS_DIR} does not exist")
    return WEIGHTS_DIR


@pytest.fixture(scope="session")
def data_dir():
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared test data not available: {DATA_DIR} does not exist")
    return DATA_DIR


@pytest.fixture(scope="session")
def vectors_dir():
    if not VECTORS_DIR.is_dir():
        pytest.skip(f"golden vectors not available: {VECTORS_DIR} does not exist")
    return VECTORS_DIR


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _reset_policy():
    import keras

    yield
    keras.config.set_dtype_policy("float32")
