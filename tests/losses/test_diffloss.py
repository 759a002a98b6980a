"""DiffLoss: harness conformance, algebra against NumPy, gradient flow, weights."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.convert import TorchCheckpointError, save_torch_state_dict
from tfrestore.diffusion import ADMUNet, DiffusionSchedule, adm_state_dict_shapes
from tfrestore.diffusion import pretrained
from tfrestore.losses import MSE, DiffLoss, WeightedSum
from tfrestore.testing import run_loss_test
from tfrestore.utils import WeightsNotFoundError

# A smaller ADM than adm_tiny (same block types: scale-shift ResBlocks, ResBlock
# up/down sampling, legacy attention) so the harness' graph/XLA/Mirrored traces stay fast.
MICRO = dict(
    image_size=16, num_channels=32, num_res_blocks=1, channel_mult=[1, 2],
    attention_resolutions=[8], num_head_channels=16, learn_sigma=True,
    resblock_updown=True, use_scale_shift_norm=True,
)


def _random_state_dict(config, seed=0):
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in adm_state_dict_shapes(config).items():
        if len(shape) == 1:
            base = 1.0 if key.endswith("weight") and ("norm" in key or "layers.0" in key
                                                     or key.startswith("out.0")) else 0.0
            sd[key] = (base + 0.1 * rng.normal(size=shape)).astype("float32")
        else:
            fan_in = int(np.prod(shape[1:]))
            sd[key] = (rng.normal(size=shape) / np.sqrt(fan_in)).astype("float32")
    return sd


@pytest.fixture(scope="module")
def micro_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("micro") / "micro_adm.pt"
    save_torch_state_dict(_random_state_dict(MICRO), str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny(vectors_dir):
    cfg = json.loads((vectors_dir / "adm_tiny" / "config.json").read_text())
    return cfg, str(vectors_dir / "adm_tiny" / "model.pt")


def _pair(rng, shape):
    y = rng.uniform(size=shape).astype("float32")
    return y, np.clip(y + rng.normal(0, 0.1, size=shape), 0, 1).astype("float32")


def test_harness_paper_mode(micro_weights, rng):
    y, p = _pair(rng, (2, 16, 16, 3))
    kwargs = dict(mode="paper", unet=MICRO, weights=micro_weights)
    bad = [
        (np.zeros((2, 14, 14, 3), "float32"), np.zeros((2, 14, 14, 3), "float32"),
         ValueError, "multiples of 2"),
        (np.zeros((2, 16, 16, 1), "float32"), np.zeros((2, 16, 16, 1), "float32"),
         ValueError, "3 channels"),
        (np.zeros((2, 16, 16, 3), "float32"), np.full((2, 16, 16, 3), np.nan, "float32"),
         ValueError, "NaN"),
    ]
    res = run_loss_test(DiffLoss, kwargs, y, p, bad_inputs=bad)
    assert np.all(res["eager"] > 0)
