"""The authors' released FFDNet/DnCNN weights: reader, mapping, presets.

The mapping is checked against an independent NumPy forward pass written from
MatConvNet's definitions (``vl_nnconv`` cross-correlation with zero padding, ``SubP``
with channel ``c * 4 + col * 2 + row``, the noise map concatenated after the
sub-images, DnCNN's ``input - noise``), reading the ``.mat`` files with h5py alone.
"""

import os

import h5py
import numpy as np
import pytest

from tfrestore.models import DnCNN, FFDNet, from_preset, list_presets, released_model
from tfrestore.models.presets import PRESETS, get_preset
from tfrestore.models.released import ReleasedWeightsError, load_released_weights
from tfrestore.utils.weights import WeightsNotFoundError


def _weights(weights_dir, name):
    path = weights_dir / name
    if not path.is_file():
        pytest.skip(f"{name} not in {weights_dir}")
    return str(path)


# ------------------------------------------------------------------ NumPy MatConvNet reference


def _mat_layers(path):
    """(type, [arrays in MATLAB order]) per layer, read with h5py only."""
    out = []
    with h5py.File(path, "r") as f:
        for ref in f["net"]["layers"][:, 0]:
            g = f[ref]
            kind = "".join(chr(c) for c in g["type"][:].ravel())
            arrays = []
            if "weights" in g and g["weights"].dtype == object:
                arrays = [np.array(f[r]).T for r in g["weights"][:].ravel()]
            out.append((kind, arrays))
    return out


def _conv(x, w, b):
    """MatConvNet conv, pad 1: x (H, W, I), w (3, 3, I, O) MATLAB order (O may be squeezed)."""
    w = w.reshape(3, 3, x.shape[2], -1)
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    h, wd = x.shape[:2]
    y = np.zeros((h, wd, w.shape[3]))
    for i in range(3):
        for j in range(3):
            y += p[i : i + h, j : j + wd] @ w[i, j]
    return y + b.ravel()


