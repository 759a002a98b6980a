"""MatConvNet simplenn reader: layers of the released files, refusals, a mutation fuzzer."""

import os
import time

import h5py
import numpy as np
import pytest

from tfrestore.convert.matconvnet import MatConvNetError, load_simplenn
from tfrestore.models.released import ReleasedWeightsError, read_released


def _weights(weights_dir, name):
    path = weights_dir / name
    if not path.is_file():
        pytest.skip(f"{name} not in {weights_dir}")
    return str(path)


def test_reader_layers_of_ffdnet_color(weights_dir):
    layers = load_simplenn(_weights(weights_dir, "FFDNet_color.mat"))
    kinds = [la["type"] for la in layers]
    assert kinds[:3] == ["SubP", "concat", "conv"] and kinds[-1] == "SubP"
    assert kinds.count("conv") == 12 and kinds.count("relu") == 11
    assert layers[0]["scale"] == (0.5,) and layers[-1]["scale"] == (2.0,)
    assert layers[2]["weights"][0].shape == (96, 13, 3, 3)  # h5py order (out, in, W, H)
    assert layers[2]["pad"] == (1.0,) and layers[2]["stride"] == (1.0,)


def test_reader_refuses_files_that_are_not_simplenn_networks(tmp_path):
    bad = tmp_path / "x.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, not HDF5" + b"\0" * 200)
    with pytest.raises(MatConvNetError, match="not a MATLAB v7.3"):
        load_simplenn(bad)
    other = tmp_path / "other.mat"
    with h5py.File(other, "w") as f:
        f["params"] = np.zeros(3)
    with pytest.raises(MatConvNetError, match=r"no MatConvNet simplenn network.*params"):
        load_simplenn(other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_simplenn(tmp_path / "missing.mat")


def test_reader_refuses_an_oversized_array_before_reading_it(tmp_path, monkeypatch):
    import tfrestore.convert.matconvnet as mcn

    path = tmp_path / "big.mat"
    with h5py.File(path, "w") as f:
        ref_dt = h5py.special_dtype(ref=h5py.Reference)
        g = f.create_group("#refs#/a")
        g["type"] = np.array([ord(c) for c in "conv"], np.uint16)[:, None]
        g.create_dataset("big", shape=(4096, 4096), dtype="float32")  # declared, never written
        w = f.create_dataset("#refs#/w", (2,), dtype=ref_dt)
        w[0] = g["big"].ref
        w[1] = g["big"].ref
        g["weights"] = w[...]
        net = f.create_group("net")
        layers = net.create_dataset("layers", (1, 1), dtype=ref_dt)
        layers[0, 0] = g.ref
    monkeypatch.setattr(mcn, "MAX_ARRAY_BYTES", 1 << 20)
    with pytest.raises(MatConvNetError, match=r"declares 64 MiB \(limit 1 MiB\)"):
        load_simplenn(path)




def test_a_damaged_file_is_one_named_error(weights_dir, tmp_path):
    data = bytearray(open(_weights(weights_dir, "FFDNet_gray.mat"), "rb").read())
    data[len(data) // 2 : len(data) // 2 + 4096] = bytes(4096)  # zeros inside the weights
    bad = tmp_path / "damaged.mat"
    bad.write_bytes(bytes(data))
    with pytest.raises(MatConvNetError, match=r"damaged.mat' is damaged .*copy or download it"):
        load_simplenn(bad)


@pytest.mark.slow
def test_mutated_files_end_in_a_model_or_a_named_error(weights_dir, tmp_path):
    """Seeded mutations of a released file (byte flips, mostly in the HDF5 metadata,
    truncations, zeroed runs): each ends in a network description or a MatConvNetError /
    ReleasedWeightsError within a second; never another exception, a hang or a crash."""
    source = open(_weights(weights_dir, "FFDNet_gray.mat"), "rb").read()
    rng = np.random.default_rng(19)
    outcomes = {}
    for i in range(300):
        data = bytearray(source)
        kind = i % 3
        if kind == 0:
            for _ in range(int(rng.integers(1, 8))):
                pos = int(rng.integers(0, 65536 if rng.random() < 0.7 else len(data)))
                data[pos] = int(rng.integers(256))
        elif kind == 1:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            pos, n = int(rng.integers(0, len(data) - 64)), int(rng.integers(1, 64))
            data[pos : pos + n] = bytes(n)
        path = tmp_path / f"mutant{i}.mat"
        path.write_bytes(bytes(data))
        t0 = time.perf_counter()
        try:
            read_released(path)
            outcome = "model"
        except (MatConvNetError, ReleasedWeightsError) as exc:
            outcome = type(exc).__name__
            assert str(path) in str(exc) and "\n" not in str(exc)
        assert time.perf_counter() - t0 < 1.0, f"mutant {i} took too long"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        os.remove(path)
    assert outcomes.get("MatConvNetError", 0) > 100, outcomes
