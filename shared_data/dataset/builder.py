"""The TFDS dataset builder ``vocal_mels``: songs -> separated stem -> 3-s log-mel clips.

Written as ``array_record`` and read back with ``builder.as_data_source()``; neither step imports
TensorFlow. Both backends read the same records (``docs/design.md``). This module is the TFDS
class and :func:`build_dataset`; the pieces it drives live in
:mod:`~shared_data.dataset.settings` (the build's flags, resolved once into a
:class:`~shared_data.dataset.settings.BuildSettings`), :mod:`~shared_data.dataset.listing` (the
songs a build reads), :mod:`~shared_data.dataset.songs` (per-song processing),
:mod:`~shared_data.dataset.outcome` (report, splits, folds and metadata from the processed songs),
:mod:`~shared_data.dataset.reuse` (whether an existing dataset may be reused) and
:mod:`~shared_data.dataset.report`; a built dataset is opened with
:func:`shared_data.dataset.opened.open_dataset`.

Records, splits and metadata: see :mod:`shared_data.dataset.configs`.

Build behaviour:

- Songs are separated whole, then every stem (``--stems``; default all the separator gives, the
  mix included) is featurised; each song's mels of every stem and its stem and mix levels are
  cached at ``<data_dir>/.vocal_mels_cache/<config>/<key>.npz`` (key: input SHA-256, the
  separator's ``info()`` (backend, precision, weights), feature params), written atomically.
  A build killed at any point restarts: the stale TFDS temporary folder is removed
  and cached songs are reused (it says so, counting only songs cached by earlier builds).
- ``build_report.json`` lists every input file (path, status ok|rejected, reason, n_clips,
  sha256, stem level, ...) with ``files_seen == files_ok + files_rejected``, the labels left
  without songs and the stem-presence summary; it is written in the dataset folder and, so that a
  failed build still has one, in the cache folder. ``strict=True`` fails the build on any rejected
  file, any label without songs, and a near-silent stem (:mod:`shared_data.dataset.presence`).
- The same audio (SHA-256) twice is used once: later copies are rejected, naming the first.
- A dataset folder that exists is reused only if it was built with the same settings (config,
  separator and its weights, stems, K, fold method) and, for folder/csv, the same input files;
  otherwise the build is refused with the fix (``overwrite=True`` / ``--overwrite``, or another
  data_dir). The separator is compared by its ``info()``, so whatever it reports counts: an fp32
  and a bf16 separation (``separation_precision``) never share a dataset or a cache entry.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from shared_data.dataset import split_source
from shared_data.dataset.cache import CACHE_DIRNAME, SongCache
from shared_data.dataset.configs import (
    CONFIGS,
    DATASET_VERSION,
    DEFAULT_SEPARATOR,
    NAME,
    REPORT_NAME,
    UNLABELLED,
    VocalMelsConfig,
    config_for,
    record_features,
)
from shared_data.dataset.folds import DEFAULT_FOLD_METHOD, DEFAULT_FOLDS
from shared_data.dataset.listing import MANUAL_INSTRUCTIONS, BuildInputs, build_inputs, input_root
from shared_data.dataset.opened import dataset_dir
from shared_data.dataset.outcome import settle
from shared_data.dataset.records import store_uncompressed
from shared_data.dataset.report import report_head, write_json
from shared_data.dataset.reuse import check_inputs, check_settings, remove_stale_incomplete
from shared_data.dataset.settings import resolve_settings
from shared_data.dataset.songs import Processed, Song, entry_clips, process_songs
from shared_data.dataset.stage import clip_fields, featurise_song, require_beam
from shared_data.errors import DataError
from shared_data.paths import default_data_dir


class VocalMels(tfds.core.GeneratorBasedBuilder):
    """Log-mel clips of every stem of a separation, with song-grouped folds. See the module
    docstring."""

    VERSION = tfds.core.Version(DATASET_VERSION)
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "2.0.0": "mel stored as raw bytes in uncompressed shards (30x faster to read).",
        DATASET_VERSION: "every stem of one separation per record, with the clip's levels.",
    }
    BUILDER_CONFIGS = list(CONFIGS)
    DEFAULT_CONFIG_NAME = "synthetic"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_INSTRUCTIONS

    def __init__(
        self,
        *,
        separator: str = DEFAULT_SEPARATOR,
        stems: str | Sequence[str] | None = None,
        stem: str | None = None,
        backend: str = "auto",
        separation_precision: str = "auto",
        input: str | os.PathLike[str] | None = None,  # noqa: A002 - the CLI flag's name
        strict: bool = False,
        folds: int = DEFAULT_FOLDS,
        fold_method: str = DEFAULT_FOLD_METHOD,
        split: str | None = None,
        progress: bool = True,
        beam_argv: Sequence[str] = (),
        **kwargs: Any,
    ):
        """Args: the build options (see ``python -m shared_data.build --help``; ``stem=S`` is
        the older spelling of ``stems=(S,)``; ``backend`` is the separation backend) and TFDS's
        own ``data_dir``, ``config``, ``version``, ``file_format`` (default ``array_record``).

        Raises:
            DataError: a bad option (:func:`shared_data.dataset.settings.resolve_settings`).
        """
        kwargs["config"] = config_for(kwargs.get("config") or self.DEFAULT_CONFIG_NAME)
        kwargs.setdefault("file_format", "array_record")
        # Resolved before TFDS's own __init__, which asks _info() for the features (the stems).
        self.settings, self._separator = resolve_settings(
            kwargs["config"], separator=separator, stems=stems, stem=stem, backend=backend,
            separation_precision=separation_precision, input=input, strict=strict, folds=folds,
            fold_method=fold_method, split=split, progress=progress, beam_argv=beam_argv,
        )  # fmt: skip
        self._download_config: tfds.download.DownloadConfig | None = None
        self._inputs: BuildInputs | None = None
        self._fold_of: dict[str, int] = {}
        self._report: dict[str, Any] | None = None
        self.songs_cached = 0  # songs of the last build taken from an earlier build's cache
        self.reused_existing = False
        super().__init__(**kwargs)
        # TFDS re-creates builders from this when pickling.
        self._original_state.update(
            separator=separator, stems=stems, stem=stem, backend=backend,
            separation_precision=separation_precision, input=input, strict=strict,
            folds=folds, fold_method=fold_method, split=split, progress=progress,
            beam_argv=self.settings.beam_argv, file_format=kwargs["file_format"],
        )  # fmt: skip

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10 resolves this through `importlib_resources`, a backport it only installs on
        # Python < 3.9, and crashes without it; the answer is simply this file.
        return epath.Path(__file__)

    # ------------------------------------------------------------------ TFDS hooks

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Log-mel spectrograms (3-s clips) of a separated stem of songs, for music genre "
                "classification; folds are grouped by song."
            ),
            features=record_features(self.builder_config.feature_params, self.stems),
            metadata=tfds.core.MetadataDict(),
        )

    def _log_download_bytes(self) -> None:
        # TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown size,
        # ...)" here, which means nothing for local audio; say what is being built instead.
        n = len(self._inputs.items) if self._inputs else 0
        print(
            f"building {NAME}/{self.builder_config.name} from {n} input files into {self.data_path}"
        )

    def _log_download_done(self) -> None:
        pass  # the build CLI prints its own summary

    def download_and_prepare(
        self, *, download_dir: Any = None, download_config: Any = None, **kwargs: Any
    ) -> None:
        """Build (or reuse) the dataset; see the module docstring for reuse and resume rules.

        Raises:
            DataError: bad inputs or flags, a strict build with rejected files, labels without
                songs or a near-silent stem, or an existing dataset built differently.
        """
        self._download_config = download_config
        cache = SongCache(self.cache_dir)
        with cache.lock(f"{NAME}/{self.builder_config.name} in {self.data_dir_root}"):
            cache.clean_partial()
            if (self.data_path / "dataset_info.json").exists():
                self._check_existing()
                self.reused_existing = True
                return
            # Fail on bad inputs before TFDS starts its folders and messages.
            self._inputs = build_inputs(self.settings, self._input_root())
            stale = remove_stale_incomplete(Path(self.data_path), self.version)
            if stale:
                print(
                    f"resuming an interrupted build of {NAME}/{self.builder_config.name}: removed "
                    f"{stale} unfinished TFDS folder(s); finished songs come from the cache "
                    f"{self.cache_dir}",
                    flush=True,
                )
            super().download_and_prepare(
                download_dir=download_dir, download_config=download_config, **kwargs
            )
            store_uncompressed(self.data_path)  # read speed: see shared_data.dataset.records

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict]]]:
        config = self.builder_config
        inputs = self._inputs or build_inputs(self.settings, self._input_root())
        started = time.monotonic()
        cache = SongCache(self.cache_dir)
        done = self._process(inputs, cache)
        fixed = None
        if inputs.partition is not None:
            fixed = split_source.fixed_splits(done, inputs.partition, cache, self.stems)
        head = report_head(
            self.settings, dataset=f"{self.name}/{config.name}/{self.version}",
            dataset_dir=dataset_dir(self.data_dir_root, config.name),
            input_root=self._input_root(),
        )  # fmt: skip
        outcome = settle(
            done, inputs, self.settings, fixed, head=head, seconds=time.monotonic() - started,
            cache_report=self.cache_dir / REPORT_NAME,
        )  # fmt: skip
        self.info.features["label"].names = outcome.labels
        write_json(self.report_path, outcome.report)
        self._report = outcome.report
        self._fold_of = outcome.fold_of
        self.info.metadata.update(outcome.metadata)
        return {
            split: self._generate_examples(songs, outcome.labels)
            for split, songs in outcome.splits.items()
        }

    def _generate_examples(  # type: ignore[override]
        self, songs: Sequence[Song], labels: Sequence[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        cache = SongCache(self.cache_dir)
        index = {name: i for i, name in enumerate(labels)}
        for song in songs:
            entry = cache.get_entry(song.key)
            if entry is None or entry_clips(entry) != song.n_clips:
                raise DataError(
                    f"cache entry for {song.path} vanished from {self.cache_dir} during the "
                    "build; run the build again"
                )
            label = UNLABELLED if song.label is None else index[song.label]
            fold = self._fold_of[song.song_id]
            for i, fields in enumerate(clip_fields(entry, self.stems)):
                yield (
                    f"{song.path}#{i:05d}",
                    {
                        **fields,
                        "label": label,
                        "song_id": song.song_id,
                        "clip_index": song.first_clip + i,
                        "fold": fold,
                    },
                )

    # ------------------------------------------------------------------ helpers

    @property
    def cache_dir(self) -> Path:
        """``<data_dir>/.vocal_mels_cache/<config>``: per-song mels and the last build report."""
        return Path(self.data_dir_root) / CACHE_DIRNAME / self.builder_config.name

    @property
    def report_path(self) -> Path:
        """The dataset's ``build_report.json``."""
        return Path(self.data_path) / REPORT_NAME

    @property
    def report(self) -> dict[str, Any]:
        """The build report (see the module docstring): the one this build made, or, for a
        dataset reused as it was, the one written when it was built."""
        if self._report is None:
            self._report = json.loads(self.report_path.read_text())
        return self._report

    @property
    def stems(self) -> tuple[str, ...]:
        """The stems this build stores, in the separator's order (``--stems``; default all)."""
        return self.settings.stems

    def _process(self, inputs: BuildInputs, cache: SongCache) -> Processed:
        """Separate, featurise and put in ``cache`` every song not cached yet (on Beam first
        with ``beam_argv``); the rest come from ``cache``."""
        if len(cache):
            print(f"song cache {self.cache_dir}: {len(cache)} entries to reuse", flush=True)
        fresh = frozenset()
        if self.settings.beam_argv:
            require_beam()  # before importing the module that imports apache_beam
            from shared_data.dataset.beam_stage import run_stage

            spec = self.settings.stage_spec(self.cache_dir)
            fresh = run_stage(inputs.items, spec, self.settings.beam_argv)
        done = process_songs(
            inputs.items, self.settings.song_settings(), cache,
            lambda wave: self._featurise(wave, self._separator),
            desc=f"{NAME}/{self.builder_config.name}", progress=self.settings.progress,
            fresh=fresh,
        )  # fmt: skip
        if done.n_cached:
            print(f"resumed: {done.n_cached} of {len(inputs.items)} songs reused from the cache")
        self.songs_cached = done.n_cached
        return done

    def _featurise(self, wave: np.ndarray, separator: Any) -> dict[str, np.ndarray]:
        """A whole song ``[2, n]`` @ 44.1 kHz -> its song-cache entry (every stem's mels and
        the levels; :func:`shared_data.dataset.stage.featurise_song`)."""
        return featurise_song(wave, separator, self.builder_config.feature_params)

    def _input_root(self) -> Path | None:
        manual = getattr(self._download_config, "manual_dir", None)
        return input_root(self.settings, self.data_dir_root, manual)

    def _check_existing(self) -> None:
        """Refuse to reuse a dataset built with other settings or from other input files."""
        stored = dict(self.info.metadata)
        check_settings(self.settings, stored, Path(self.data_path))
        inputs = build_inputs(self.settings, self._input_root())
        check_inputs(self.settings, stored, inputs.items, Path(self.data_path))


