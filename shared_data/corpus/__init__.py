"""The embedded synthetic music corpus: deterministic songs with their true stems.

``synthetic`` (the songs, the corpus and ``python -m shared_data.synthetic``), ``styles`` (the
genre table), ``score`` (tempo, key and chords of one song), ``voice`` (the sung line), ``band``
(drums, bass, chords), ``dsp`` (oscillators, filters, envelopes, effects).
May import: :mod:`shared_data.audio` and the top-level modules (``errors``, ``cli``, ``registry``,
``paths``, ``backends``, ``destinations``); never a backend.
"""
