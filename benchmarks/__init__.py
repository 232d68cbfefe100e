"""Bundled benchmarks."""
