"""Pretrained restorers by name: the authors' released FFDNet and DnCNN weights.

``from_preset(name)`` returns a ready model; ``list_presets()`` says what each is. Weight
files are resolved like every weight file of tfrestore: an explicit ``weights=`` path →
``$TFRESTORE_WEIGHTS_DIR/<file>`` → the Keras cache → a download from the authors'
repository at a fixed commit, checked against its SHA-256. Offline, the error names the
file and where to put it.

FFDNet presets take two inputs, ``model([image, sigma])``: RGB or grey images in [0, 1]
and the noise level ``sigma`` of shape ``(B, 1)`` in the same units (``50 / 255``).
DnCNN presets take the image alone.

>>> from tfrestore.models import list_presets
>>> print(list_presets()["ffdnet_color"])
colour AWGN denoising, non-blind (sigma input, 0-75/255), cszn/FFDNet FFDNet_color.mat; published 27.96 dB CBSD68 sigma=50
"""

from __future__ import annotations

import dataclasses

from tfrestore.utils.weights import resolve_weights_file

__all__ = ["Preset", "PRESETS", "list_presets", "get_preset", "from_preset"]

_COMMITS = {
    "cszn/FFDNet": "e787f46df2f374ff3591186706229cb9a0591fea",
    "cszn/DnCNN": "e93b27812d3ff523a3a79d19e5e50d233d7a8d0a",
    "cszn/KAIR": "fc1732f4a4514e42ce15e5b3a1e18c828af47a1e",
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """One released model.

    Attributes:
        name: the preset's name.
        architecture: ``"FFDNet"`` or ``"DnCNN"`` (the :mod:`tfrestore.models` builder).
        args: the builder's keyword arguments.
        filename: the weight file's name (looked up in ``$TFRESTORE_WEIGHTS_DIR``).
        repository: ``owner/name`` on GitHub; ``path`` the file's path there.
        sha256: the file's SHA-256 (checked for downloads and the Keras cache).
        task: one line on what the model does.
        noise: the noise levels it was trained for (``(low, high)`` in 0..255, or one level).
        clip: True when it was trained on noisy inputs clipped to [0, 1] (8-bit).
        published: ``{test set: {sigma: PSNR}}`` from the authors' papers.
    """

    name: str
    architecture: str
    args: dict
    filename: str
    repository: str
    path: str
    sha256: str
    task: str
    noise: tuple
    clip: bool = False
    published: dict = dataclasses.field(default_factory=dict)

    @property
    def url(self):
        return f"https://github.com/{self.repository}/raw/{_COMMITS[self.repository]}/{self.path}"

    @property
    def takes_sigma(self):
        """Whether the model takes the noise level as its second input (FFDNet)."""
        return self.architecture == "FFDNet"

    def describe(self):
        low, high = self.noise if len(self.noise) == 2 else (self.noise[0], self.noise[0])
        level = f"sigma={low:g}" if low == high else f"{low:g}-{high:g}/255"
        kind = "non-blind (sigma input, " + level + ")" if self.takes_sigma else (
            f"blind ({level})" if low != high else f"for {level}"
        )
        text = f"{self.task}, {kind}{', clipped noisy input' if self.clip else ''}, "
        text += f"{self.repository} {self.path.rsplit('/', 1)[-1]}"
        if self.published:
            test_set, table = next(iter(self.published.items()))
            sigma = 50 if 50 in table else next(iter(table))
            text += f"; published {table[sigma]:.2f} dB {test_set} sigma={sigma}"
        return text


_FFDNET_COLOR = {
    "CBSD68": {15: 33.87, 25: 31.21, 35: 29.58, 50: 27.96, 75: 26.24},
    "Kodak24": {15: 34.63, 25: 32.13, 35: 30.57, 50: 28.98, 75: 27.27},
}
_CDNCNN_B = {
    "CBSD68": {15: 33.89, 25: 31.23, 35: 29.58, 50: 27.92, 75: 24.47},
    "Kodak24": {15: 34.48, 25: 32.03, 35: 30.46, 50: 28.85, 75: 25.04},
}
_FFDNET_GRAY = {"BSD68": {15: 31.63, 25: 29.19, 35: 27.73, 50: 26.29, 75: 24.79}}
_DNCNN_S25 = {"BSD68": {25: 29.23}, "Set12": {25: 30.44}}

_GREY_DNCNN = dict(channels=1, depth=17, filters=64, batch_norm=False, output_bias=True)
_COLOR_DNCNN = dict(channels=3, depth=20, filters=64, batch_norm=False, output_bias=True)

PRESETS = {
    p.name: p
    for p in (
        Preset(
            "ffdnet_color", "FFDNet", dict(channels=3), "FFDNet_color.mat", "cszn/FFDNet",
            "models/FFDNet_color.mat",
            "a4b5a9da21294ab9ba6ed5c6cc459c46dff20c025eb7d3ab82e8e0bb00541793",
            "colour AWGN denoising", (0, 75), published=_FFDNET_COLOR,
        ),
        Preset(
            "ffdnet_gray", "FFDNet", dict(channels=1), "FFDNet_gray.mat", "cszn/FFDNet",
            "models/FFDNet_gray.mat",
            "14c231e87a444a9bd85b0b5e174e73b4f6ac50bf4050e75a0d3f4d69f77a2093",
            "grey AWGN denoising", (0, 75), published=_FFDNET_GRAY,
        ),
        Preset(
            "ffdnet_color_clip", "FFDNet", dict(channels=3), "FFDNet_Clip_color.mat",
            "cszn/FFDNet", "models/FFDNet_Clip_color.mat",
            "7966f04fbe529d45181a3a19b51fff7f1939a9fefce8a0b44dc878b3cd6bf6a2",
            "colour AWGN denoising", (0, 75), clip=True,
        ),
        Preset(
            "ffdnet_gray_clip", "FFDNet", dict(channels=1), "FFDNet_Clip_gray.mat",
            "cszn/FFDNet", "models/FFDNet_Clip_gray.mat",
            "c51ca4b7920313015caa5a773339701bc3d0c900b41a5aed7847efd1243400f3",
            "grey AWGN denoising", (0, 75), clip=True,
        ),
        Preset(
            "cdncnn_b_color", "DnCNN", _COLOR_DNCNN, "DnCNN_GD_Color_Blind.mat", "cszn/DnCNN",
            "model/GD_Color_Blind.mat",
            "57db5437a44037e7675a99042fe7b14d3dcdf1c333d3ec665855566e8a59795c",
            "colour AWGN denoising (CDnCNN-B)", (0, 55), published=_CDNCNN_B,
        ),
        Preset(
            "dncnn_s50_color", "DnCNN", _COLOR_DNCNN, "DnCNN_color_sigma50.mat", "cszn/DnCNN",
            "model/specifics_color/color_sigma=50.mat",
            "84632c872b1191826f1c493eba6926cf626173b80c2b52889401616ee1eb7ad5",
            "colour AWGN denoising", (50,),
        ),
        Preset(
            "dncnn_s25_gray", "DnCNN", _GREY_DNCNN, "DnCNN_gray_sigma25.mat", "cszn/DnCNN",
            "model/specifics/sigma=25.mat",
            "5a5404c9e3ef14e353760e14b885439408a654618e14f13b2e97b99b9835020b",
            "grey AWGN denoising (DnCNN-S)", (25,), published=_DNCNN_S25,
        ),
        Preset(
            "dncnn_s25_gray_kair", "DnCNN", _GREY_DNCNN, "KAIR_dncnn_25.pth", "cszn/KAIR",
            "model_zoo/dncnn_25.pth",
            "0451a70de9b672ae037270498fbb1c17a1c1c4403785df586ff65df5b858e5b0",
            "grey AWGN denoising (DnCNN-S, PyTorch state dict)", (25,), published=_DNCNN_S25,
        ),
    )
}


def list_presets():
    """``{name: one-line description}`` of every preset (task, channels, noise levels,
    source file, a published PSNR)."""
    return {name: preset.describe() for name, preset in PRESETS.items()}


def get_preset(name):
    """The :class:`Preset` called ``name``; ``ValueError`` listing the names otherwise."""
    if isinstance(name, str) and name in PRESETS:
        return PRESETS[name]
    import difflib

    close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown preset {name!r}{hint}; available: {', '.join(PRESETS)} "
        "(tfrestore.models.list_presets() describes them)"
    )


def from_preset(name, weights=None):
    """The released model called ``name``, with its weights.

    Args:
        name: a preset name (see :func:`list_presets`).
        weights: an explicit path to the weight file (``.mat`` or ``.pth``); by default
            it is looked up in ``$TFRESTORE_WEIGHTS_DIR``, the Keras cache, then
            downloaded from the authors' repository and checked against its SHA-256.

    Returns:
        A :class:`RestorationModel` named after the preset.

    Raises:
        ValueError: unknown name.
        WeightsNotFoundError: no local file and no download (the message says which file
            to put where).
    """
    from tfrestore import models
    from tfrestore.models.released import load_released_weights

    preset = get_preset(name)
    path = resolve_weights_file(
        preset.filename,
        origin=preset.url,
        file_hash=preset.sha256,
        path=weights,
        description=f"the {preset.name} preset ({preset.repository} {preset.path})",
    )
    model = getattr(models, preset.architecture)(**preset.args, name=preset.name)
    return load_released_weights(model, path)
