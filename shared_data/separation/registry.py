"""The separator interface: a batch of stereo 44.1 kHz songs -> named stems per song.

A separator is any object satisfying :class:`Separator`. Separators are registered by name with a
factory ``factory(backend: str, precision: str) -> Separator`` (``backend`` in
:data:`SEPARATION_BACKENDS`, ``precision`` in :data:`PRECISIONS`), so a heavy one (the Spleeter
U-Net) loads its framework and weights only when asked for. A factory that takes no ``precision``
(``factory(backend)``, as plug-ins written before precisions existed do) is built at its one
precision, and asking it for ``bf16`` is refused. Every separator returns the input under
``"mix"`` as well as its own stems, so ``--stem=mix`` works with any of them.

Plug-ins: :data:`SEPARATORS` is a :class:`shared_data.registry.Registry`. Before a name is looked
up it imports :data:`PLUGIN_MODULES` (the project's own, e.g. ``shared_data.separation.spleeter``)
and every module of the ``vocalgenre.separators`` entry-point group, each of which registers
itself at import::

    from shared_data.separation.registry import register_separator
    register_separator("demucs", make_demucs)   # make_demucs(backend, precision) -> Separator

A plug-in module that fails to import (e.g. a missing dependency) leaves the other separators
usable, and asking for a name that is then unknown reports the import error, so a separator never
vanishes silently.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from shared_data.errors import DataError
from shared_data.registry import Registry
from shared_data.separation.choice import PRECISIONS, SEPARATION_BACKENDS, check_choices

__all__ = [
    "SEPARATION_BACKENDS",
    "PLUGIN_MODULES",
    "PRECISIONS",
    "SEPARATORS",
    "STEM_CHOICES",
    "NoneSeparator",
    "Separator",
    "SeparatorFactory",
    "available_separators",
    "describe_separator",
    "get_separator",
    "register_separator",
    "require_stem",
    "select_stem",
]

STEM_CHOICES = ("vocals", "accompaniment", "mix")
#: Modules imported (when installed) before a separator name is looked up; each registers itself.
PLUGIN_MODULES: tuple[str, ...] = ("shared_data.separation.spleeter",)


@runtime_checkable
class Separator(Protocol):
    """Splits songs into stems.

    Attributes:
        name: the registered name.
        stems: the stems ``separate`` returns, ``"mix"`` included.

    Optionally, ``choice``: one line saying which backend and precision it runs and why
    (:func:`describe_separator` reads it).
    """

    name: str
    stems: tuple[str, ...]

    def separate(self, songs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Songs ``[2, n_i]`` float32 at 44.1 kHz -> per song ``{stem: [2, n_i] float32}``."""
        ...

    def info(self) -> dict[str, Any]:
        """JSON-able provenance (name, stems, backend, precision, weight checksums, ...) for
        metadata. It is compared and hashed into cache keys, so what changes the stems is in it."""
        ...


SeparatorFactory = Callable[..., Separator]
SEPARATORS: Registry[SeparatorFactory] = Registry(
    "separator", DataError, plugin_group="vocalgenre.separators", builtin_plugins=PLUGIN_MODULES
)


def register_separator(name: str, factory: SeparatorFactory) -> None:
    """Register ``factory(backend, precision) -> Separator`` (or ``factory(backend)``, see the
    module doc) under ``name``; a name can be taken only once."""
    SEPARATORS.register(name, factory)


def available_separators() -> tuple[str, ...]:
    """The registered separator names, plug-ins included, sorted."""
    return SEPARATORS.names()


def get_separator(name: str, backend: str = "auto", precision: str = "auto") -> Separator:
    """Build the separator ``name`` for ``backend`` (one of :data:`SEPARATION_BACKENDS`) and
    ``precision`` (one of :data:`PRECISIONS`).

    Raises:
        DataError: unknown separator, backend or precision (the message lists the valid choices
            and any plug-in module that failed to import), or ``bf16`` for a separator whose
            factory takes no precision.
    """
    check_choices(backend, precision)
    factory = SEPARATORS.get(name, flag="separator")
    if _takes_precision(factory):
        return factory(backend, precision)
    if precision == "bf16":
        raise DataError(
            f"separator {name!r} has no bf16 mode; pass --separation_precision=auto|fp32"
        )
    return factory(backend)


def _takes_precision(factory: SeparatorFactory) -> bool:
    """Whether ``factory`` accepts a second argument (``precision``)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: call it the old way
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params) or (
        sum(p.kind in positional for p in params) >= 2
    )


def describe_separator(separator: Separator) -> str:
    """One line for summaries: ``"spleeter: torch bf16 (CPU has amx_bf16)"``, or the name alone
    for a separator without a ``choice`` (``none``, most plug-ins)."""
    choice = getattr(separator, "choice", None)
    return f"{separator.name}: {choice}" if choice else separator.name


def require_stem(
    stems: Sequence[str], stem: str, *, separator_name: str, flag: str = "--stem"
) -> None:
    """Check, before any work, that a separator producing ``stems`` can give ``stem`` (asked
    for by ``flag``, which the message names).

    Raises:
        DataError: ``stem`` is not one of :data:`STEM_CHOICES`, or the separator lacks it.
    """
    if stem not in STEM_CHOICES:
        raise DataError(f"unknown stem {stem!r}; choose from {flag}={'|'.join(STEM_CHOICES)}")
    if stem in stems:
        return
    others = [n for n in available_separators() if n != separator_name]
    produced = "the mix" if tuple(stems) == ("mix",) else ", ".join(stems)
    fix = f"pass {flag}={'|'.join(stems)}"
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


register_separator("none", lambda backend, precision="auto": NoneSeparator())
