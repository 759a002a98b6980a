"""ADM (guided-diffusion) checkpoint conversion: layouts, golden outputs, the CLI, and
the refusal of NaN tensors and unverified conversions."""

import json
import os
import runpy
import sys

import numpy as np
import pytest

from tfrestore.cli import main as cli_main
from tfrestore.convert import load_torch_state_dict, to_keras_layout
from tfrestore.diffusion import (
    ADMConversionError,
    ADMUNet,
    adm_config,
    adm_state_dict_shapes,
    convert_adm,
    load_adm_weights,
    verify_adm,
)
from tfrestore.testing.torch_writer import save_torch_state_dict


def main(argv):
    return cli_main(["convert", *argv])


@pytest.fixture(scope="module")
def tiny(vectors_dir):
    d = vectors_dir / "adm_tiny"
    return json.loads((d / "config.json").read_text()), d / "model.pt", np.load(d / "io.npz")


def test_layout_rules(rng):
    conv = rng.normal(size=(5, 4, 3, 2))  # (O, I, kh, kw)
    k = to_keras_layout(conv, "conv2d")
    assert k.shape == (3, 2, 4, 5) and k.dtype == np.float32
    assert k[2, 1, 3, 4] == np.float32(conv[4, 3, 2, 1])
    conv1d = rng.normal(size=(6, 4, 1))
    np.testing.assert_array_equal(to_keras_layout(conv1d, "conv1d"), conv1d[:, :, 0].T.astype("f4"))
    lin = rng.normal(size=(6, 4))
    np.testing.assert_array_equal(to_keras_layout(lin, "linear"), lin.T.astype("f4"))
    vec = rng.normal(size=(6,)).astype("float16")
    assert to_keras_layout(vec, "vector").dtype == np.float32


def test_convert_covers_every_key_once_and_reproduces_golden_outputs(tiny):
    cfg, path, io = tiny
    weights = convert_adm(path, cfg)
    ckpt = load_torch_state_dict(path)
    assert list(weights) == list(ckpt)
    assert weights["input_blocks.0.0.weight"].shape == (3, 3, 3, 32)
    assert weights["input_blocks.4.1.qkv.weight"].shape == (64, 192)
    unet = load_adm_weights(ADMUNet(**adm_config(cfg)), weights)
    out, h = unet(io["x"], io["t"])
    err_out = float(np.abs(np.asarray(out) - io["out"]).max())
    err_h = float(np.abs(np.asarray(h) - io["h"]).max())
    assert err_out < 1e-4 and err_h < 1e-4, (err_out, err_h)


def test_mismatched_flags_give_actionable_errors(tiny, tmp_path):
    cfg, path, _ = tiny
    with pytest.raises(ADMConversionError) as e:
        convert_adm(path, {**cfg, "learn_sigma": False})
    msg = str(e.value)
    assert "out.2.weight: checkpoint (6, 32, 3, 3) vs expected (3, 32, 3, 3)" in msg
    assert "learn_sigma=True" in msg
    with pytest.raises(ADMConversionError) as e:
        convert_adm(path, {**cfg, "channel_mult": [1, 2, 2, 2]})
    msg = str(e.value)
    assert "missing keys" in msg and "input_blocks.9.0" in msg and "num_res_blocks" in msg
    with pytest.raises(ADMConversionError, match="unexpected keys.*input_blocks.4.1.norm.weight"):
        convert_adm(path, {**cfg, "attention_resolutions": [8]})
    with pytest.raises(ADMConversionError, match="use_scale_shift_norm"):
        convert_adm(path, {**cfg, "use_scale_shift_norm": False})
    state = load_torch_state_dict(path)
    with pytest.raises(ADMConversionError, match="class-conditional"):
        convert_adm({**state, "label_emb.weight": np.zeros((1000, 128), "f4")}, cfg)
    # DataParallel prefixes are stripped
    wrapped = {f"module.{k}": v for k, v in state.items()}
    assert list(convert_adm(wrapped, cfg)) == list(state)
    # a wrapped torch file ({"state_dict": ...}) is unwrapped by the reader
    save_torch_state_dict({"state_dict": state, "step": 7}, tmp_path / "wrapped.pt")
    assert len(convert_adm(str(tmp_path / "wrapped.pt"), cfg)) == len(state)


