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

Keras/TensorFlow internals (``keras.src``, ``tensorflow.python``) are confined to
``tfrestore/utils/keras_compat.py``; no module at all walks stack frames or patches a
model's methods (tfrestore uses Keras' documented hooks: ``Model.compile``,
``Model.compute_loss``, ``Model.metrics``, callbacks).
"""

import ast
import collections
import io
import pathlib
import sys
import tokenize

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
#: names that read the Python stack (code only: strings and comments may mention them)
FRAME_ACCESS = (
    "_getframe", "currentframe", "f_back", "f_locals", "f_globals", "f_code", "tb_frame",
    "getouterframes", "getinnerframes", "getframeinfo",
)
#: ``inspect.stack()`` / ``inspect.trace()``
INSPECT_FRAME_FUNCTIONS = ("stack", "trace")
#: Keras model methods that tfrestore overrides in a subclass, never patches on an object
MODEL_METHODS = (
    "compile", "compute_loss", "compute_metrics", "train_step", "test_step", "predict_step",
    "fit", "evaluate", "predict", "call", "__call__", "metrics",
)
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


def _module_file(dotted):
    """The module of tfrestore a dotted name lives in (``tfrestore.a.b.Name`` -> ``tfrestore.a.b``),
    or None."""
    parts = dotted.split(".")
    while len(parts) > 1:
        base = ROOT.parent.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return None


def module_edges():
    """``{(importer module, imported module): "file:line"}`` between tfrestore's modules."""
    edges = {}
    for path in _files():
        src = ".".join(["tfrestore", *_module_name(path)[1:]])
        tree = ast.parse(path.read_text())
        names = list(_imported(path, tree))
        for node in ast.walk(tree):  # `from tfrestore.a import b`: b may be a module
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        for line, name in names:
            dst = _module_file(name) if name.startswith("tfrestore.") else None
            if dst and dst != src:
                edges.setdefault((src, dst), f"{path.relative_to(ROOT.parent)}:{line}")
    return edges


def _is_package_of(a, b):
    return b.startswith(a + ".")


def test_no_two_modules_import_each_other():
    """Within a subpackage too, imports go one way (e.g. training/backup.py reads
    training/rundir.py's error, never the reverse); a package's ``__init__`` re-exporting its
    modules is not such a loop."""
    edges = module_edges()
    mutual = [
        f"{a} <-> {b}: {edges[(a, b)]}; {edges[(b, a)]}"
        for (a, b) in sorted(edges)
        if a < b and (b, a) in edges and not _is_package_of(a, b) and not _is_package_of(b, a)
    ]
    assert not mutual, "modules importing each other:\n  " + "\n  ".join(mutual)


def test_internals_only_in_keras_compat():
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
            if (
                isinstance(node, ast.Attribute)
                and node.attr in PRIVATE_ATTRS
                and getattr(node.value, "id", None) not in ("self", "cls")
            ):
                bad.append(f"{rel}:{node.lineno} uses the private attribute .{node.attr}")
    assert not bad, (
        "Keras/TensorFlow internals belong in tfrestore/utils/keras_compat.py (its test "
        "pins them):\n  " + "\n  ".join(bad)
    )


def stack_walks(path):
    """``["file:line ...", ...]``: every read of the Python stack in a file: a code token
    (not a string or comment) naming frame access, ``inspect.stack()`` /
    ``inspect.trace()``, or a string argument such as ``getattr(sys, "_getframe")``."""
    source = path.read_text()
    rel = path.relative_to(ROOT.parent)
    found = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.NAME and tok.string in FRAME_ACCESS:
            found.append(f"{rel}:{tok.start[0]} uses {tok.string} (stack inspection)")
        elif (
            tok.type == tokenize.NAME
            and tok.string in INSPECT_FRAME_FUNCTIONS
            and i >= 2
            and tokens[i - 1].string == "."
            and tokens[i - 2].string == "inspect"
        ):
            found.append(f"{rel}:{tok.start[0]} uses inspect.{tok.string} (stack inspection)")
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and any(
                isinstance(a, ast.Constant) and a.value in FRAME_ACCESS for a in node.args
            )
        ):
            found.append(f"{rel}:{node.lineno} names a frame attribute in a call")
    return found


def method_patches(path):
    """``["file:line ...", ...]``: every assignment of a Keras model method on an object
    (``obj.compile = ...``, ``setattr(obj, "compile", ...)``,
    ``object.__setattr__(obj, "compile", ...)``) and every ``types.MethodType``."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(ROOT.parent)
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in MODEL_METHODS:
                found.append(f"{rel}:{node.lineno} assigns .{target.attr} (patches a method)")
        if isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "attr", getattr(func, "id", None))
            if (
                name in ("setattr", "__setattr__")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in MODEL_METHODS
            ):
                found.append(
                    f"{rel}:{node.lineno} sets {node.args[1].value!r} (patches a method)"
                )
            if name == "MethodType":
                found.append(f"{rel}:{node.lineno} binds a method with types.MethodType")
    return found


def test_no_stack_walks_or_method_patches():
    """Keras' documented hooks (``Model.compile``/``compute_loss``/``metrics``,
    callbacks) replace stack walks and compile patches everywhere, keras_compat too."""
    bad = [f for path in _files() for f in (*stack_walks(path), *method_patches(path))]
    assert not bad, (
        "tfrestore reads no stack frames and patches no model methods (override them in "
        "a keras.Model subclass such as tfrestore.models.RestorationModel):\n  "
        + "\n  ".join(bad)
    )


def test_the_walk_and_patch_checker_finds_them(tmp_path, monkeypatch):
    pkg = tmp_path / "tfrestore"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        "import inspect, sys, types\n"
        "# f_locals in a comment is fine\n"
        "doc = 'sys._getframe in a string is fine'\n"
        "def f(model):\n"
        "    frame = inspect.currentframe().f_back\n"
        "    g = sys._getframe(1)\n"
        "    h = getattr(g, 'f_locals')\n"
        "    s = inspect.stack()\n"
        "    model.compile = lambda **kw: None\n"
        "    object.__setattr__(model, 'compute_loss', None)\n"
        "    model.fit = types.MethodType(f, model)\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    path = pkg / "a.py"
    lines = sorted({int(w.split(":")[1].split(" ")[0]) for w in stack_walks(path)})
    assert lines == [5, 6, 7, 8]
    patches = method_patches(path)
    assert sorted({int(w.split(":")[1].split(" ")[0]) for w in patches}) == [9, 10, 11]
    assert all(w.startswith("tfrestore/a.py:") for w in patches)


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
