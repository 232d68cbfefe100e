"""Decoding audio: any file -> float32 ``[channels, samples]`` at a fixed rate, or one clear error.

``decode`` (``load_audio``, ``audio_info``, ``mix_channels``, ``write_wav``), ``integrity``
(container-level truncation checks: what a file's header promises against the bytes present).
May import: no other subpackage; only the top-level modules (``errors``, ``cli``, ``registry``,
``paths``, ``backends``, ``destinations``); never a backend.
"""
