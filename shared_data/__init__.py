"""The backend-neutral half of vocalgenre: data, separation, recipe, run records, ensembles.

One subpackage per concern; each one's docstring says what it holds and what it may import, and
``tests/test_dependencies.py`` holds the code to those rules:

- :mod:`shared_data.audio`: decoding and integrity checks.
- :mod:`shared_data.corpus`: the synthetic music corpus.
- :mod:`shared_data.separation`: the separator interface, registry and Spleeter's shared half.
- :mod:`shared_data.dataset`: the TFDS ``vocal_mels`` builder, features, folds and splits.
- :mod:`shared_data.architecture`: model names and numbers both backends' models share.
- :mod:`shared_data.training`: the recipe, run records and the cross-validation loop.
- :mod:`shared_data.ensemble`: members, their loaders, evaluation and prediction.

At the top level: ``errors`` (the user-facing error types), ``cli`` (running a command),
``registry`` (name tables the backends fill through entry points), and the three user commands
``python -m shared_data.build``, ``.separate`` and ``.synthetic``. Nothing here imports
``jax_impl`` or ``torch_ref``.
"""
