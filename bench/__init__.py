"""tfrestore benchmarks (not timed tests): ``python -m bench <name> [options]``."""
