"""The ``vocal_mels`` dataset: songs -> separated stem -> 3-s log-mel clips, as TFDS array_record.

``builder`` (the TFDS builder and ``open_dataset``), ``inputs`` (the songs a build reads: folders,
csv manifests, the synthetic corpus), ``cache`` (the per-song cache that makes builds resumable),
``features`` (the feature definition), ``folds`` (song-grouped fold assignment), ``splits`` (fold
splits and the training data order), ``gallery`` (one clip per label as a PNG), ``build_cli``
(``python -m shared_data.build``).
May import: :mod:`shared_data.separation`, :mod:`shared_data.corpus`, :mod:`shared_data.audio`,
:mod:`shared_data.errors`, :mod:`shared_data.cli`; never a backend.
"""
