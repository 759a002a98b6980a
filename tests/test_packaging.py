"""pyproject.toml: every package is shipped, the training configs go in as package data
(tfrestore.configs), and TensorFlow is the plain `tensorflow` distribution (CUDA as an extra)."""

import pathlib
import subprocess
import sys
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_is_listed_and_configs_come_from_train():
    setuptools = PYPROJECT["tool"]["setuptools"]
    inits = (REPO / "tfrestore").rglob("__init__.py")
    found = {".".join(p.parent.relative_to(REPO).parts) for p in inits}
    assert set(setuptools["packages"]) == found | {"tfrestore.configs"}
    assert setuptools["package-dir"] == {"tfrestore.configs": "train/configs"}
    assert setuptools["package-data"] == {"tfrestore.configs": ["*.yaml"]}
    assert sorted((REPO / "train" / "configs").glob("*.yaml"))


def test_tensorflow_is_the_plain_distribution_with_a_cuda_extra():
    deps = PYPROJECT["project"]["dependencies"]
    names = [d.split(";")[0].split("[")[0].split("~")[0].split(">")[0].split("=")[0].strip()
             for d in deps]
    assert "tensorflow" in names and "tensorflow-cpu" not in names
    assert PYPROJECT["project"]["optional-dependencies"]["cuda"] == [
        "tensorflow[and-cuda]>=2.21,<2.22"
    ]
    assert "tensorflow>=2.21,<2.22" in deps


def test_shipped_configs_are_the_train_configs():
    from tfrestore.training.config import load_config, shipped_configs

    configs = shipped_configs()
    assert sorted(configs) == sorted(p.stem for p in (REPO / "train" / "configs").glob("*.yaml"))
    for name, info in configs.items():
        assert info.description and "\n" not in info.description, name
        assert load_config(name)["name"] == name


def test_import_tfrestore_registers_keras_classes_and_keeps_the_rest_lazy():
    """``import tfrestore`` is enough for keras.saving.load_model of a tfrestore model; the
    data/training/convert subpackages still load on first use (the command line is tested to
    import no TensorFlow for --help in tests/test_cli.py)."""
    code = (
        "import sys, keras, tfrestore\n"
        "for name in ('tfrestore>L1', 'tfrestore>D2SMLoss', 'tfrestore>PSNR',\n"
        "             'tfrestore>RestorationModel'):\n"
        "    assert keras.saving.get_registered_object(name) is not None, name\n"
        "assert 'tfrestore.training' not in sys.modules and 'tfrestore.data' not in sys.modules\n"
        "assert 'losses' in dir(tfrestore) and 'train' in tfrestore.training.__all__\n"
        "from tfrestore.convert import TorchCheckpointError\n"
        "try:\n"
        "    tfrestore.nothing\n"
        "except AttributeError as e:\n"
        "    assert 'nothing' in str(e)\n"
    )
    env = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