def _subp_down(x):
    h, w, c = x.shape
    y = np.zeros((h // 2, w // 2, 4 * c))
    for ch in range(c):
        for col in range(2):
            for row in range(2):
                y[..., ch * 4 + col * 2 + row] = x[row::2, col::2, ch]
    return y


def _subp_up(y):
    h, w, c4 = y.shape
    x = np.zeros((2 * h, 2 * w, c4 // 4))
    for ch in range(c4 // 4):
        for col in range(2):
            for row in range(2):
                x[row::2, col::2, ch] = y[..., ch * 4 + col * 2 + row]
    return x


def numpy_simplenn(path, image, sigma=None):
    x = image.astype(np.float64)
    for kind, arrays in _mat_layers(path):
        if kind == "SubP" and x.shape[2] in (1, 3):
            x = _subp_down(x)
        elif kind == "SubP":
            x = _subp_up(x)
        elif kind == "concat":
            x = np.concatenate([x, np.full(x.shape[:2] + (1,), sigma)], axis=2)
        elif kind == "conv":
            x = _conv(x, *arrays)
        elif kind == "relu":
            x = np.maximum(x, 0)
    return x if sigma is not None else image - x  # DnCNN predicts the noise


@pytest.mark.parametrize(
    "preset, shape",
    [
        ("ffdnet_color", (20, 26, 3)),
        ("ffdnet_gray", (18, 22, 1)),
        ("ffdnet_color_clip", (16, 16, 3)),
        ("cdncnn_b_color", (14, 18, 3)),
        ("dncnn_s25_gray", (16, 12, 1)),
    ],
)
def test_presets_equal_an_independent_numpy_forward_pass(weights_dir, preset, shape):
    spec = get_preset(preset)
    path = _weights(weights_dir, spec.filename)
    rng = np.random.default_rng(0)
    image = np.clip(rng.uniform(size=shape) + 0.1 * rng.standard_normal(shape), 0, 1)
    sigma = 30 / 255 if spec.takes_sigma else None
    expected = numpy_simplenn(path, image, sigma)
    model = from_preset(preset)
    x = image[None].astype("float32")
    got = model([x, np.full((1, 1), sigma, "float32")]) if sigma else model(x)
    np.testing.assert_allclose(np.asarray(got)[0], expected, atol=2e-4)


# ------------------------------------------------------------------ mapping onto the models


def test_released_model_infers_the_architecture(weights_dir):
    ffdnet = released_model(_weights(weights_dir, "FFDNet_gray.mat"))
    assert len(ffdnet.inputs) == 2 and ffdnet.count_params() == 485316
    dncnn = released_model(_weights(weights_dir, "DnCNN_GD_Color_Blind.mat"))
    assert len(dncnn.inputs) == 1 and len([la for la in dncnn.layers if "conv" in la.name]) == 20


def test_a_mismatched_model_is_refused_with_the_builder_to_use(weights_dir):
    path = _weights(weights_dir, "FFDNet_color.mat")
    with pytest.raises(ReleasedWeightsError, match=r"FFDNet\(\*\*\{'channels': 3, 'depth': 12"):
        load_released_weights(DnCNN(channels=3, depth=12, filters=96), path)
    with pytest.raises(ReleasedWeightsError, match="layer 'conv1'.*has weights"):
        load_released_weights(FFDNet(channels=3, depth=12, filters=64), path)
    model = FFDNet(channels=3, depth=4, filters=8)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ReleasedWeightsError, match="4 convolutions"):
        load_released_weights(model, path)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing assigned


def test_dncnn_mat_and_pth_agree(weights_dir):
    pth = _weights(weights_dir, "KAIR_dncnn_25.pth")
    mat = _weights(weights_dir, "DnCNN_gray_sigma25.mat")
    x = np.random.default_rng(0).uniform(size=(1, 40, 36, 1)).astype("float32")
    a = np.asarray(released_model(mat)(x))
    b = np.asarray(released_model(pth)(x))
    np.testing.assert_allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------ presets


def test_list_presets_has_one_line_per_preset():
    presets = list_presets()
    for name in ("ffdnet_color", "ffdnet_gray", "ffdnet_color_clip", "ffdnet_gray_clip",
                 "cdncnn_b_color", "dncnn_s25_gray"):
        assert name in presets and "\n" not in presets[name]
    assert "colour" in presets["ffdnet_color"] and "27.96 dB CBSD68" in presets["ffdnet_color"]
    assert "grey" in presets["dncnn_s25_gray"] and "sigma=25" in presets["dncnn_s25_gray"]


def test_unknown_preset_names_the_close_one():
    with pytest.raises(ValueError, match=r"did you mean 'ffdnet_color'\?.*available: ffdnet_color"):
        from_preset("ffdnet_colour")


def test_preset_urls_point_at_the_authors_files_at_a_commit():
    for preset in PRESETS.values():
        assert preset.url.startswith(f"https://github.com/{preset.repository}/raw/")
        assert preset.url.endswith(preset.path) and len(preset.sha256) == 64


def test_offline_preset_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsNotFoundError, match=r"put `FFDNet_gray.mat` into the directory"):
        from_preset("ffdnet_gray")


def test_preset_from_an_explicit_path_and_the_keras_cache(weights_dir, tmp_path, monkeypatch):
    import shutil

    src = _weights(weights_dir, "FFDNet_gray.mat")
    monkeypatch.delenv("TFRESTORE_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "models")
    shutil.copy(src, tmp_path / "models" / "FFDNet_gray.mat")  # hash checked there
    cached = from_preset("ffdnet_gray")
    explicit = from_preset("ffdnet_gray", weights=src)
    for a, b in zip(cached.get_weights(), explicit.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_ffdnet_preset_keeps_the_two_input_signature(weights_dir):
    _weights(weights_dir, "FFDNet_color.mat")
    model = from_preset("ffdnet_color")
    assert model.name == "ffdnet_color"
    assert [tuple(i.shape) for i in model.inputs] == [(None, None, None, 3), (None, 1)]
    out = model([np.zeros((2, 9, 7, 3), "float32"), np.full((2, 1), 50 / 255, "float32")])
    assert out.shape == (2, 9, 7, 3)


# ------------------------------------------------------------------ tfrestore convert matconvnet / torch


def _convert(argv):
    from tfrestore.cli import main

    return main(["convert", *argv])


def test_convert_cli_writes_a_model_that_computes_the_same(weights_dir, tmp_path, capsys):
    import keras

    src = _weights(weights_dir, "FFDNet_gray.mat")
    out = tmp_path / "ffdnet_gray.keras"
    assert _convert(["matconvnet", src, str(out)]) == 0
    assert "converted FFDNet (15 convolutions, 485,316 parameters)" in capsys.readouterr().out
    loaded = keras.saving.load_model(out, compile=False)
    x = [np.random.default_rng(1).uniform(size=(1, 12, 10, 1)).astype("float32"),
         np.full((1, 1), 0.1, "float32")]
    np.testing.assert_allclose(loaded(x), from_preset("ffdnet_gray")(x), atol=1e-6)
    weights = tmp_path / "dncnn.weights.h5"
    pth = _weights(weights_dir, "KAIR_dncnn_25.pth")
    assert _convert(["torch", pth, str(weights)]) == 0
    printed = capsys.readouterr().out
    assert "load with: tfrestore.models.DnCNN(channels=1, depth=17" in printed
    DnCNN(channels=1, depth=17, filters=64, batch_norm=False, output_bias=True).load_weights(
        weights
    )
    assert sorted(os.listdir(tmp_path)) == ["dncnn.weights.h5", "ffdnet_gray.keras"]  # no temp


def test_convert_cli_never_replaces_a_file_unasked(weights_dir, tmp_path, capsys):
    src = _weights(weights_dir, "FFDNet_gray.mat")
    mine = tmp_path / "mine.keras"
    mine.write_text("my file")
    assert _convert(["matconvnet", src, str(mine)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert mine.read_text() == "my file"
    assert _convert(["matconvnet", src, str(mine), "--overwrite"]) == 0
    link = tmp_path / "same.keras"
    os.symlink(src, link)
    assert _convert(["matconvnet", src, str(link), "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["matconvnet", "/no/such.mat", "out.keras"], "'/no/such.mat' does not exist"),
        (["matconvnet", "in.mat", "out.h5"], "must end in .keras or .weights.h5"),
        (["torch", "{FFDNet_gray.mat}", "out.keras"], "use `tfrestore convert matconvnet`"),
        (["matconvnet", "{KAIR_dncnn_25.pth}", "out.keras"], "use `tfrestore convert torch`"),
    ],
)
def test_convert_cli_errors_are_one_line(weights_dir, tmp_path, capsys, argv, needle):
    argv = [a.format(**{}) if "{" not in a else str(weights_dir / a[1:-1]) for a in argv]
    argv[-1] = str(tmp_path / argv[-1])
    assert _convert(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and needle in err