def test_cli_writes_loadable_weights(tiny, tmp_path, capsys):
    cfg, path, io = tiny
    out = tmp_path / "tiny.weights.h5"
    assert main(["adm", str(path), str(out), "--preset", "adm_tiny"]) == 0
    assert "306 tensors (2,007,462 parameters)" in capsys.readouterr().out
    unet = ADMUNet.from_preset("adm_tiny")
    unet.load_weights(out)
    np.testing.assert_allclose(np.asarray(unet(io["x"], io["t"])[0]), io["out"], atol=1e-4)
    npz = tmp_path / "tiny.npz"
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(json.dumps(cfg))
    assert main(["adm", str(path), str(npz), "--config", str(cfg_file)]) == 0
    unet2 = load_adm_weights(ADMUNet.from_preset("adm_tiny"), str(npz))
    np.testing.assert_array_equal(unet2.get_weights()[5], unet.get_weights()[5])


def test_cli_errors(tiny, tmp_path, capsys):
    _, path, _ = tiny
    assert main(["adm", str(path), str(tmp_path / "x.weights.h5")]) == 2  # default preset
    assert "missing keys" in capsys.readouterr().err
    assert main(["adm", str(path), str(tmp_path / "x.pt")]) == 2
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["adm", str(bad), str(tmp_path / "y.npz"), "--preset", "adm_tiny"]) == 2
    assert "not a PyTorch zip checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["adm", str(path), str(tmp_path / "y.npz"), "--preset", "adm_512"])


def test_python_dash_m_entry_point(tiny, tmp_path, monkeypatch, capsys):
    _, path, _ = tiny
    out = tmp_path / "m.npz"
    monkeypatch.setattr(sys, "argv", ["tfrestore", "convert", "adm", str(path), str(out),
                                      "--preset", "adm_tiny"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("tfrestore", run_name="__main__")
    assert e.value.code == 0 and out.is_file()
    assert len(np.load(out).files) == len(adm_state_dict_shapes("adm_tiny"))


def test_preset_choices_are_the_presets():
    from tfrestore.cli_convert import PRESET_NAMES
    from tfrestore.diffusion.config import ADM_PRESETS

    assert sorted(PRESET_NAMES) == sorted(ADM_PRESETS)


def test_add_parser_wires_into_a_parent_cli(tiny, tmp_path):
    import argparse

    from tfrestore.cli_convert import add_parser

    _, path, _ = tiny
    parser = argparse.ArgumentParser(prog="tfrestore")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", "adm", str(path), str(tmp_path / "p.npz"),
                              "--preset", "adm_tiny"])
    assert args.func(args) == 0


