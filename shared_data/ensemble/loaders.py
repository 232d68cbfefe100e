"""Turning a run directory into a predictor: the member loaders each backend registers.

A loader is registered for a pair ``(member's backend, backend that computes it)``:
``torch_ref.ensemble`` registers ``torch -> torch``; ``jax_impl.ensemble`` registers
``jax -> jax`` and both conversions (``torch -> jax`` and ``jax -> torch``), since conversion
lives on the JAX side (``jax_impl.convert``). ``pyproject.toml`` names both modules under the
``vocalgenre.member_loaders`` entry-point group, so a lookup finds them without this package
naming them, and a backend that is not installed is reported by name instead of crashing: a
torch-only installation evaluates torch members and says what a JAX member needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from shared_data.ensemble import evaluation as ev
from shared_data.ensemble.members import MemberError, MemberInfo, read_members
from shared_data.registry import Registry

__all__ = ["LOADERS", "MemberLoader", "load_ensemble", "load_member", "register_member_loader"]


class MemberLoader(Protocol):
    def __call__(self, info: MemberInfo, *, checkpoint: str, batch_size: int) -> ev.Predictor: ...


LOADERS: Registry[MemberLoader] = Registry(
    "member loader", MemberError, plugin_group="vocalgenre.member_loaders"
)


def _key(member_backend: str, runs_on: str) -> str:
    return f"{member_backend}->{runs_on}"


def register_member_loader(member_backend: str, runs_on: str, loader: MemberLoader) -> None:
    """Register how a ``member_backend`` run becomes a predictor computed by ``runs_on``."""
    LOADERS.register(_key(member_backend, runs_on), loader)


def load_member(
    info: MemberInfo,
    *,
    runs_on: str,
    route: str = "convert",
    checkpoint: str = "best",
    batch_size: int = ev.DEFAULT_BATCH,
) -> ev.Predictor:
    """A :class:`~shared_data.ensemble.evaluation.Predictor` for one member, seen from the
    ``runs_on`` backend: a member of the other backend is converted (``route="convert"``) or
    computed by its own backend (``"native"``).

    Raises:
        MemberError: a bad route or checkpoint name, or the backend the member needs is not
            installed (the message names it).
    """
    if route not in ev.ROUTES:
        raise MemberError(f"unknown --route={route!r}; choose one of {'|'.join(ev.ROUTES)}")
    if checkpoint not in ev.CHECKPOINTS:
        raise MemberError(f"unknown --checkpoint={checkpoint!r}; choose {'|'.join(ev.CHECKPOINTS)}")
    target = runs_on if route == "convert" else info.backend
    key = _key(info.backend, target)
    if key not in LOADERS:
        failures = LOADERS.load_plugins()
        if key not in LOADERS:
            broken = "".join(f"; {m} failed to import ({e})" for m, e in failures.items())
            raise MemberError(
                f"{info.run_dir} is a {info.backend} member; computing it with {target} needs "
                f"that backend installed (jax_impl for JAX members and conversions){broken}"
            )
    return LOADERS.get(key)(info, checkpoint=checkpoint, batch_size=batch_size)


def load_ensemble(
    run_dirs: Sequence[str | Path],
    *,
    runs_on: str,
    route: str = "convert",
    checkpoint: str = "best",
    batch_size: int = ev.DEFAULT_BATCH,
) -> list[ev.Predictor]:
    """Read, check (:func:`shared_data.ensemble.members.read_members`) and load every member."""
    return [
        load_member(m, runs_on=runs_on, route=route, checkpoint=checkpoint, batch_size=batch_size)
        for m in read_members(run_dirs)
    ]
