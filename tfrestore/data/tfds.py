"""Optional TFDS access to standard restoration datasets (imports ``tensorflow_datasets`` lazily).

The builders in ``tfrestore.data.tfds_builders`` read datasets the user has already
downloaded (licences forbid redistribution or require registration), from a
``manual_dir``; their names carry a ``tfrestore_`` prefix so they never collide with
the TFDS catalog (e.g. ``tfrestore_div2k`` next to the catalog's ``div2k``).

Plain ``tf.data`` (``image_dataset`` / ``paired_dataset``) stays the core path; use
TFDS when you want prepared TFRecords, fixed splits and dataset metadata.

TFDS 4.9.10 needs ``importlib_resources`` on Python >= 3.9 for builders defined in a
package (tensorflow/datasets#11212); tfrestore depends on it.
"""

from __future__ import annotations

import os

__all__ = ["TFDS_BUILDERS", "tfds_builder", "load_tfds"]

#: Short name -> registered TFDS name (configs in parentheses where the builder has them).
TFDS_BUILDERS = {
    "kodak24": "tfrestore_kodak24",
    "cbsd68": "tfrestore_cbsd68",
    "cbsd432": "tfrestore_cbsd432",
    "set12": "tfrestore_set12",
    "set5": "tfrestore_set5",  # configs bicubic_x2 / bicubic_x3 / bicubic_x4
    "set14": "tfrestore_set14",  # configs bicubic_x2 / bicubic_x3 / bicubic_x4
    "div2k": "tfrestore_div2k",  # configs bicubic_x2..x4, unknown_x2..x4
    "cityscapes": "tfrestore_cityscapes",
}


def _resolve(name):
    base, _, config = name.partition("/")
    full = TFDS_BUILDERS.get(base, base)
    if full not in TFDS_BUILDERS.values():
        raise ValueError(
            f"Unknown tfrestore TFDS dataset {name!r}; choose from {sorted(TFDS_BUILDERS)} "
            f"(or their full names {sorted(TFDS_BUILDERS.values())}), optionally with '/<config>'."
        )
    return full, config or None


def tfds_builder(name, *, data_dir=None, config=None):
    """The TFDS builder for ``name`` (``"div2k"``, ``"tfrestore_div2k/bicubic_x4"``, ...).

    Example:
        >>> tfds_builder("set5/bicubic_x4").info.name
        'tfrestore_set5'
    """
    import tensorflow_datasets as tfds

    import tfrestore.data.tfds_builders  # noqa: F401  (registers the builders)

    full, cfg = _resolve(name)
    cfg = config or cfg
    kwargs = {"data_dir": os.fspath(data_dir)} if data_dir is not None else {}
    if cfg is not None:
        kwargs["config"] = cfg
    return tfds.builder(full, **kwargs)


def load_tfds(
    name,
    split=None,
    *,
    manual_dir=None,
    data_dir=None,
    config=None,
    as_supervised=False,
    shuffle_files=False,
):
    """Prepare (from ``manual_dir``, once) and load a tfrestore TFDS dataset.

    Args:
        name: str. See ``TFDS_BUILDERS`` (``"set5/bicubic_x4"``, ``"tfrestore_div2k"``, ...).
        split: str or None. A split name (``"train"``, ``"validation"``, ``"test"``); None
            for all.
        manual_dir: str or None. Folder holding the downloaded files/archives (see each
            builder's ``MANUAL_DOWNLOAD_INSTRUCTIONS``); not needed once prepared in
            ``data_dir``.
        data_dir: str or None. Where TFDS writes the prepared TFRecords (None:
            ``~/tensorflow_datasets``).
        config: str or None. Builder config, e.g. ``"bicubic_x4"``.
        as_supervised: ``(lr, hr)`` tuples for SR builders, ``(image, segmentation)`` for
            Cityscapes.

    Returns:
        ``tf.data.Dataset`` (or a dict of them when ``split`` is None) with uint8 images.
    """
    import tensorflow_datasets as tfds

    builder = tfds_builder(name, data_dir=data_dir, config=config)
    dl_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None
    )
    builder.download_and_prepare(download_config=dl_config)
    return builder.as_dataset(split=split, as_supervised=as_supervised, shuffle_files=shuffle_files)