def test_cli_never_replaces_an_existing_output_or_an_input(tiny, tmp_path, capsys):
    _, path, _ = tiny
    out = tmp_path / "adm.npz"
    out.write_bytes(b"mine")
    assert main(["adm", str(path), str(out), "--preset", "adm_tiny"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"mine"
    assert main(["adm", str(path), str(out), "--preset", "adm_tiny", "--overwrite"]) == 0
    assert out.read_bytes() != b"mine"
    ref = tmp_path / "io.npz"
    np.savez(ref, x=np.zeros(1))
    assert main(["adm", str(path), str(ref), "--preset", "adm_tiny", "--verify", str(ref),
                 "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["adm.npz", "io.npz"]  # no temporary file left


@pytest.mark.parametrize(
    "flags,needle",
    [
        ({"num_channels": "abc"}, "ADM config key 'num_channels' must be an integer, got 'abc'"),
        ({"image_size": "abc"}, "ADM config key 'image_size' must be an integer"),
        ({"learn_sigma": "maybe"}, "ADM config key 'learn_sigma' must be true or false"),
        ({"dropout": "x"}, "ADM config key 'dropout' must be a number"),
        ({"channel_mult": "1,a"}, "ADM config key 'channel_mult' must be a sequence of numbers"),
    ],
)
def test_cli_config_with_a_wrong_type_names_the_key(tiny, tmp_path, capsys, flags, needle):
    cfg, path, _ = tiny
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(json.dumps({**cfg, **flags}))
    assert main(["adm", str(path), str(tmp_path / "x.npz"), "--config", str(cfg_file)]) == 2
    err = capsys.readouterr().err
    assert f"--config {cfg_file}: {needle}" in err and len(err.strip().splitlines()) == 1


def test_flag_file_strings_are_read_as_their_values():
    from tfrestore.diffusion.config import adm_config

    cfg = adm_config({"image_size": "32", "num_channels": "32", "channel_mult": "1,2,2",
                      "learn_sigma": "False", "attention_resolutions": "16,8",
                      "num_head_channels": "16"})
    assert cfg["image_size"] == 32 and cfg["learn_sigma"] is False  # not bool("False")


# ----------------------------------------------------------------- refused and verified
# The converter refuses NaN tensors and checks converted outputs against a reference
# (the attention flags shapes cannot check).


@pytest.fixture(scope="module")
def tiny_files(vectors_dir):
    """Like ``tiny``, with the path of the reference outputs instead of their arrays."""
    d = vectors_dir / "adm_tiny"
    return json.loads((d / "config.json").read_text()), d / "model.pt", d / "io.npz"


def test_nan_tensor_is_refused_with_its_key(tiny_files, tmp_path):
    cfg, path, _ = tiny_files
    state = load_torch_state_dict(path)
    key = "middle_block.1.qkv.weight"
    state[key] = state[key].copy()
    state[key][3, 5, 0] = np.nan
    bad = tmp_path / "nan.pt"
    save_torch_state_dict(state, str(bad))
    with pytest.raises(ADMConversionError, match=rf"tensor '{key}' contains 1 NaN/Inf value"):
        convert_adm(str(bad), cfg)


def test_inf_in_converted_npz_is_refused_on_load(tiny_files, tmp_path):
    cfg, path, _ = tiny_files
    weights = convert_adm(path, cfg)
    weights["out.2.bias"] = np.full_like(weights["out.2.bias"], np.inf)
    np.savez(tmp_path / "w.npz", **weights)
    with pytest.raises(ADMConversionError, match=r"tensor 'out.2.bias' contains 6 NaN/Inf"):
        load_adm_weights(ADMUNet(**adm_config(cfg)), str(tmp_path / "w.npz"))


def test_verify_passes_with_the_right_attention_flags(tiny_files):
    cfg, path, io = tiny_files
    unet = load_adm_weights(ADMUNet(**adm_config(cfg)), str(path), verify=str(io))
    errors = verify_adm(unet, str(io))
    assert set(errors) == {"out", "h"} and max(errors.values()) < 1e-4


@pytest.mark.parametrize("flag", [{"num_head_channels": 32},
                                  {"use_new_attention_order": True}])
def test_wrong_attention_flag_converts_but_verification_names_it(tiny_files, flag):
    cfg, path, io = tiny_files
    wrong = adm_config({**cfg, **flag})
    weights = convert_adm(path, wrong)  # shapes cannot tell: no error here
    with pytest.raises(ADMConversionError,
                       match=r"io\.npz: the converted UNet does not reproduce the reference "
                             r"`out`.*num_heads=.*num_head_channels=.*use_new_attention_order="):
        load_adm_weights(ADMUNet(**wrong), weights, verify=str(io))


def test_cli_verify_refuses_to_write_a_wrong_conversion(tiny_files, tmp_path, capsys):
    cfg, path, io = tiny_files
    cfg_file = tmp_path / "wrong.json"
    cfg_file.write_text(json.dumps({**cfg, "num_head_channels": 32}))
    out = tmp_path / "w.weights.h5"
    assert main(["adm", str(path), str(out), "--config", str(cfg_file),
                 "--verify", str(io)]) == 2
    assert "does not reproduce the reference" in capsys.readouterr().err
    assert not out.exists()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(cfg))
    assert main(["adm", str(path), str(out), "--config", str(good), "--verify", str(io)]) == 0
    assert f"outputs match {io}" in capsys.readouterr().out and out.exists()


def test_verify_reference_must_hold_x_t_out(tiny_files, tmp_path):
    cfg, path, io = tiny_files
    np.savez(tmp_path / "partial.npz", x=np.load(io)["x"])
    unet = load_adm_weights(ADMUNet(**adm_config(cfg)), str(path))
    with pytest.raises(ADMConversionError, match=r"partial\.npz: .*missing \['t', 'out'\]"):
        verify_adm(unet, str(tmp_path / "partial.npz"))
