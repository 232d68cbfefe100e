"""The settings of one ``vocal_mels`` build: the flags as asked and what they resolved to.

:func:`resolve_settings` checks the build options and loads the separator they name, once, and
returns one frozen :class:`BuildSettings`; the builder hands that value to the per-song stage,
the report, the metadata and the reuse check, so none of them reads the builder. What a rebuild
compares (the metadata's ``settings``) is :meth:`BuildSettings.to_dict`, the one place those keys
are made; they are the keys of earlier versions, so their datasets and caches still match.

The separation backend (``--backend``: the Spleeter port, ``auto|jax|torch``) is stored as
``separation_backend``, apart from the training backend of a run's ``recipe.json``; datasets and
reports written before the rename call it ``backend``, and
:func:`shared_data.dataset.configs.separation_backend_of` reads either.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared_data.dataset.configs import SEPARATION_BACKEND_KEY, VocalMelsConfig, json_normal
from shared_data.dataset.folds import validate_k, validate_method
from shared_data.dataset.songs import SongSettings
from shared_data.dataset.split_source import resolve_split
from shared_data.dataset.stage import StageSpec
from shared_data.dataset.stems import parse_stems, resolve_stems
from shared_data.errors import DataError
from shared_data.separation.registry import Separator, describe_separator, get_separator


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """Everything a build is asked to do, resolved against its config and separator.

    Attributes:
        config: the builder config.
        separator_flag: ``--separator`` as given (the registry name a Beam worker loads).
        separator: the separator's own ``name``.
        separator_info: its ``info()`` as it reads back from JSON (weights, backend, precision).
        separation: what the separation path resolved to and why (one line, for the report).
        stems: the stems stored, in the separator's order.
        separation_backend, separation_precision: ``--backend`` and ``--separation_precision``
            as asked (``auto`` included).
        input: ``--input`` as given (None: the config's manual_dir, or synthetic).
        strict, folds, fold_method, split, progress: the flags of those names (``split``
            resolved: ``kfold`` or ``fault_filtered``).
        beam_argv: Beam pipeline arguments; non-empty: the per-song stage runs on Beam first.
    """

    config: VocalMelsConfig
    separator_flag: str
    separator: str
    separator_info: dict[str, Any]
    separation: str
    stems: tuple[str, ...]
    separation_backend: str
    separation_precision: str
    input: Path | None
    strict: bool
    folds: int
    fold_method: str
    split: str
    progress: bool
    beam_argv: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The settings a rebuild compares (the metadata's ``settings``), as JSON reads them:
        ``config``, ``separator``, ``separator_info``, ``stems``, ``folds``, ``fold_method`` and,
        for a ``gtzan`` config only (so other configs' settings stay as they were), ``split``."""
        settings = {
            "config": self.config.to_dict(),
            "separator": self.separator,
            "separator_info": self.separator_info,
            "stems": list(self.stems),
            "folds": self.folds,
            "fold_method": self.fold_method,
        }
        if self.config.source == "gtzan":
            settings["split"] = self.split
        return json_normal(settings)

    def metadata_fields(self) -> dict[str, Any]:
        """The metadata fields that come from the settings (the rest come from the songs):
        separator, its info, the separation backend, stems, feature parameters, folds, fold
        method, config, :meth:`to_dict` as ``settings``, and ``split`` for ``gtzan``."""
        fields = {
            "separator": self.separator,
            "separator_info": self.separator_info,
            SEPARATION_BACKEND_KEY: self.separation_backend,
            "stems": list(self.stems),
            "feature_params": self.config.feature_params.to_dict(),
            "folds": self.folds,
            "fold_method": self.fold_method,
            "config": self.config.to_dict(),
            "settings": self.to_dict(),
        }
        if self.config.source == "gtzan":
            fields["split"] = self.split
        return fields

    def song_settings(self) -> SongSettings:
        """What shapes a song's cache entry and how its audio is made or read."""
        config = self.config
        return SongSettings(
            self.separator_info, self.stems, config.feature_params, config.seed, config.seconds
        )

    def stage_spec(self, cache_dir: str | os.PathLike[str]) -> StageSpec:
        """What a Beam worker needs to redo the per-song stage into ``cache_dir``."""
        return StageSpec(
            self.separator_flag, self.separation_backend, self.song_settings(),
            os.fspath(cache_dir), self.separation_precision,
        )  # fmt: skip


def resolve_settings(
    config: VocalMelsConfig,
    *,
    separator: str,
    stems: str | Sequence[str] | None,
    stem: str | None,
    backend: str,
    separation_precision: str,
    input: str | os.PathLike[str] | None,  # noqa: A002 - the CLI flag's name
    strict: bool,
    folds: int,
    fold_method: str,
    split: str | None,
    progress: bool,
    beam_argv: Sequence[str],
) -> tuple[BuildSettings, Separator]:
    """Check the build options of ``config`` and load the separator they name.

    The arguments are those of :class:`~shared_data.dataset.builder.VocalMels` (``stem=S``: the
    older spelling of ``stems=(S,)``). The flags are checked before the separator is loaded, so
    a wrong flag costs no model loading. Returns ``(settings, separator)``.

    Raises:
        DataError: ``--stem`` with ``--stems``, a stem named twice or one the separator does not
            give, a bad ``--folds``/``--fold_method``/``--split``, an unknown separator, backend
            or precision, or ``--input`` for a synthetic config; each naming the fix.
    """
    if stem is not None and stems is not None:
        raise DataError("pass --stems (the stems to store) or --stem (one stem), not both")
    asked = parse_stems((stem,) if stem is not None else stems)
    folds, fold_method = validate_k(folds), validate_method(fold_method)
    loaded = get_separator(separator, backend, separation_precision)
    resolved = resolve_stems(asked, loaded.stems, separator_name=loaded.name)
    split = resolve_split(split, config)
    if input is not None and config.source == "synthetic":
        raise DataError(
            f"--input is not used by the synthetic config {config.name!r}; drop "
            "it, or use --config=folder|csv|gtzan for your own audio"
        )
    settings = BuildSettings(
        config=config, separator_flag=separator, separator=loaded.name,
        separator_info=json_normal(loaded.info()), separation=describe_separator(loaded),
        stems=resolved, separation_backend=backend, separation_precision=separation_precision,
        input=Path(input).expanduser() if input is not None else None, strict=strict,
        folds=folds, fold_method=fold_method, split=split, progress=progress,
        beam_argv=tuple(beam_argv),
    )  # fmt: skip
    return settings, loaded
