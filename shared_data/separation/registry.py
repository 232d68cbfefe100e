"""The separator interface: a batch of stereo 44.1 kHz songs -> named stems per song.

A separator is any object satisfying :class:`Separator`. Separators are registered by name with a
factory ``factory(backend: str) -> Separator``, so a heavy one (the Spleeter U-Net) loads its
framework and weights only when asked for. Every separator returns the input under ``"mix"`` as
well as its own stems, so ``--stem=mix`` works with any of them.

Plug-ins: :data:`SEPARATORS` is a :class:`shared_data.registry.Registry`. Before a name is looked
up it imports :data:`PLUGIN_MODULES` (the project's own, e.g. ``shared_data.separation.spleeter``)
and every module of the ``vocalgenre.separators`` entry-point group, each of which registers
itself at import::

    from shared_data.separation.registry import register_separator
    register_separator("demucs", make_demucs)   # make_demucs(backend) -> Separator

A plug-in module that fails to import (e.g. a missing dependency) leaves the other separators
usable, and asking for a name that is then unknown reports the import error, so a separator never
vanishes silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from shared_data.errors import DataError
from shared_data.registry import Registry

__all__ = [
    "BACKENDS",
    "PLUGIN_MODULES",
    "SEPARATORS",
    "STEM_CHOICES",
    "NoneSeparator",
    "Separator",
    "SeparatorFactory",
    "available_separators",
    "get_separator",
    "register_separator",
    "require_stem",
    "select_stem",
]

STEM_CHOICES = ("vocals", "accompaniment", "mix")
BACKENDS = ("auto", "jax", "torch")
#: Modules imported (when installed) before a separator name is looked up; each registers itself.
PLUGIN_MODULES: tuple[str, ...] = ("shared_data.separation.spleeter",)


@runtime_checkable
class Separator(Protocol):
    """Splits songs into stems.

    Attributes:
        name: the registered name.
        stems: the stems ``separate`` returns, ``"mix"`` included.
    """

    name: str
    stems: tuple[str, ...]

    def separate(self, songs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Songs ``[2, n_i]`` float32 at 44.1 kHz -> per song ``{stem: [2, n_i] float32}``."""
        ...

    def info(self) -> dict[str, Any]:
        """JSON-able provenance (name, stems, backend, weight checksums, ...) for metadata."""
        ...


SeparatorFactory = Callable[[str], Separator]
SEPARATORS: Registry[SeparatorFactory] = Registry(
    "separator", DataError, plugin_group="vocalgenre.separators", builtin_plugins=PLUGIN_MODULES
)


def register_separator(name: str, factory: SeparatorFactory) -> None:
    """Register ``factory(backend) -> Separator`` under ``name``; a name can be taken only once."""
    SEPARATORS.register(name, factory)


def available_separators() -> tuple[str, ...]:
    """The registered separator names, plug-ins included, sorted."""
    return SEPARATORS.names()


def get_separator(name: str, backend: str = "auto") -> Separator:
    """Build the separator ``name`` for ``backend`` (one of :data:`BACKENDS`).

    Raises:
        DataError: unknown separator or backend; the message lists the valid choices and any
            plug-in module that failed to import.
    """
    if backend not in BACKENDS:
        raise DataError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return SEPARATORS.get(name, flag="separator")(backend)


def require_stem(stems: Sequence[str], stem: str, *, separator_name: str) -> None:
    """Check, before any work, that a separator producing ``stems`` can give ``stem``.

    Raises:
        DataError: ``stem`` is not one of :data:`STEM_CHOICES`, or the separator lacks it.
    """
    if stem not in STEM_CHOICES:
        raise DataError(f"unknown stem {stem!r}; choose one of --stem={'|'.join(STEM_CHOICES)}")
    if stem in stems:
        return
    others = [n for n in available_separators() if n != separator_name]
    produced = "the mix" if tuple(stems) == ("mix",) else ", ".join(stems)
    fix = f"pass --stem={'|'.join(stems)}"
    if others:
        fix += f" or --separator={'|'.join(others)}"
    raise DataError(f"separator {separator_name!r} produces only {produced}; {fix}")


def select_stem(
    stems_dict: Mapping[str, np.ndarray], stem: str, *, separator_name: str
) -> np.ndarray:
    """The ``stem`` entry of one song's separation output (a ``[2, n]`` float32 array).

    Raises:
        DataError: the stem is unknown or that separator does not produce it.
    """
    require_stem(tuple(stems_dict), stem, separator_name=separator_name)
    return stems_dict[stem]


class NoneSeparator:
    """No separation: each song comes back as its own ``"mix"``, unchanged (not copied)."""

    name = "none"
    stems = ("mix",)

    def separate(self, songs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Songs ``[2, n_i]`` float32 -> ``[{"mix": song}, ...]``."""
        for i, song in enumerate(songs):
            if np.ndim(song) != 2 or np.shape(song)[0] != 2:
                raise ValueError(f"song {i} must be stereo [2, n], got shape {np.shape(song)}")
        return [{"mix": song} for song in songs]

    def info(self) -> dict[str, Any]:
        """Provenance: no model, no weights."""
        return {"name": self.name, "stems": list(self.stems)}


register_separator("none", lambda backend: NoneSeparator())
