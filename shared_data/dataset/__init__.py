"""The ``vocal_mels`` dataset: songs -> separated stem -> 3-s log-mel clips, as TFDS array_record.

``builder`` (the TFDS builder and ``build_dataset``), ``settings`` (``BuildSettings``: the build's
flags resolved once and handed to every stage), ``configs`` (its configs and constants), ``walk``,
``inputs`` and ``listing`` (the songs a build reads: folders with their links, csv manifests, the
synthetic corpus, GTZAN), ``songs`` (per-song processing and the mel statistics), ``stage`` (one
song's expensive work, shared by the single-process build and the Beam workers), ``beam_stage``
(that work on Apache Beam, the optional ``--workers``/``--beam_pipeline_options`` path),
``presence`` (the stem's level against the mix), ``cache`` (the per-song cache that makes builds
resumable), ``outcome`` (report, splits, folds and metadata from the processed songs), ``reuse``
(whether an existing dataset may be reused), ``report`` (``build_report.json`` and the metadata),
``opened`` (``open_dataset``, the one way to read a built dataset), ``features`` (the feature
definition), ``folds`` (song-grouped fold assignment, stratified or hashed), ``splits`` (fold
splits and the training data order), ``gallery`` (one clip per label as a PNG), ``build_cli``
(``python -m shared_data.build``).
May import: :mod:`shared_data.audio`, :mod:`shared_data.corpus`, :mod:`shared_data.separation` and
the top-level modules (``errors``, ``cli``, ``registry``, ``paths``, ``backends``,
``destinations``); never a backend.
"""
