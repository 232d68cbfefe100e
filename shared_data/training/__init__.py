"""What both training loops share: the recipe, the data split, the loop's pieces, run records.

``recipe`` (the one frozen dataclass of hyper-parameters; ``recipe_checks`` validates it,
``recipe_flags`` generates the flags), ``train_cli`` (the command line both train CLIs share),
``split`` (the data-split object: the built dataset split by fold), ``run_state`` (run position,
epoch sums and the checkpoint meta both backends write), ``loop`` (when to log, validate and
checkpoint, records, the summary schema), ``validation`` (clip and song accuracy and loss from
gathered logits), ``hooks`` (progress bar and per-step observers), ``lock`` (one training per run
directory), ``metrics_log`` (``metrics.jsonl``, TensorBoard scalars and what they mean, the curves
PNG), ``cross_validation`` (the K-fold loop, its summary and table), ``resume_check`` (whether a
checkpoint may be resumed), ``runinfo`` (``recipe.json``: its run fields, writing it, and reading it
validated), ``memory_fit`` (the micro-batch that fits the device, and out-of-memory errors as one
line).
May import: :mod:`shared_data.architecture`, :mod:`shared_data.dataset`, :mod:`shared_data.ensemble`
and the top-level modules (``errors``, ``cli``, ``registry``, ``paths``, ``backends``,
``destinations``); never a backend.
"""
