"""Ensembles from either backend: members, probability sums, evaluation, prediction.

``members`` (what a run directory says about its model and data), ``loaders`` (the registry of
member loaders the backends fill), ``core`` (pure numpy: softmax, sums, song aggregation,
metrics), ``evaluation`` (running members over a dataset split), ``predict`` (audio files ->
genres), ``weighting`` (the learned weighting against the plain sum), ``report`` (confusion
matrix, JSON, tables), ``cli`` (the flags and steps of the ensemble, evaluate and predict CLIs).
May import: :mod:`shared_data.audio`, :mod:`shared_data.dataset`, :mod:`shared_data.separation` and
the top-level modules (``errors``, ``cli``, ``registry``, ``paths``, ``backends``,
``destinations``); never a backend.
"""
