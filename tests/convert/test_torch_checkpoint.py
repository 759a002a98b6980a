import collections
import io
import os
import pathlib
import time
import warnings
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
    _write_legacy,
    save_torch_state_dict,
)

KAIR_DNCNN = pathlib.Path(os.environ.get("TFRESTORE_WEIGHTS_DIR", "/nonexistent"))
KAIR_DNCNN /= "KAIR_dncnn_25.pth"
needs_kair = pytest.mark.skipif(
    not KAIR_DNCNN.is_file(), reason=f"KAIR DnCNN legacy checkpoint not found at {KAIR_DNCNN}"
)


def _write_raw(path, obj, storages, prefix="archive", byteorder="little",
               compression=zipfile.ZIP_STORED):
    """Write a torch-layout zip with hand-made records (views, odd storages); returns ``path``."""
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr(f"{prefix}/data.pkl", _PickleWriter().dump(obj))
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in storages.items():
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", "3\n")
    return path


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
    with pytest.raises(TorchCheckpointError, match="cannot decode the protocol version"):
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


# -- legacy (pre-1.6) format ---------------------------------------------------------------


@needs_kair
def test_reads_the_kair_dncnn_legacy_checkpoint():
    sd = load_torch_state_dict(KAIR_DNCNN)
    weights = [k for k in sd if k.endswith(".weight")]
    assert len(weights) == 17 and len(sd) == 34
    assert list(sd)[:3] == ["model.0.weight", "model.0.bias", "model.2.weight"]
    assert sd[weights[0]].shape == (64, 1, 3, 3) and sd[weights[-1]].shape == (1, 64, 3, 3)
    assert all(w[: -len("weight")] + "bias" in sd for w in weights)
    assert all(v.dtype == np.float32 and np.all(np.isfinite(v)) for v in sd.values())


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_legacy_round_trip(tmp_path, rng, byteorder):
    obj = {
        "w": rng.normal(size=(3, 2, 3, 3)).astype("float32"),
        "b": rng.normal(size=(3,)).astype("float64"),
        "i": np.arange(-3, 3, dtype="int16"),
        "h": rng.normal(size=(4,)).astype("float16"),
        "m": np.array([True, False]),
        "s": np.array(5, "int64"),
    }
    save_torch_state_dict({"state_dict": obj, "epoch": 7}, tmp_path / "l.pth",
                          legacy=True, byteorder=byteorder)
    sd = load_torch_state_dict(tmp_path / "l.pth")
    assert list(sd) == list(obj)
    for k, v in obj.items():
        assert sd[k].dtype == v.dtype and sd[k].shape == v.shape
        np.testing.assert_array_equal(sd[k], v)
    assert load_torch_checkpoint(tmp_path / "l.pth")["epoch"] == 7
    save_torch_state_dict(obj, tmp_path / "z.pth", byteorder=byteorder)  # zip, same order
    np.testing.assert_array_equal(load_torch_state_dict(tmp_path / "z.pth")["w"], obj["w"])


def test_legacy_views_share_a_storage(tmp_path):
    base = np.arange(24, dtype=np.float32)
    other = np.arange(5, dtype=np.int64)

    def rec(offset, size, stride, view=None, key="0", name="FloatStorage", numel=24):
        return _TensorRecord(key, name, numel, offset, size, stride, view=view, legacy=True)

    obj = collections.OrderedDict(
        [
            ("full", rec(0, (4, 6), (6, 1))),
            ("transposed", rec(0, (6, 4), (1, 6))),
            ("row2_view", rec(0, (6,), (1,), view=("v1", 12, 6))),
            ("row2_again", rec(2, (2,), (1,), view=("v1", 12, 6))),
            ("tail_view", rec(1, (2, 2), (2, 1), view=("v2", 19, 5))),
            ("ints", rec(1, (3,), (1,), key="1", name="LongStorage", numel=5)),
        ]
    )
    # storage "9" is listed but unused and comes last: fine (torch never writes it)
    _write_legacy(tmp_path / "v.pth", obj, {"1": other, "0": base, "9": np.zeros(3, np.int8)})
    sd = load_torch_state_dict(tmp_path / "v.pth")
    full = base.reshape(4, 6)
    np.testing.assert_array_equal(sd["full"], full)
    np.testing.assert_array_equal(sd["transposed"], full.T)
    np.testing.assert_array_equal(sd["row2_view"], full[2])
    np.testing.assert_array_equal(sd["row2_again"], full[2, 2:4])
    np.testing.assert_array_equal(sd["tail_view"], [[20, 21], [22, 23]])
    np.testing.assert_array_equal(sd["ints"], [1, 2, 3])
    # a view reaching past its storage, or a tensor past its view, is refused
    bad = {"a": rec(0, (6,), (1,), view=("v", 20, 6))}
    _write_legacy(tmp_path / "bad_view.pth", bad, {"0": base})
    with pytest.raises(TorchCheckpointError, match="lies outside storage '0'"):
        load_torch_state_dict(tmp_path / "bad_view.pth")
    bad = {"a": rec(1, (6,), (1,), view=("v", 12, 6))}
    _write_legacy(tmp_path / "bad_tensor.pth", bad, {"0": base})
    with pytest.raises(TorchCheckpointError, match="'a'.*does not fit"):
        load_torch_state_dict(tmp_path / "bad_tensor.pth")


