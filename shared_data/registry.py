"""Name -> object tables that refuse duplicates, filled by plug-ins the project never names.

Four registries use it: the model zoo of each backend (``jax_impl.models``, ``torch_ref.models``),
the separators by name (:mod:`shared_data.separation.registry`), the implementations of the
Spleeter U-Net per framework (:mod:`shared_data.separation.spleeter`) and the ensemble member
loaders (:mod:`shared_data.ensemble.loaders`). A registry may name a Python entry-point group: on
a miss (or when listing) it imports every module of that group, each of which registers its entries
at import time. That is how the backends plug into ``shared_data`` without ``shared_data`` naming
them: ``pyproject.toml`` lists ``jax_impl.spleeter`` and ``torch_ref.spleeter`` under
``vocalgenre.spleeter_backends``, for example. A plug-in that fails to import (its framework is not
installed) leaves the rest usable, and a lookup that then misses reports the import error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from shared_data.errors import UserError

__all__ = ["Registry", "plugin_modules"]

T = TypeVar("T")


def plugin_modules(group: str) -> tuple[str, ...]:
    """The modules named by the installed entry points of ``group``, sorted, without importing."""
    return tuple(sorted({ep.module for ep in metadata.entry_points(group=group)}))


class Registry(Generic[T]):
    """``name -> value`` for one kind of thing (``kind`` names it in messages).

    Args:
        kind: what the names are of, e.g. ``"model"``.
        error: the :class:`UserError` subclass raised for a duplicate or unknown name.
        plugin_group: entry-point group whose modules are imported before a lookup misses.
        builtin_plugins: modules imported like the group's (the project's own plug-ins).
    """

    def __init__(
        self,
        kind: str,
        error: type[UserError] = UserError,
        *,
        plugin_group: str | None = None,
        builtin_plugins: tuple[str, ...] = (),
    ):
        self.kind, self.error = kind, error
        self.plugin_group, self.builtin_plugins = plugin_group, builtin_plugins
        self._entries: dict[str, T] = {}

    def register(self, name: str, value: T) -> T:
        """Add ``value`` under ``name``; a name can be taken only once."""
        if name in self._entries:
            raise self.error(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = value
        return value

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator(name)`` registers the decorated object."""
        return lambda value: self.register(name, value)

    def load_plugins(self) -> dict[str, str]:
        """Import the plug-in modules; ``{module: error}`` for those that failed to import."""
        modules = self.builtin_plugins
        if self.plugin_group:
            modules += plugin_modules(self.plugin_group)
        failures = {}
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError as err:  # a broken plug-in must not take the others down
                failures[module] = f"{type(err).__name__}: {err}"
        return failures

    def names(self) -> tuple[str, ...]:
        """The registered names, plug-ins included, sorted."""
        self.load_plugins()
        return tuple(sorted(self._entries))

    def get(self, name: str, *, flag: str | None = None) -> T:
        """The value under ``name``; an unknown name lists the valid ones (as ``--flag=a|b``
        when ``flag`` is given) and any plug-in that failed to import."""
        failures = {} if name in self._entries else self.load_plugins()
        if name in self._entries:
            return self._entries[name]
        valid = sorted(self._entries)
        choices = f"--{flag}={'|'.join(valid)}" if flag else ", ".join(valid)
        broken = "".join(f"; plug-in {m} failed to import ({e})" for m, e in failures.items())
        raise self.error(f"unknown {self.kind} {name!r}; choose one of {choices}{broken}")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))
