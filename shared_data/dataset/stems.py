"""Which stems a build stores: ``--stems`` parsed, checked against the separator, and ordered.

One separation gives every stem of the separator (Spleeter 2-stem: ``vocals`` and
``accompaniment``) plus the ``mix`` it was given; featurising a stem costs a small fraction of
separating the song, so a build stores all of them by default and a model picks its stem at
training time (``--stem``). ``--separator=none`` gives the mix alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared_data.errors import DataError
from shared_data.separation.registry import require_stem

#: The stem a model trains on by default: the reference report's pipeline classifies the vocals.
DEFAULT_STEM = "vocals"


def parse_stems(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"vocals,mix"`` (or a sequence) -> ``("vocals", "mix")``; None/empty -> None (default).

    Raises:
        DataError: a stem named twice.
    """
    if text is None:
        return None
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    names = [s for s in names if s]
    if not names:
        return None
    if len(set(names)) != len(names):
        raise DataError(f"--stems={','.join(names)} names a stem twice; name each once")
    return tuple(names)


def resolve_stems(
    asked: Sequence[str] | None, produced: Sequence[str], *, separator_name: str
) -> tuple[str, ...]:
    """The stems a build stores, in the separator's order (``produced``, ``mix`` included).

    ``asked`` None: every stem the separator produces.

    Raises:
        DataError: an unknown stem, or one the separator does not produce (naming the fix).
    """
    if asked is None:
        return tuple(produced)
    for stem in asked:
        require_stem(produced, stem, separator_name=separator_name, flag="--stems")
    return tuple(s for s in produced if s in asked)


def resolve_stem(asked: str | None, stored: Sequence[str]) -> str:
    """The stem to train on: ``asked`` (``--stem``), else ``vocals`` when stored, else the only
    stem of a one-stem dataset.

    Raises:
        DataError: no ``--stem`` and several stems, none of them vocals (naming the choices).
    """
    if asked is not None:
        return asked
    if DEFAULT_STEM in stored or not stored:
        return DEFAULT_STEM
    if len(stored) == 1:
        return stored[0]
    raise DataError(
        f"the dataset holds the stems {', '.join(stored)}; choose one with "
        f"--stem={'|'.join(stored)}"
    )
