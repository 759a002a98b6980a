"""Test helpers shared by tfrestore's own tests and by users writing new losses."""

from tfrestore.testing.loss_harness import (
    check_gradient,
    configure_logical_cpus,
    finite_difference_check,
    get_mirrored_strategy,
    run_loss_test,
)

__all__ = [
    "check_gradient",
    "configure_logical_cpus",
    "finite_difference_check",
    "get_mirrored_strategy",
    "run_loss_test",
]
