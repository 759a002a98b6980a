"""Test helpers shared by tfrestore's own tests and by users writing new losses and models:
:class:`TestCase` (the conformance checks), device set-up and gradient checks."""

from tfrestore.testing.loss_harness import (
    check_gradient,
    configure_logical_cpus,
    finite_difference_check,
    get_mirrored_strategy,
)
from tfrestore.testing.test_case import TestCase

__all__ = [
    "TestCase",
    "check_gradient",
    "configure_logical_cpus",
    "finite_difference_check",
    "get_mirrored_strategy",
]
