import collections
import zipfile

import numpy as np
import pytest

from tfrestore.convert.torch_checkpoint import (
    TorchCheckpointError,
    UnsafeCheckpointError,
    load_torch_checkpoint,
    load_torch_state_dict,
)
from tfrestore.testing.torch_writer import (
    _GlobalCall,
    _PickleWriter,
    _TensorRecord,
    save_torch_state_dict,
)


def _write_raw(path, obj, storages, prefix="archive", byteorder="little"):
    """Write a torch-layout zip with hand-made records (views, odd storages)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{prefix}/data.pkl", _PickleWriter().dump(obj))
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in storages.items():
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", "3\n")


def test_reads_the_adm_tiny_golden_checkpoint(vectors_dir):
    sd = load_torch_state_dict(vectors_dir / "adm_tiny" / "model.pt")
    assert len(sd) == 306
    assert next(iter(sd)) == "time_embed.0.weight"
    assert sd["time_embed.0.weight"].shape == (128, 32)
    assert sd["input_blocks.0.0.weight"].shape == (32, 3, 3, 3)
    assert all(v.dtype == np.float32 and np.all(np.isfinite(v)) for v in sd.values())
    assert sum(v.size for v in sd.values()) == 2007462


@pytest.mark.parametrize(
    "dtype", ["float16", "float32", "float64", "int64", "int32", "int8", "uint8", "bool"]
)
def test_round_trip_of_every_dtype(tmp_path, rng, dtype):
    if dtype == "bool":
        a = rng.uniform(size=(3, 4)) > 0.5
    elif dtype.startswith(("int", "uint")):
        a = rng.integers(-5 if dtype != "uint8" else 0, 100, size=(2, 3, 4)).astype(dtype)
    else:
        a = rng.normal(size=(5, 2, 3)).astype(dtype)
    save_torch_state_dict({"a": a, "scalar": np.array(7, dtype)}, tmp_path / "m.pt")
    sd = load_torch_state_dict(tmp_path / "m.pt")
    assert sd["a"].dtype == a.dtype and sd["a"].shape == a.shape
    np.testing.assert_array_equal(sd["a"], a)
    assert sd["scalar"].shape == () and sd["scalar"] == np.array(7, dtype)


def test_views_with_offsets_and_strides_share_a_storage(tmp_path):
    base = np.arange(24, dtype=np.float32)
    obj = collections.OrderedDict(
        [
            ("full", _TensorRecord("0", "FloatStorage", 24, 0, (4, 6), (6, 1))),
            ("transposed", _TensorRecord("0", "FloatStorage", 24, 0, (6, 4), (1, 6))),
            ("row2", _TensorRecord("0", "FloatStorage", 24, 12, (6,), (1,))),
            ("every_other", _TensorRecord("0", "FloatStorage", 24, 1, (2, 3), (12, 2))),
            ("broadcast", _TensorRecord("0", "FloatStorage", 24, 5, (3, 2), (0, 1))),
        ]
    )
    _write_raw(tmp_path / "v.pt", obj, {"0": base.tobytes()})
    sd = load_torch_state_dict(tmp_path / "v.pt")
    full = base.reshape(4, 6)
    np.testing.assert_array_equal(sd["full"], full)
    np.testing.assert_array_equal(sd["transposed"], full.T)
    np.testing.assert_array_equal(sd["row2"], full[2])
    np.testing.assert_array_equal(sd["every_other"], [[1, 3, 5], [13, 15, 17]])
    np.testing.assert_array_equal(sd["broadcast"], np.broadcast_to(base[5:7], (3, 2)))
    sd["full"][0, 0] = 100.0  # results own their memory
    assert sd["transposed"][0, 0] == 0.0


def test_big_endian_and_bfloat16_storages(tmp_path):
    a = np.array([1.5, -2.0, 3.25], np.float32)
    bf16 = (a.view(np.uint32) >> 16).astype("<u2")  # exact in bfloat16
    obj = {
        "be": _TensorRecord("0", "FloatStorage", 3, 0, (3,), (1,)),
    }
    _write_raw(tmp_path / "be.pt", obj, {"0": a.astype(">f4").tobytes()}, byteorder="big")
    np.testing.assert_array_equal(load_torch_state_dict(tmp_path / "be.pt")["be"], a)
    obj = {"bf": _TensorRecord("0", "BFloat16Storage", 3, 0, (3,), (1,))}
    _write_raw(tmp_path / "bf.pt", obj, {"0": bf16.tobytes()})
    out = load_torch_state_dict(tmp_path / "bf.pt")["bf"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a)


def test_nested_checkpoints_are_unwrapped(tmp_path, rng):
    w = rng.normal(size=(2, 2)).astype("float32")
    b = rng.normal(size=(2,)).astype("float32")
    save_torch_state_dict(
        {"state_dict": {"conv.weight": w, "conv.bias": b}, "epoch": 3, "lr": 1e-4,
         "history": [1.0, 2.0], "best": None, "flags": (True, False)},
        tmp_path / "wrapped.pth",
    )
    sd = load_torch_state_dict(tmp_path / "wrapped.pth")
    assert list(sd) == ["conv.weight", "conv.bias"]
    np.testing.assert_array_equal(sd["conv.weight"], w)
    raw = load_torch_checkpoint(tmp_path / "wrapped.pth")
    assert raw["epoch"] == 3 and raw["lr"] == 1e-4 and raw["history"] == [1.0, 2.0]
    assert raw["best"] is None and raw["flags"] == (True, False)

    save_torch_state_dict({"ema": {"a": w}, "model": {"a": b}, "step": 10}, tmp_path / "two.pth")
    np.testing.assert_array_equal(load_torch_state_dict(tmp_path / "two.pth", key="model")["a"], b)
    save_torch_state_dict({"enc": {"conv": {"weight": w}}, "dec": {"bias": b}}, tmp_path / "n.pth")
    assert sorted(load_torch_state_dict(tmp_path / "n.pth")) == ["dec.bias", "enc.conv.weight"]
    with pytest.raises(TorchCheckpointError, match="key=<entry>"):
        save_torch_state_dict({"optimizer": {"lr": 0.1}, "weights": {"a": w}}, tmp_path / "o.pth")
        load_torch_state_dict(tmp_path / "o.pth")
    with pytest.raises(TorchCheckpointError, match="no entry 'nope'"):
        load_torch_state_dict(tmp_path / "two.pth", key="nope")


def test_parameters_and_state_dict_metadata_are_accepted(tmp_path):
    a = np.arange(4, dtype=np.float32)
    rec = _TensorRecord("0", "FloatStorage", 4, 0, (4,), (1,))
    param = _GlobalCall("torch._utils", "_rebuild_parameter",
                        (rec, True, collections.OrderedDict()))
    _write_raw(tmp_path / "p.pt", collections.OrderedDict([("w", param)]), {"0": a.tobytes()})
    np.testing.assert_array_equal(load_torch_state_dict(tmp_path / "p.pt")["w"], a)


def test_disallowed_globals_are_refused_before_being_called(tmp_path):
    marker = tmp_path / "pwned"
    evil = _GlobalCall("os", "system", (f"touch {marker}",))
    _write_raw(tmp_path / "evil.pt", {"x": evil}, {})
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        load_torch_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()
    module = _GlobalCall("torch.nn.modules.conv", "Conv2d", ())
    _write_raw(tmp_path / "module.pt", module, {})
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.conv.Conv2d"):
        load_torch_state_dict(tmp_path / "module.pt")


def test_corrupt_truncated_and_legacy_files(tmp_path, rng):
    save_torch_state_dict({"a": rng.normal(size=(64, 64)).astype("float32")}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(TorchCheckpointError, match="not a PyTorch zip checkpoint"):
        load_torch_state_dict(tmp_path / "trunc.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(TorchCheckpointError, match="not a PyTorch zip checkpoint"):
        load_torch_state_dict(tmp_path / "text.pt")
    legacy = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19." + b"\x00" * 32
    (tmp_path / "legacy.pt").write_bytes(legacy)
    with pytest.raises(TorchCheckpointError, match="legacy"):
        load_torch_state_dict(tmp_path / "legacy.pt")
    # flipped bytes inside a stored tensor record -> CRC error
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "crc.pt").write_bytes(bytes(bad))
    with pytest.raises(TorchCheckpointError, match="corrupt"):
        load_torch_state_dict(tmp_path / "crc.pt")
    # storage shorter than declared / view out of bounds
    rec = _TensorRecord("0", "FloatStorage", 10, 0, (10,), (1,))
    _write_raw(tmp_path / "short.pt", {"a": rec}, {"0": np.zeros(4, np.float32).tobytes()})
    with pytest.raises(TorchCheckpointError, match="corrupt"):
        load_torch_state_dict(tmp_path / "short.pt")
    rec = _TensorRecord("0", "FloatStorage", 4, 2, (4,), (1,))
    _write_raw(tmp_path / "oob.pt", {"a": rec}, {"0": np.zeros(4, np.float32).tobytes()})
    with pytest.raises(TorchCheckpointError, match="does not fit"):
        load_torch_state_dict(tmp_path / "oob.pt")
    with pytest.raises(TorchCheckpointError, match="missing"):
        _write_raw(tmp_path / "nostorage.pt", {"a": rec}, {})
        load_torch_state_dict(tmp_path / "nostorage.pt")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as z:
        z.writestr("readme.txt", "not torch")
    with pytest.raises(TorchCheckpointError, match="data.pkl"):
        load_torch_state_dict(tmp_path / "plain.zip")
    with pytest.raises(FileNotFoundError):
        load_torch_state_dict(tmp_path / "missing.pt")
