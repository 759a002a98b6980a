"""The training tests' shared config: ``tiny_config``, the smallest run that exercises the runner."""

import copy

import pytest

#: One epoch of one step: a 2-layer DnCNN (4 filters) with L1 on 16-pixel crops of the
#: embedded photographs; the report scores one 32-pixel held-out crop. Seconds on a CPU.
TINY_CONFIG = {
    "task": "denoise",
    "seed": 1,
    "model": {
        "type": "DnCNN",
        "args": {"depth": 2, "filters": 4, "channels": 3, "batch_norm": False},
    },
    "losses": [{"type": "L1"}],
    "data": {
        "crop_size": 16,
        "batch_size": 2,
        "val": {"crop_size": 16, "batch_size": 2},
        "test": {"max_images": 1, "crop_size": 32},
    },
    "train": {"epochs": 1, "steps_per_epoch": 1, "verbose": 0},
    "metrics": {"lpips": False},
    "output": {"tensorboard": False},
}


def merge_sections(base, sections):
    """``base`` with ``sections`` merged in: a mapping section key by key (each key's value
    replaced whole, so ``model={"args": {...}}`` gives exactly those args), anything else
    replaced. Nothing is shared with ``base`` or ``sections``."""
    cfg = copy.deepcopy(base)
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(name), dict):
            cfg[name].update(copy.deepcopy(value))
        else:
            cfg[name] = copy.deepcopy(value)
    return cfg


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(**sections)``: a fresh :data:`TINY_CONFIG` dict with ``sections`` merged
    in (see :func:`merge_sections`), e.g. ``tiny_config(seed=4, train={"epochs": 2})``."""
    return lambda **sections: merge_sections(TINY_CONFIG, sections)
