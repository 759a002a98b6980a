"""Matching real LQ/GT image pairs by file name."""

from __future__ import annotations

import os
import pathlib
import re

from tfrestore.data.io import ImageFileError

__all__ = ["match_pairs"]


def _default_key(scale):
    suffix = re.compile(rf"[xX]{scale}$") if scale > 1 else None

    def key(path):
        stem = pathlib.Path(path).stem
        return suffix.sub("", stem) if suffix is not None else stem

    return key


def match_pairs(lq_paths, gt_paths, *, scale=1, key=None):
    """Match LQ and GT files by name; returns ``(lq_paths, gt_paths)`` in matching order.

    The default key is the file stem, with a trailing ``x{scale}`` removed (DIV2K names
    its LR files ``0001x4.png``). ``key`` may be any callable ``path -> str`` used for both
    sides. Raises ``ImageFileError`` listing unmatched and duplicate names.

    Example:
        >>> match_pairs(["lq/0001x2.png"], ["gt/0001.png"], scale=2)
        (['lq/0001x2.png'], ['gt/0001.png'])
    """
    key_fn = key or _default_key(scale)

    def index(paths, side):
        out = {}
        for p in paths:
            k = key_fn(p)
            if k in out:
                raise ImageFileError(
                    f"paired_dataset: two {side} files have the same key {k!r}: "
                    f"{out[k]!r} and {p!r}"
                )
            out[k] = p
        return out

    lq, gt = index(lq_paths, "LQ"), index(gt_paths, "GT")
    only_lq = sorted(set(lq) - set(gt))
    only_gt = sorted(set(gt) - set(lq))
    if only_lq or only_gt:

        def show(keys, table):
            names = [os.path.basename(table[k]) for k in keys[:10]]
            return ", ".join(names) + (f", ... ({len(keys)} in all)" if len(keys) > 10 else "")

        parts = []
        if only_lq:
            parts.append(f"{len(only_lq)} LQ file(s) have no GT match: {show(only_lq, lq)}")
        if only_gt:
            parts.append(f"{len(only_gt)} GT file(s) have no LQ match: {show(only_gt, gt)}")
        raise ImageFileError(
            "paired_dataset: LQ and GT files do not match by name; " + "; ".join(parts)
        )
    keys = sorted(lq)
    return [lq[k] for k in keys], [gt[k] for k in keys]

