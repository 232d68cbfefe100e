"""The expensive per-song stage of a ``vocal_mels`` build, runnable ahead of the writer.

A song's work is: fingerprint -> cache key -> (already cached: nothing) -> decode -> separate ->
featurise -> a :class:`~shared_data.dataset.cache.SongCache` entry. The single-process build does
it inside :func:`shared_data.dataset.songs.process_songs`; with ``--workers=N`` or
``--beam_pipeline_options`` it is first done for every song by an Apache Beam pipeline
(:func:`shared_data.dataset.beam_stage.run_stage`), after which the ordinary writer finds every
good song in the cache and writes records, report and metadata exactly as it would have.

This module never imports ``apache_beam``, nor :mod:`~shared_data.dataset.beam_stage`: a build
without those flags does not need it.

Which songs the stage computed is read off the cache folder (entries that are new or rewritten
since a snapshot taken before the stage), not reported back by the workers, so it works the same
on every runner as long as the cache folder is one the driver and the workers share. The build
holds the cache lock throughout, so no other build writes entries meanwhile.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shlex
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from shared_data.dataset import inputs as inputs_lib
from shared_data.dataset import presence
from shared_data.dataset.cache import SongCache
from shared_data.dataset.configs import MIX, MIX_LEVEL_KEY, SEPARATION_SR, level_key, mel_key
from shared_data.dataset.features import FeatureParams, song_to_mels
from shared_data.dataset.songs import SongSettings, entry_clips, mels_key, song_key
from shared_data.errors import AudioError, DataError

BEAM_INSTALL = "pip install -e '.[beam]'"


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """What a worker needs to redo the builder's per-song work: the separator to load (by name,
    backend and precision, as the flags gave them; loaded once per worker) and the settings that
    make the cache key."""

    separator: str
    backend: str
    settings: SongSettings
    cache_dir: str
    precision: str = "auto"


def featurise_song(
    wave: np.ndarray, separator: Any, params: FeatureParams
) -> dict[str, np.ndarray]:
    """A whole song ``[2, n]`` float32 @ 44.1 kHz -> its cache entry: per stem of the separator
    (``mix`` included) ``mels_<stem>`` float32 ``[n_clips, 128, 128]``, and the levels of
    :func:`shared_data.dataset.presence.measure` (``mix_db``, ``db_<stem>``, float64
    ``[1 + n_clips]``).

    The song is separated on its own (a batch of one), as the single-process build does: joining
    songs in one call changes the separator's patch batch sizes, hence float rounding, and the
    records would then differ from a single-process build's.
    """
    separated = separator.separate([wave])[0]
    mix = separated.get(MIX, wave)
    entry = {
        mels_key(stem): song_to_mels(separated[stem], SEPARATION_SR, params)
        for stem in separator.stems
    }
    n_clips = entry_clips(entry)
    others = {stem: separated[stem] for stem in separator.stems if stem != MIX}
    levels = presence.measure(others, mix, n_clips, params, SEPARATION_SR)
    return {**entry, **levels}


def clip_fields(entry: Mapping[str, np.ndarray], stems: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The record fields of each clip of a song-cache entry, for the stored ``stems``:
    ``mel_<stem>`` float32 ``[128, 128]``, ``level_<stem>`` (dB against the mix) per separated
    stem and ``mix_dbfs``, both float32 (:mod:`shared_data.dataset.configs`)."""
    mix_db = np.asarray(entry["mix_db"], np.float64)
    for i in range(entry_clips(entry)):
        fields: dict[str, Any] = {mel_key(s): entry[mels_key(s)][i] for s in stems}
        for stem in stems:
            if stem != MIX:
                level = entry[f"db_{stem}"][1 + i] - mix_db[1 + i]
                fields[level_key(stem)] = np.float32(level)
        fields[MIX_LEVEL_KEY] = np.float32(mix_db[1 + i])
        yield fields


def compute_song(
    item: inputs_lib.SongInput, settings: SongSettings, cache: SongCache, separator: Any
) -> str | None:
    """Cache the features of ``item`` unless they are cached already.

    Returns:
        The cache key written, or None: already cached, or a bad file. A bad file is not cached
        and not reported here: the writer meets it again and reports it by name, as a
        single-process build does.
    """
    try:
        data = inputs_lib.read_song(
            item, params=settings.params, seed=settings.seed, seconds=settings.seconds
        )
        key = song_key(data, settings)
        if cache.get_entry(key) is not None:  # also drops an unreadable entry, to be recomputed
            return None
        entry = featurise_song(data.load(), separator, settings.params)
    except AudioError:
        return None
    if entry_clips(entry) == 0:
        return None  # the writer rejects it ("no clip")
    cache.put(key, entry)
    return key


def snapshot(cache: SongCache) -> dict[str, tuple[int, int, int]]:
    """``{key: (inode, mtime_ns, size)}`` of every entry: what "computed since" is measured by."""
    out = {}
    for path in cache.root.glob("*.npz"):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        out[path.stem] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def beam_argv(workers: int | None, pipeline_options: str | None) -> list[str]:
    """The Beam pipeline arguments for ``--workers=N`` and/or ``--beam_pipeline_options``.

    ``--workers=N`` means the DirectRunner with N local processes; options given in
    ``pipeline_options`` (shell-quoted, e.g. ``"--runner=FlinkRunner --flink_master=host:8081"``)
    come after, so they win.

    Raises:
        DataError: ``workers`` below 1, options that cannot be split, or apache_beam is not
            installed (checked here, so the build fails before it starts).
    """
    argv: list[str] = []
    if workers is not None:
        if workers < 1:
            raise DataError(f"--workers must be at least 1, got {workers}")
        argv += [
            "--runner=DirectRunner",
            f"--direct_num_workers={workers}",
            "--direct_running_mode=multi_processing",
            # The workers log every gRPC channel they open at INFO; the build has its own output.
            "--default_sdk_harness_log_level=WARNING",
        ]
    if pipeline_options:
        try:
            argv += shlex.split(pipeline_options)
        except ValueError as err:
            raise DataError(f"--beam_pipeline_options={pipeline_options!r}: {err}") from None
    if argv:
        require_beam()
    return argv


def require_beam() -> None:
    """Raises:
    DataError: apache_beam is not installed; the one-line message names the install command.
    """
    if importlib.util.find_spec("apache_beam") is None:
        raise DataError(f"--workers/--beam_pipeline_options need Apache Beam: {BEAM_INSTALL}")
