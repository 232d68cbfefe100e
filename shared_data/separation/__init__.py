"""Source separation: the separator interface and registry, and Spleeter's backend-neutral half.

``registry`` (the ``Separator`` protocol, ``register_separator``/``get_separator``, stem choice, the
``none`` separator), ``choice`` (the ``auto`` rule: which backend and precision separate fastest on
this machine), ``spleeter`` (the ``spleeter`` separator: which backend's port to build, and what
the ports share), ``chunks`` (Spleeter's numbers and the chunking of whole songs), ``weights``
(Deezer's weights, read without executing pickle code), ``quality`` (SDR in dB), ``separate_cli``
(``python -m shared_data.separate``). The ports themselves are ``jax_impl.spleeter`` and
``torch_ref.spleeter``, which register themselves here.
May import: :mod:`shared_data.audio` and the top-level modules (``errors``, ``cli``, ``registry``,
``paths``, ``backends``, ``destinations``); never a backend.
"""
