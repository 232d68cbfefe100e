"""Fixtures shared by ``tests/`` and ``parity_tests/`` (one session-wide copy for both suites)."""

pytest_plugins = ("tests.support.ensemble_runs",)