def build_dataset(
    data_dir: str | os.PathLike[str] | None = None,
    config: str | VocalMelsConfig = "synthetic",
    *,
    overwrite: bool = False,
    **options: Any,
) -> VocalMels:
    """Build (or reuse) ``vocal_mels/<config>`` under ``data_dir`` and return its builder; its
    :attr:`VocalMels.report` is the build report, :attr:`VocalMels.reused_existing` says whether
    the dataset was there already.

    ``options``: the build options of :class:`VocalMels` (``separator``, ``stems`` (or one
    ``stem``), ``backend``, ``separation_precision``, ``input``, ``strict``, ``folds``,
    ``fold_method``, ``split``, ``progress``, ``beam_argv``), with its defaults.
    ``overwrite=True`` deletes an existing dataset of this config first (the song cache stays,
    so unchanged songs are not separated again). With ``beam_argv`` (Beam pipeline arguments,
    :func:`shared_data.dataset.stage.beam_argv`) the per-song stage runs on Beam before the
    writer (:mod:`shared_data.dataset.stage`).

    Raises:
        DataError: see :meth:`VocalMels.download_and_prepare`.
    """
    cfg = config_for(config)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    kwargs = dict(data_dir=os.fspath(root), config=cfg, **options)
    builder = VocalMels(**kwargs)
    if overwrite and builder.data_path.exists():
        with SongCache(builder.cache_dir).lock(f"{NAME}/{cfg.name} in {root}"):
            shutil.rmtree(builder.data_path)
        # A fresh builder: the old one holds the removed dataset's label names.
        builder = VocalMels(**kwargs)
    builder.download_and_prepare()
    return builder
