"""What both training loops share: the recipe, run records and the cross-validation loop.

``recipe`` (the one frozen dataclass of hyper-parameters and the flags generated from it),
``metrics_log`` (``metrics.jsonl``, TensorBoard scalars, the curves PNG), ``cross_validation``
(the K-fold loop, its summary and table), ``resume_check`` (whether a checkpoint may be resumed),
``runinfo`` (``recipe.json``: the resolved recipe, backend, versions, git revision).
May import: :mod:`shared_data.dataset`, :mod:`shared_data.architecture`, :mod:`shared_data.errors`,
:mod:`shared_data.cli`; never a backend.
"""
