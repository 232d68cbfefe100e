"""Helpers both test suites share (not test modules): ``tiny_runs`` (tiny datasets and recipes for
training runs), ``builder_inputs`` (GTZAN-style folders and reports), ``ensemble_runs`` (datasets
and trained members of the ensemble tests), ``models`` (small inputs and compile flags of the
model tests), ``runs`` (run directories without training)."""