def test_legacy_big_endian_sys_info_with_little_endian_records(tmp_path):
    # torch >= 1.0 on a big-endian machine: sys_info says big, records are little-endian
    a = np.arange(6, dtype=np.float32)
    obj = {"a": _TensorRecord("0", "FloatStorage", 6, 0, (6,), (1,), legacy=True)}
    _write_legacy(tmp_path / "m.pth", obj, {"0": a}, byteorder="big", records_byteorder="little")
    np.testing.assert_array_equal(load_torch_state_dict(tmp_path / "m.pth")["a"], a)


def test_legacy_malicious_pickle_is_refused_before_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = {"x": _GlobalCall("os", "system", (f"touch {marker}",))}
    _write_legacy(tmp_path / "evil.pth", evil, {})
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        load_torch_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()
    # the header pickles are checked too
    path = tmp_path / "evil_header.pth"
    _write_legacy(path, {}, {})
    data = path.read_bytes()
    magic_end = data.index(b".") + 1
    path.write_bytes(data[:magic_end] + _PickleWriter().dump(evil) + data[magic_end:])
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        load_torch_state_dict(path)
    assert not marker.exists()


def test_legacy_truncated_and_missing_storages(tmp_path, rng):
    w = rng.normal(size=(8, 4)).astype("float32")
    save_torch_state_dict({"w": w, "b": w[0]}, tmp_path / "ok.pth", legacy=True)
    data = (tmp_path / "ok.pth").read_bytes()
    for cut in (len(data) - 1, len(data) - 16, len(data) - 20, len(data) - 24):  # storage "1"
        (tmp_path / "t.pth").write_bytes(data[:cut])
        with pytest.raises(TorchCheckpointError, match=r"t.pth': truncated checkpoint, storage '1"):
            load_torch_state_dict(tmp_path / "t.pth")
    (tmp_path / "t.pth").write_bytes(data[: len(data) // 8])  # inside the pickles
    with pytest.raises(TorchCheckpointError, match="t.pth.*cannot decode"):
        load_torch_state_dict(tmp_path / "t.pth")

    rec = _TensorRecord("0", "FloatStorage", 4, 0, (4,), (1,), legacy=True)
    _write_legacy(tmp_path / "missing.pth", {"a": rec}, {})
    with pytest.raises(TorchCheckpointError, match="storage '0' is used by a tensor but missing"):
        load_torch_state_dict(tmp_path / "missing.pth")
    _write_legacy(tmp_path / "count.pth", {"a": rec}, {"0": np.zeros(3, np.float32)})
    with pytest.raises(TorchCheckpointError, match="holds 3 elements but 4 are declared"):
        load_torch_state_dict(tmp_path / "count.pth")
    _write_legacy(tmp_path / "unused.pth", {"a": rec},
                  {"x": np.zeros(3, np.int8), "0": np.zeros(4, np.float32)})
    with pytest.raises(TorchCheckpointError, match="storage 'x' is listed twice or used by no"):
        load_torch_state_dict(tmp_path / "unused.pth")


# -- issue 19: bounded nesting, exact storage sizes ------------------------------------------


def _nested_pickle(depth, opener=b"(", closer=b"t"):
    return b"\x80\x02" + opener * depth + closer * depth + b"."


@pytest.mark.parametrize("opener,closer", [(b"(", b"t"), (b"]", b"a"), (b"(", b"l")])
def test_deep_nesting_is_a_checkpoint_error(tmp_path, opener, closer):
    # 20,000 levels: far past the recursion limit that used to end in RecursionError
    if closer == b"a":  # EMPTY_LIST ... APPEND: a list in a list in a list ...
        body = b"\x80\x02" + b"]" * 20_000 + b"a" * 19_999 + b"."
    else:
        body = _nested_pickle(20_000, opener, closer)
    with zipfile.ZipFile(tmp_path / "deep.pt", "w") as z:
        z.writestr("archive/data.pkl", body)
    with pytest.raises(TorchCheckpointError, match="deep.pt.*nested more than 100 deep"):
        load_torch_checkpoint(tmp_path / "deep.pt")
    path = tmp_path / "deep.pth"
    _write_legacy(path, {}, {})
    data = path.read_bytes()
    start = data.index(_PickleWriter().dump({}))  # the object pickle
    path.write_bytes(data[:start] + body + data[start + len(_PickleWriter().dump({})):])
    with pytest.raises(TorchCheckpointError, match="deep.pth.*nested more than 100 deep"):
        load_torch_checkpoint(path)


def test_deep_tuple_keys_are_refused_before_hashing(tmp_path):
    # hashing a tuple nested 100,000 deep overflows the C stack (a crash, not an error)
    key = b"(" * 20_000 + b"t" * 20_000
    with zipfile.ZipFile(tmp_path / "key.pt", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}" + key + b"Ns.")
    with pytest.raises(TorchCheckpointError, match="nested more than 100 deep"):
        load_torch_checkpoint(tmp_path / "key.pt")
    with zipfile.ZipFile(tmp_path / "set.pt", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02c__builtin__\nset\n(](" + key + b"etR.")
    with pytest.raises(TorchCheckpointError, match="nested more than 100 deep"):
        load_torch_checkpoint(tmp_path / "set.pt")


def test_self_referencing_list_and_memo_bombs(tmp_path):
    with zipfile.ZipFile(tmp_path / "cycle.pt", "w") as z:  # l = []; l.append(l)
        z.writestr("archive/data.pkl", b"\x80\x02]q\x00h\x00a.")
    with pytest.raises(TorchCheckpointError, match="nested more than"):
        load_torch_checkpoint(tmp_path / "cycle.pt")
    # LONG_BINPUT 0x10000000: the C unpickler would allocate 4 GB for its memo
    with zipfile.ZipFile(tmp_path / "memo.pt", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}r\x00\x00\x00\x10.")
    t0 = time.perf_counter()
    assert load_torch_checkpoint(tmp_path / "memo.pt") == {}
    assert time.perf_counter() - t0 < 1.0
    # re-copying one list many times may not build more elements than the file holds
    big = b"]" + b"(" + b"N" * 10_000 + b"eq\x00" + b"0"
    calls = b"cbuiltins\nlist\nq\x01" + b"h\x01h\x00\x85R0" * 2_000
    with zipfile.ZipFile(tmp_path / "copies.pt", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + big + calls + b"}.")
    with pytest.raises(TorchCheckpointError, match="more container elements than the file"):
        load_torch_checkpoint(tmp_path / "copies.pt")


def test_zip_storage_records_must_match_their_declared_size(tmp_path):
    rec = _TensorRecord("0", "FloatStorage", 4, 0, (4,), (1,))
    _write_raw(tmp_path / "long.pt", {"a": rec}, {"0": np.zeros(6, np.float32).tobytes()})
    with pytest.raises(TorchCheckpointError, match=r"long.pt': corrupt checkpoint, storage "
                       "record 'archive/data/0' has 24 bytes but 4 elements of 4 bytes"):
        load_torch_state_dict(tmp_path / "long.pt")


def test_build_on_non_dicts_is_refused(tmp_path):
    rec = _TensorRecord("0", "FloatStorage", 4, 0, (4,), (1,))
    p = _PickleWriter()
    p.w(b"\x80\x02")
    rec.save(p)
    p.save({"size": (1000,)})
    p.w(b"b.")
    with zipfile.ZipFile(tmp_path / "build.pt", "w") as z:
        z.writestr("archive/data.pkl", p.out.getvalue())
        z.writestr("archive/data/0", np.zeros(4, np.float32).tobytes())
    with pytest.raises(TorchCheckpointError, match="sets the state of a non-dict"):
        load_torch_checkpoint(tmp_path / "build.pt")


# -- mutation fuzzing ----------------------------------------------------------------------


def _mutants(data, rng, n, zip_entries=None):
    """Byte flips, truncations, and per format: duplicated (possibly flipped) zip
    entries, or flips in the pickles / storage records of a legacy file."""
    for i in range(n):
        b = bytearray(data)
        kind = i % 4
        if kind == 0:
            for pos in rng.integers(0, len(b), size=rng.integers(1, 4)):
                b[pos] ^= int(rng.integers(1, 256))
        elif kind == 1:
            b = b[: int(rng.integers(0, len(b)))]
        elif zip_entries is None:  # the pickles fill the first ~4 KB of the KAIR file
            lo, hi = (0, min(len(b), 4200)) if kind == 2 else (max(0, len(b) - 200_000), len(b))
            b[int(rng.integers(lo, hi))] ^= int(rng.integers(1, 256))
        else:
            name, payload = zip_entries[int(rng.integers(0, len(zip_entries)))]
            payload = bytearray(payload)
            if kind == 3 and payload:
                payload[int(rng.integers(0, len(payload)))] ^= 0xFF
            out = io.BytesIO(bytes(b))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
                with zipfile.ZipFile(out, "a") as z:
                    z.writestr(name, bytes(payload))
            b = out.getvalue()
        yield bytes(b)


def _check_mutant(path, data):
    path.write_bytes(data)
    t0 = time.perf_counter()
    try:
        sd = load_torch_state_dict(path)
    except TorchCheckpointError:  # includes UnsafeCheckpointError
        pass
    else:
        assert isinstance(sd, dict) and all(isinstance(v, np.ndarray) for v in sd.values())
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.slow
@needs_kair
def test_fuzz_kair_legacy_file(tmp_path):
    data = KAIR_DNCNN.read_bytes()
    rng = np.random.default_rng(19)
    for mutant in _mutants(data, rng, 200):
        _check_mutant(tmp_path / "m.pth", mutant)


@pytest.mark.slow
def test_fuzz_zip_file(tmp_path):
    rng = np.random.default_rng(19)
    sd = {f"layer{i}.weight": rng.normal(size=(8, 4, 3, 3)).astype("float32") for i in range(4)}
    save_torch_state_dict({"state_dict": sd, "epoch": 3, "names": ["a", "b"], "shape": (1, 2)},
                          tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    with zipfile.ZipFile(tmp_path / "ok.pt") as z:
        entries = [(n, z.read(n)) for n in z.namelist()]
    for mutant in _mutants(data, rng, 300, entries):
        _check_mutant(tmp_path / "m.pt", mutant)


# ------------------------------------------------------ bounded reading of hostile files


def test_stride_zero_view_cannot_expand_a_tiny_file(tmp_path):
    rec = _TensorRecord("0", "FloatStorage", 1, 0, (16384, 16384), (0, 0))  # 1 GiB of one float
    path = _write_raw(tmp_path / "w.pt", {"big.weight": rec}, {"0": b"\x00" * 4})
    assert path.stat().st_size < 1024
    with pytest.raises(TorchCheckpointError, match=r"tensor 'big\.weight'.*expands a storage"):
        load_torch_state_dict(path)


def test_huge_view_raises_checkpoint_error_not_memory_error(tmp_path):
    rec = _TensorRecord("0", "FloatStorage", 4, 0, (200000, 200000), (0, 1))
    path = _write_raw(tmp_path / "w.pt", {"w": rec}, {"0": b"\x00" * 16})
    with pytest.raises(TorchCheckpointError, match=r"tensor 'w'"):
        load_torch_state_dict(path)


def test_deflate_bomb_storage_is_refused(tmp_path, monkeypatch):
    from tfrestore.convert import torch_checkpoint as tc

    monkeypatch.setattr(tc, "MAX_EXPANSION_BYTES", 1 << 20)  # the real limit is 64 MiB
    n = (4 << 20) // 4  # 4 MiB of zeros deflate to about 4 KiB
    rec = _TensorRecord("0", "FloatStorage", n, 0, (n,), (1,))
    path = _write_raw(
        tmp_path / "w.pt", {"w": rec}, {"0": b"\x00" * (4 * n)}, compression=zipfile.ZIP_DEFLATED
    )
    with pytest.raises(tc.TorchCheckpointError, match=r"archive/data/0.*inflates.*zip bomb"):
        tc.load_torch_state_dict(path)
