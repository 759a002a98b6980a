"""The package's import layering, checked statically over every module's imports
(top-level and function-level ones, ``importlib.import_module("tfrestore...")`` too).

Layers, lowest first; a subpackage imports only from lower layers, never from its own
layer or above (``python tests/test_architecture.py`` prints the current graph)::

    utils
    convert                      generic PyTorch checkpoint reader, layout mapping
    features, diffusion, data    backbones; ADM config/layers/model + its conversion
    metrics
    losses
    models, callbacks, viz
    inference                    restore / evaluate a trained model
    training                     the runner reports through inference
    cli_convert, cli_viz, testing  commands' parsers and handlers; the loss test harness
    cli, __init__                the tfrestore command; the package's lazy exports
    __main__

Keras/TensorFlow internals (``keras.src``, ``tensorflow.python``) and stack-frame
inspection are confined to ``tfrestore/utils/keras_compat.py``.
"""

import ast
import collections
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1] / "tfrestore"

LAYERS = [
    ["utils"],
    ["convert"],
    ["features", "diffusion", "data"],
    ["metrics"],
    ["losses"],
    ["models", "callbacks", "viz"],
    ["inference"],
    ["training"],
    ["cli_convert", "cli_viz", "testing"],
    ["cli", "__init__"],
    ["__main__"],
]

#: subpackage -> the subpackages it may import (everything in lower layers)
ALLOWED = {
    name: {lower for below in LAYERS[:level] for lower in below}
    for level, names in enumerate(LAYERS)
    for name in names
}

COMPAT = ROOT / "utils" / "keras_compat.py"
PRIVATE_MODULES = ("keras.src", "tensorflow.python")
FRAME_ACCESS = ("_getframe", "currentframe", "stack", "f_back", "f_locals", "getouterframes")
#: private attributes of Keras/TensorFlow objects that tfrestore reads or writes
PRIVATE_ATTRS = ("_symbolic_build", "_history", "_num_workers", "_keras_history", "_value",
                 "_metrics", "_flat_losses", "_compile_loss", "_compile_metrics")


def _unit(path):
    """The subpackage (or top-level module) a file belongs to."""
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _module_name(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported(path, tree):
    """``(line, "tfrestore.x.y" or other absolute module)`` for every import in a file."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "tfrestore":  # `from tfrestore import losses`
                for alias in node.names:
                    yield node.lineno, f"tfrestore.{alias.name}"
            else:
                yield node.lineno, module
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _files():
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def import_edges():
    """``{(importer unit, imported unit): ["file:line module", ...]}`` across units."""
    units = {_unit(p) for p in _files()}
    edges = collections.defaultdict(list)
    for path in _files():
        src = _unit(path)
        for line, module in _imported(path, ast.parse(path.read_text())):
            parts = module.split(".")
            if parts[0] != "tfrestore" or len(parts) < 2 or parts[1] not in units:
                continue
            if parts[1] != src:
                rel = path.relative_to(ROOT.parent)
                edges[(src, parts[1])].append(f"{rel}:{line} imports {module}")
    return edges


def test_every_unit_is_in_a_layer():
    units = {_unit(p) for p in _files()}
    assert units <= set(ALLOWED), (
        f"{sorted(units - set(ALLOWED))} are in no layer of tests/test_architecture.py: "
        "add them to LAYERS"
    )


def test_subpackages_import_only_lower_layers():
    bad = [
        f"{where}  ({src} may import only {sorted(ALLOWED[src]) or 'nothing of tfrestore'})"
        for (src, dst), wheres in sorted(import_edges().items())
        if dst not in ALLOWED.get(src, ())
        for where in wheres
    ]
    assert not bad, "imports against the layering:\n  " + "\n  ".join(bad)


def test_no_two_subpackages_import_each_other():
    edges = import_edges()
    mutual = [
        f"{a} <-> {b}: {edges[(a, b)][0]}; {edges[(b, a)][0]}"
        for (a, b) in sorted(edges)
        if a < b and (b, a) in edges
    ]
    assert not mutual, "mutual subpackage imports:\n  " + "\n  ".join(mutual)


def test_internals_and_stack_walks_only_in_keras_compat():
    bad = []
    for path in _files():
        if path == COMPAT:
            continue
        tree = ast.parse(path.read_text())
        rel = path.relative_to(ROOT.parent)
        for line, module in _imported(path, tree):
            if module.startswith(PRIVATE_MODULES):
                bad.append(f"{rel}:{line} imports {module}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in FRAME_ACCESS:
                owner = node.value
                if node.attr == "stack" and getattr(owner, "id", None) != "inspect":
                    continue
                bad.append(f"{rel}:{node.lineno} uses .{node.attr} (stack inspection)")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in PRIVATE_ATTRS
                and getattr(node.value, "id", None) not in ("self", "cls")
            ):
                bad.append(f"{rel}:{node.lineno} uses the private attribute .{node.attr}")
    assert not bad, (
        "Keras/TensorFlow internals and stack inspection belong in "
        "tfrestore/utils/keras_compat.py (its test pins them):\n  " + "\n  ".join(bad)
    )


def test_the_checker_sees_lazy_relative_and_dynamic_imports(tmp_path, monkeypatch):
    """The parser reports function-level, relative and importlib imports."""
    pkg = tmp_path / "tfrestore"
    (pkg / "metrics").mkdir(parents=True)
    (pkg / "losses").mkdir()
    (pkg / "__init__.py").write_text("from tfrestore import metrics\n")
    (pkg / "losses" / "__init__.py").write_text("")
    (pkg / "metrics" / "__init__.py").write_text("")
    (pkg / "metrics" / "a.py").write_text(
        "import importlib\n"
        "def f():\n    from ..losses import base\n"
        "def g():\n    return importlib.import_module('tfrestore.losses.x')\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    edges = import_edges()
    assert sorted(edges) == [("__init__", "metrics"), ("metrics", "losses")]
    assert [w.split(" ")[0] for w in edges[("metrics", "losses")]] == [
        "tfrestore/metrics/a.py:3", "tfrestore/metrics/a.py:5"
    ]


if __name__ == "__main__":
    graph = collections.defaultdict(set)
    for src, dst in import_edges():
        graph[src].add(dst)
    for src in sorted(graph):
        print(f"{src:12s} -> {', '.join(sorted(graph[src]))}")
