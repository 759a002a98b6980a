"""Benchmark runner: ``python -m bench list`` / ``python -m bench <name> [--help]``.

Every module ``bench/bench_<name>.py`` is an entry; it defines ``add_arguments(parser)``
and ``run(args)`` and prints ratios measured side by side in one process.
"""

import argparse
import importlib
import pkgutil
import sys

import bench


def _entries():
    return sorted(
        m.name[len("bench_"):]
        for m in pkgutil.iter_modules(bench.__path__)
        if m.name.startswith("bench_")
    )


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    names = _entries()
    if not argv or argv[0] in ("list", "-h", "--help"):
        print("usage: python -m bench <name> [options]\n\nbenchmarks:")
        for n in names:
            mod = importlib.import_module(f"bench.bench_{n}")
            print(f"  {n:<16} {(mod.__doc__ or '').strip().splitlines()[0]}")
        return 0
    name = argv.pop(0)
    if name not in names:
        print(f"unknown benchmark {name!r}; choose from {names}", file=sys.stderr)
        return 2
    mod = importlib.import_module(f"bench.bench_{name}")
    parser = argparse.ArgumentParser(
        prog=f"python -m bench {name}",
        description=mod.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the docstring layout
    )
    mod.add_arguments(parser)
    return mod.run(parser.parse_args(argv)) or 0


if __name__ == "__main__":
    sys.exit(main())
