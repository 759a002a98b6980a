"""Initialise a model from another model's weights (fine-tuning).

:func:`copy_weights` copies weights layer by layer, matching layers by name, so a model
initialises any model of the same layers whatever its inputs: an FFDNet built with a scalar
noise-level input (the presets) initialises one built with ``sigma_input="map"``.
:func:`load_weights_file` loads a ``.weights.h5`` file (``model.save_weights``) into a model
of the exact architecture, checking the file's layout first.

Both check everything before changing the target and raise :class:`WeightTransferError` naming
the layer and both shapes:

>>> from tfrestore.models import FFDNet, copy_weights
>>> source = FFDNet(channels=3, depth=3, filters=8)
>>> target = FFDNet(channels=3, depth=3, filters=8, sigma_input="map")
>>> copy_weights(source, target)
['conv1', 'conv2', 'conv3']
>>> copy_weights(source, FFDNet(channels=3, depth=3, filters=16))
Traceback (most recent call last):
...
tfrestore.models.transfer.WeightTransferError: layer 'conv1': the source's weights have shapes
[(3, 3, 13, 8), (8,)], the target's [(3, 3, 13, 16), (16,)] (and 2 more layer(s) do not fit)
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["WeightTransferError", "copy_weights", "load_weights_file", "weight_shapes"]


class WeightTransferError(ValueError):
    """The source's weights do not fit the target.

    Attributes:
        layer: name of the first layer that does not fit.
        source_shapes: its weight shapes in the source (``None``: no such layer with weights).
        target_shapes: its weight shapes in the target (``None``: no such layer with weights).
        problems: how many layers do not fit.
    """

    def __init__(self, layer, source_shapes, target_shapes, problems=1):
        self.layer = layer
        self.source_shapes = source_shapes
        self.target_shapes = target_shapes
        self.problems = problems
        if source_shapes is None:
            text = (
                f"layer {layer!r}: the target has weights {_fmt(target_shapes)} that the source "
                "lacks"
            )
        elif target_shapes is None:
            text = (
                f"layer {layer!r}: the source has weights {_fmt(source_shapes)} that the target "
                "lacks"
            )
        else:
            text = (
                f"layer {layer!r}: the source's weights have shapes {_fmt(source_shapes)}, the "
                f"target's {_fmt(target_shapes)}"
            )
        if problems > 1:
            text += f" (and {problems - 1} more layer(s) do not fit)"
        super().__init__(text)


def _fmt(shapes):
    return "[" + ", ".join(str(tuple(s)) for s in shapes) + "]"


def weight_shapes(model):
    """``{layer name: [weight shapes]}`` of the layers of ``model`` that hold weights (in
    ``model.layers`` order; a nested model counts as one layer with all its weights)."""
    return {
        layer.name: [tuple(int(d) for d in w.shape) for w in layer.weights]
        for layer in model.layers
        if layer.weights
    }


def _mismatches(source, target):
    """``[(layer, source_shapes or None, target_shapes or None)]``, target order first."""
    out = []
    for name, shapes in target.items():
        if name not in source:
            out.append((name, None, shapes))
        elif source[name] != shapes:
            out.append((name, source[name], shapes))
    out += [(name, shapes, None) for name, shapes in source.items() if name not in target]
    return out


def _raise_first(problems):
    if problems:
        raise WeightTransferError(*problems[0], problems=len(problems))


def copy_weights(source, target):
    """Copy every weight of ``source`` into the layer of the same name of ``target``.

    Layers without weights (inputs, reshapes, activations, noise-level maps) are ignored, so the
    two models may differ in their inputs and weight-free layers. Every layer with weights must
    exist in both models with the same weight shapes (BatchNormalization's moving statistics
    included); nothing is copied unless all of them fit.

    Args:
        source: a built Keras model (e.g. a preset or a loaded ``.keras`` file).
        target: a built Keras model with the same weight layers.

    Returns:
        The names of the layers copied, in the target's order.

    Raises:
        WeightTransferError: a target layer with weights the source lacks, a source layer
            with weights the target lacks, or different shapes; the message names the layer and
            both shapes.
    """
    src, tgt = weight_shapes(source), weight_shapes(target)
    _raise_first(_mismatches(src, tgt))
    for name in tgt:
        target.get_layer(name).set_weights(source.get_layer(name).get_weights())
    return list(tgt)


def _file_shapes(path):
    """``{group under layers/: {variable path: shape}}`` of a Keras 3 ``.weights.h5`` file."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        if "layers" not in f:
            return out

        def visit(prefix, group):
            for key, item in group.items():
                if isinstance(item, h5py.Dataset):
                    yield f"{prefix}{key}", tuple(int(d) for d in item.shape)
                else:
                    yield from visit(f"{prefix}{key}/", item)

        for key, group in f["layers"].items():
            out[key] = dict(visit("", group))
    return out


def _file_keys(model):
    """``{group under layers/: layer name}`` as Keras names a functional model's layers in a
    weights file (snake-cased class name, numbered per class in ``model.layers`` order)."""
    import re

    used, out = {}, {}
    for layer in model.layers:
        cls = type(layer).__name__
        # as Keras' naming.to_snake_case
        base = re.sub(r"\W+", "", cls)
        base = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", base)
        base = re.sub("([a-z])([A-Z])", r"\1_\2", base).lower()
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        out[key] = layer.name
    return out


def load_weights_file(target, path):
    """``target.load_weights(path)`` for a ``.weights.h5`` file of the exact architecture,
    after checking the file holds a variable of the same shape for each of the target's.

    Keras stores such files by layer class and position (``conv2d_3``), not by layer name: the
    file must come from the same architecture (``model.save_weights`` of a model built with the
    same arguments).

    Raises:
        FileNotFoundError: no such file.
        WeightTransferError: the file's variables do not fit (names the target's layer, or the
            file's group when the target has no such layer, and both shapes).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weights file: {path}")
    with tempfile.TemporaryDirectory() as tmp:
        own = os.path.join(tmp, "target.weights.h5")
        target.save_weights(own)
        expected = _file_shapes(own)
    found = _file_shapes(path)
    names = _file_keys(target)

    def shapes(entry):  # in variable order (vars/2 before vars/10)
        order = sorted(entry, key=lambda k: [int(t) if t.isdigit() else t for t in k.split("/")])
        return [entry[k] for k in order] if entry else None

    problems = []
    order = [k for k in names if k in expected] + [k for k in expected if k not in names]
    for key in order + [k for k in found if k not in expected]:  # the target's layer order
        exp, got = expected.get(key) or {}, found.get(key) or {}
        if exp != got and (exp or got):
            problems.append((names.get(key, key), shapes(got), shapes(exp)))
    _raise_first(problems)
    target.load_weights(path)
