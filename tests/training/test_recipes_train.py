"""Every shipped recipe (train/configs/*.yaml) trains.

Each config runs as written (model, losses, degradation, data source, optimizer) except for
what makes the run short: epochs, steps, crops, batch sizes, evaluation sizes, no warm-up and,
where a few dozen steps need it, a larger learning rate. The run must lower its training loss
and restore the held-out images (metrics.csv) better than their degraded input.

The models that start from their input (EDSR ``input_skip``, UNet ``identity_init``) score
exactly the input's PSNR before training, so the margin below is learnt, not inherited.
"""

import csv
import pathlib

import numpy as np
import pytest

from tfrestore.training.runner import train

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = REPO / "train" / "configs"

# Learnt PSNR gain over the degraded input (mean over the held-out images) a short run must reach.
MARGIN_DB = 0.1

QUICK = [
    "train.verbose=0",
    "schedule.warmup_steps=0",
    "output.tensorboard=false",
    "output.backup=false",
    "output.image_summaries=0",
    "metrics.lpips=false",
]
# Folder sources (cbsd432 / cbsd68): two validation and two held-out images.
FOLDER_EVAL = [
    "data.val.max_images=2",
    "data.val.batch_size=2",
    "data.val.crop=96",
    "data.test.max_images=2",
    "data.test.max_size=128",
]
UNET = [
    "train.epochs=3",
    "train.steps_per_epoch=15",
    "data.batch_size=4",
    "data.crop=64",
    "data.val.crop=128",
    "data.test.max_size=256",
    "optimizer.learning_rate=1.0e-3",
]
SHRINK = {
    "denoise": FOLDER_EVAL
    + ["train.epochs=4", "train.steps_per_epoch=20", "data.batch_size=8", "data.crop=40"],
    "denoise_demo": ["train.epochs=4", "train.steps_per_epoch=20"],
    # 96 px crops with 48 px windows at stride 16 (VGG16 conv5_3's stride): 4 x 4 sliding windows
    # per image, the queue holding two batches of them. One noise level from the recipe's blind
    # range [0, 75]/255: with a random level per held-out image the input PSNR varies from 16 to
    # 32 dB with the seed, and FFDNet (no global residual) cannot beat a 32 dB input in 80 steps.
    "denoise_d2sm": FOLDER_EVAL
    + [
        "data.degradation.args.sigma=50/255",
        "train.epochs=4",
        "train.steps_per_epoch=20",
        "data.batch_size=2",
        "data.crop=96",
        "losses[1].args.patch_size=48",
        "losses[1].args.patch_stride=16",
        "losses[1].args.queue_size=64",
        "optimizer.learning_rate=1.0e-3",
    ],
    "super_resolution": [
        "train.epochs=3",
        "train.steps_per_epoch=15",
        "data.batch_size=8",
        "data.crop=48",
        "data.val.crop=96",
        "data.test.max_size=192",
        "optimizer.learning_rate=5.0e-4",
    ],
    "dehaze": UNET,
    "derain": UNET,
    "lowlight": UNET,
}
NEEDS_WEIGHTS = {"denoise_d2sm"}  # D2SM's VGG16 has no fallback (denoise_demo's perceptual does)


def test_every_shipped_config_has_a_smoke_setting():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(SHRINK)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHRINK))
def test_recipe_trains(name, tmp_path, monkeypatch, request, capsys):
    data_dir = request.getfixturevalue("data_dir")
    monkeypatch.setenv("TFRESTORE_DATA_DIR", str(data_dir))
    if name in NEEDS_WEIGHTS:
        monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(request.getfixturevalue("weights_dir")))
    result = train(
        CONFIGS / f"{name}.yaml", overrides=QUICK + SHRINK[name], output_dir=tmp_path, fresh=True
    )
    losses = np.array(result.history["loss"], dtype=float)
    assert len(losses) == result.config["train"]["epochs"]
    assert np.isfinite(losses).all(), losses
    # Epoch means: the first holds the start of training, the last the end.
    assert losses[-1] < losses[0], losses
    with open(tmp_path / "report" / "metrics.csv") as f:
        mean = [r for r in csv.DictReader(f) if r["image"] == "mean"][0]
    psnr_in, psnr_out = float(mean["psnr_in"]), float(mean["psnr_out"])
    with capsys.disabled():  # the numbers quoted in the project notes
        print(
            f"\n[recipe smoke] {name}: {len(losses)} x {result.config['train']['steps_per_epoch']}"
            f" steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}, held-out PSNR input "
            f"{psnr_in:.2f} dB, restored {psnr_out:.2f} dB"
        )
    assert psnr_out > psnr_in + MARGIN_DB, (psnr_in, psnr_out)
