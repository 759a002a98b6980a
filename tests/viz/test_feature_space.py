"""tfrestore.viz: t-SNE feature-space plots and the command line."""

import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfrestore.viz import MissingVizDependency, embed_features, plot_feature_space, sample_features

_W = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype("float32"))


def _fx(x):
    return tf.nn.avg_pool2d(tf.nn.conv2d(x - 0.5, _W, 1, "SAME"), 4, 4, "VALID")


def _sets(rng, n=6, s=24):
    clean = rng.uniform(size=(n, s, s, 3)).astype("float32")
    noisy = np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1).astype("float32")
    flat = np.repeat(clean.mean(axis=(1, 2), keepdims=True), s, 1).repeat(s, 2)
    return {"clean": clean, "noisy": noisy, "restored": flat.astype("float32")}


def _colours(path):
    img = Image.open(path)
    img.load()
    arr = np.asarray(img.convert("RGB"))
    return img, {tuple(int(v) for v in c) for c in arr.reshape(-1, 3)[::7]}


def test_sample_features_are_d2sm_rows(rng):
    x = rng.uniform(size=(2, 24, 24, 3)).astype("float32")
    rows = sample_features(x, feature_extractor=_fx, patch_size=16, patch_stride=8)
    assert rows.shape == (2 * 4, 4 * 4 * 4)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    from tfrestore.losses import D2SMLoss

    ref = (
        D2SMLoss(feature_extractor=_fx, patch_size=16, patch_stride=8)
        .features(tf.constant(x))
        .numpy()
    )
    np.testing.assert_allclose(rows, ref.reshape(8, -1), rtol=1e-5, atol=1e-7)


def test_plot_writes_a_valid_png_with_several_colours(tmp_path, rng):
    out = tmp_path / "map.png"
    points, labels = plot_feature_space(
        _sets(rng), out, feature_extractor=_fx, patch_size=16, patch_stride=8
    )
    assert points.shape == (3 * 6 * 4, 2) and np.all(np.isfinite(points))
    assert labels.count("clean") == labels.count("noisy") == labels.count("restored") == 24
    assert out.stat().st_size > 0
    img, colours = _colours(out)
    assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
    for hex_colour in ("#1f77b4", "#d62728", "#2ca02c"):  # the three sets' markers
        # markers are drawn with alpha 0.8 on white
        rgb = tuple(0.8 * int(hex_colour[i:i + 2], 16) + 0.2 * 255 for i in (1, 3, 5))
        assert any(sum(abs(a - b) for a, b in zip(rgb, c)) < 30 for c in colours), hex_colour


def test_embedding_is_deterministic_and_validates(rng):
    sets = _sets(rng, n=5)
    a, _ = embed_features(sets, feature_extractor=_fx, seed=3)
    b, _ = embed_features(sets, feature_extractor=_fx, seed=3)
    np.testing.assert_allclose(a, b)
    with pytest.raises(ValueError, match="same height and width"):
        embed_features({"a": sets["clean"], "b": sets["noisy"][:, :16, :16]}, feature_extractor=_fx)
    with pytest.raises(ValueError, match="at least one"):
        embed_features({}, feature_extractor=_fx)


def test_missing_dependency_is_a_clear_error(monkeypatch, tmp_path, rng):
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(MissingVizDependency, match=r"tfrestore\[viz\]"):
        embed_features(_sets(rng), feature_extractor=_fx)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="matplotlib"):
        plot_feature_space(_sets(rng), tmp_path / "x.png", feature_extractor=_fx)


def test_command_line_with_random_vgg(tmp_path, rng):
    from tfrestore.cli import main as cli_main

    def main(argv):
        return cli_main(["viz", *argv])

    folder = tmp_path / "clean"
    folder.mkdir()
    for i in range(4):
        Image.fromarray((rng.uniform(size=(40, 36, 3)) * 255).astype("uint8")).save(
            folder / f"{i}.png"
        )
    out = tmp_path / "cli.png"
    rc = main(
        [
            "--images",
            f"clean={folder}",
            "--sigma",
            "0.2",
            "--crop-size",
            "32",
            "--backbone",
            "vgg16",
            "--layers",
            "conv5_3",
            "--weights",
            "none",
            "--patch-size",
            "32",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    img, colours = _colours(out)
    assert img.format == "PNG" and len(colours) > 3
    assert main(["--images", "clean", "--out", str(out)]) == 2  # one error line, no traceback
