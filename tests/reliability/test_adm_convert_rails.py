"""Issue 12 catalogue, item 18: the ADM converter refuses NaN tensors and checks
converted outputs against a reference (the attention flags shapes cannot check)."""

import json

import numpy as np
import pytest

from tfrestore.cli import main as cli_main
from tfrestore.convert import load_torch_state_dict
from tfrestore.diffusion import (
    ADMConversionError,
    ADMUNet,
    adm_config,
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
    return json.loads((d / "config.json").read_text()), d / "model.pt", d / "io.npz"


def test_nan_tensor_is_refused_with_its_key(tiny, tmp_path):
    cfg, path, _ = tiny
    state = load_torch_state_dict(path)
    key = "middle_block.1.qkv.weight"
    state[key] = state[key].copy()
    state[key][3, 5, 0] = np.nan
    bad = tmp_path / "nan.pt"
    save_torch_state_dict(state, str(bad))
    with pytest.raises(ADMConversionError, match=rf"tensor '{key}' contains 1 NaN/Inf value"):
        convert_adm(str(bad), cfg)


def test_inf_in_converted_npz_is_refused_on_load(tiny, tmp_path):
    cfg, path, _ = tiny
    weights = convert_adm(path, cfg)
    weights["out.2.bias"] = np.full_like(weights["out.2.bias"], np.inf)
    np.savez(tmp_path / "w.npz", **weights)
    with pytest.raises(ADMConversionError, match=r"tensor 'out.2.bias' contains 6 NaN/Inf"):
        load_adm_weights(ADMUNet(**adm_config(cfg)), str(tmp_path / "w.npz"))


def test_verify_passes_with_the_right_attention_flags(tiny):
    cfg, path, io = tiny
    unet = load_adm_weights(ADMUNet(**adm_config(cfg)), str(path), verify=str(io))
    errors = verify_adm(unet, str(io))
    assert set(errors) == {"out", "h"} and max(errors.values()) < 1e-4


@pytest.mark.parametrize("flag", [{"num_head_channels": 32},
                                  {"use_new_attention_order": True}])
def test_wrong_attention_flag_converts_but_verification_names_it(tiny, flag):
    cfg, path, io = tiny
    wrong = adm_config({**cfg, **flag})
    weights = convert_adm(path, wrong)  # shapes cannot tell: no error here
    with pytest.raises(ADMConversionError,
                       match=r"io\.npz: the converted UNet does not reproduce the reference "
                             r"`out`.*num_heads=.*num_head_channels=.*use_new_attention_order="):
        load_adm_weights(ADMUNet(**wrong), weights, verify=str(io))


def test_cli_verify_refuses_to_write_a_wrong_conversion(tiny, tmp_path, capsys):
    cfg, path, io = tiny
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


def test_verify_reference_must_hold_x_t_out(tiny, tmp_path):
    cfg, path, io = tiny
    np.savez(tmp_path / "partial.npz", x=np.load(io)["x"])
    unet = load_adm_weights(ADMUNet(**adm_config(cfg)), str(path))
    with pytest.raises(ADMConversionError, match=r"partial\.npz: .*missing \['t', 'out'\]"):
        verify_adm(unet, str(tmp_path / "partial.npz"))
