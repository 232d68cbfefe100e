"""The TFDS dataset builder ``vocal_mels``: songs -> separated stem -> 3-s log-mel clips.

Written as ``array_record`` and read back with ``builder.as_data_source()``; neither step imports
TensorFlow. Both backends read the same records (``docs/design.md``). The pieces live in
:mod:`~shared_data.dataset.configs` (constants, :class:`VocalMelsConfig`, :data:`CONFIGS`),
:mod:`~shared_data.dataset.songs` (per-song processing), :mod:`~shared_data.dataset.presence`
(the stem-presence check), :mod:`~shared_data.dataset.report` (report and metadata) and
:mod:`~shared_data.dataset.opened` (:func:`open_dataset`); this module keeps their public names.

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

from shared_data.dataset import gtzan, presence, split_source
from shared_data.dataset import inputs as inputs_lib
from shared_data.dataset.cache import CACHE_DIRNAME, SongCache
from shared_data.dataset.configs import (
    CONFIG_NAMES,
    CONFIGS,
    DATASET_VERSION,
    DEFAULT_SEPARATOR,
    DEFAULT_STEM,
    METADATA_FORMAT,
    METADATA_KEYS,
    NAME,
    REPORT_NAME,
    SEPARATION_SR,
    SOURCES,
    UNLABELLED,
    VocalMelsConfig,
    config_for,
    json_normal,
    record_features,
)
from shared_data.dataset.folds import (
    DEFAULT_FOLD_METHOD,
    DEFAULT_FOLDS,
    song_folds,
    validate_k,
    validate_method,
)
from shared_data.dataset.listing import list_inputs
from shared_data.dataset.opened import OpenedDataset, build_command, dataset_dir, open_dataset
from shared_data.dataset.records import store_uncompressed
from shared_data.dataset.report import (
    accepted_labels,
    build_report,
    metadata,
    refuse_or_warn,
    report_head,
)
from shared_data.dataset.reuse import check_existing, remove_stale_incomplete
from shared_data.dataset.songs import Song, SongSettings, entry_clips, process_songs
from shared_data.dataset.stage import StageSpec, clip_fields, featurise_song, require_beam
from shared_data.dataset.stems import parse_stems, resolve_stems
from shared_data.errors import DataError
from shared_data.paths import default_data_dir
from shared_data.separation.registry import get_separator

# The public names other code imports from here, wherever they are defined now.
__all__ = [
    "CONFIGS", "CONFIG_NAMES", "DATASET_VERSION", "DEFAULT_SEPARATOR", "DEFAULT_STEM",
    "METADATA_FORMAT", "METADATA_KEYS", "NAME", "REPORT_NAME", "SEPARATION_SR", "SOURCES",
    "UNLABELLED", "OpenedDataset", "VocalMels", "VocalMelsConfig", "build_command",
    "build_dataset", "dataset_dir", "open_dataset",
]  # fmt: skip


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


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
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "folder: put audio files in <manual_dir>/<label>/<file> (GTZAN layout); csv: put "
        "manifest.csv (rows path,label[,song_id], paths relative to it) in <manual_dir>; gtzan: "
        "put the GTZAN download (genres/ or genres_original/) in <manual_dir>. "
        "Or pass input=... (--input=PATH) instead."
    )

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
        the older spelling of ``stems=(S,)``) and TFDS's own ``data_dir``, ``config``,
        ``version``, ``file_format`` (default ``array_record``)."""
        if stem is not None and stems is not None:
            raise DataError("pass --stems (the stems to store) or --stem (one stem), not both")
        self._separator_name = separator
        self._stems_asked = parse_stems((stem,) if stem is not None else stems)
        self._stems: tuple[str, ...] | None = None
        self._backend = backend
        self._separation_precision = separation_precision
        self._input = Path(input).expanduser() if input is not None else None
        self._strict = strict
        self._folds = validate_k(folds)
        self._fold_method = validate_method(fold_method)
        self._progress = progress
        self._beam_argv = tuple(beam_argv)  # non-empty: the per-song stage runs on Beam first
        self._separator_obj: Any = None
        self._download_config: tfds.download.DownloadConfig | None = None
        self._listed: tuple[list[inputs_lib.SongInput], list[str]] | None = None
        self._fold_of: dict[str, int] = {}
        self._partition: split_source.Partition | None = None  # fixed splits: the lists' verdict
        self.songs_cached = 0  # songs of the last build taken from an earlier build's cache
        self.reused_existing = False
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        # TFDS re-creates builders from this when pickling.
        self._original_state.update(
            separator=separator, stems=stems, stem=stem, backend=backend,
            separation_precision=separation_precision, input=input, strict=strict,
            folds=folds, fold_method=fold_method, split=split, progress=progress,
            beam_argv=self._beam_argv, file_format=kwargs["file_format"],
        )  # fmt: skip
        self._split = split_source.resolve_split(split, self.builder_config)
        if self._input is not None and self.builder_config.source == "synthetic":
            raise DataError(
                f"--input is not used by the synthetic config {self.builder_config.name!r}; drop "
                "it, or use --config=folder|csv|gtzan for your own audio"
            )

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
        n = len(self._listed[0]) if self._listed else 0
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
            # Fail on bad inputs and flags before TFDS starts its folders and messages.
            self._listed = self._list_inputs()
            _ = self.stems  # an unknown or unavailable stem fails here
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
        items, listed = self._listed or self._list_inputs()
        separator = self._separator()
        cache = SongCache(self.cache_dir)
        if len(cache):
            print(f"song cache {self.cache_dir}: {len(cache)} entries to reuse", flush=True)
        started = time.monotonic()
        settings = SongSettings(
            json_normal(separator.info()), self.stems, config.feature_params, config.seed,
            config.seconds,
        )  # fmt: skip
        fresh = frozenset()
        if self._beam_argv:
            require_beam()  # before importing the module that imports apache_beam
            from shared_data.dataset.beam_stage import run_stage

            spec = StageSpec(
                self._separator_name, self._backend, settings, str(self.cache_dir),
                self._separation_precision,
            )  # fmt: skip
            fresh = run_stage(items, spec, self._beam_argv)
        done = process_songs(
            items, settings, cache, lambda wave: self._featurise(wave, separator),
            desc=f"{NAME}/{config.name}", progress=self._progress, fresh=fresh,
        )  # fmt: skip
        if done.n_cached:
            print(f"resumed: {done.n_cached} of {len(items)} songs reused from the cache")
        self.songs_cached = done.n_cached
        fixed = None
        if self._partition is not None:
            fixed = split_source.fixed_splits(done, self._partition, cache, self.stems)
        labels, dropped = accepted_labels(done.rows, listed)
        stem_check = presence.summarise(done.rows, self.stems)
        extra = {
            "songs_cached": done.n_cached,
            "seconds": round(time.monotonic() - started, 3),
            "labels_without_songs": dropped,
            "stem_presence": stem_check,
        }
        if config.source == "gtzan":
            extra.update(split_source.report_sections(self._split, fixed, self._partition, done))
        head = report_head(self, dataset_dir(self.data_dir_root, config.name))
        report = build_report(done.rows, done.songs, labels, head=head, extra=extra)
        _write_json(self.cache_dir / REPORT_NAME, report)
        refuse_or_warn(
            done.rows, dropped, stem_check, strict=self._strict, report=self.cache_dir / REPORT_NAME
        )
        if fixed is not None:
            split_source.require_every_split(fixed, self.cache_dir / REPORT_NAME)
        train = [s for s in done.songs if s.label is not None]
        test = [s for s in done.songs if s.label is None]
        if not train:
            raise DataError(
                f"no usable labelled songs among {len(done.rows)} input files; see "
                f"{self.cache_dir / REPORT_NAME} for the reason of each"
            )
        self.info.features["label"].names = labels
        _write_json(self.data_path / REPORT_NAME, report)
        pairs = [(s.song_id, s.label) for s in done.songs]
        self._fold_of = song_folds(pairs, self._folds, self._fold_method)
        if fixed is not None:  # fixed splits: no song has a cross-validation fold
            self._fold_of = dict.fromkeys(self._fold_of, split_source.NO_FOLD)
        fields = {
            "separator": separator.name, "separator_info": settings.separator_info,
            "backend": self._backend, "stems": list(self.stems),
            "feature_params": config.feature_params.to_dict(), "folds": self._folds,
            "fold_method": self._fold_method, "config": config.to_dict(),
            "settings": self._settings(),
        }  # fmt: skip
        if config.source == "gtzan":
            fields["split"] = self._split
        if fixed is not None:
            meta = metadata(done.rows, fixed.songs["train"], [], labels, fixed.stats, fields=fields)
            self.info.metadata.update({**meta, **fixed.counts()})
            return {k: self._generate_examples(v, labels) for k, v in fixed.songs.items()}
        self.info.metadata.update(
            metadata(done.rows, train, test, labels, done.stats, fields=fields)
        )
        splits = {"train": self._generate_examples(train, labels)}
        if test:
            splits["test"] = self._generate_examples(test, labels)
        return splits

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
    def stems(self) -> tuple[str, ...]:
        """The stems this build stores, in the separator's order (``--stems``; default all).

        Raises:
            DataError: a stem the separator does not produce, naming the fix.
        """
        if self._stems is None:
            separator = self._separator()
            self._stems = resolve_stems(
                self._stems_asked, separator.stems, separator_name=separator.name
            )
        return self._stems

    def _separator(self) -> Any:
        if self._separator_obj is None:
            self._separator_obj = get_separator(
                self._separator_name, self._backend, self._separation_precision
            )
        return self._separator_obj

    def _featurise(self, wave: np.ndarray, separator: Any) -> dict[str, np.ndarray]:
        """A whole song ``[2, n]`` @ 44.1 kHz -> its song-cache entry (every stem's mels and
        the levels; :func:`shared_data.dataset.stage.featurise_song`)."""
        return featurise_song(wave, separator, self.builder_config.feature_params)

    def _input_root(self) -> Path:
        if self._input is not None:
            return self._input
        manual = getattr(self._download_config, "manual_dir", None)
        return Path(manual) if manual else Path(self.data_dir_root) / "downloads" / "manual"

    def _list_inputs(self) -> tuple[list[inputs_lib.SongInput], list[str]]:
        config = self.builder_config
        root = None if config.source == "synthetic" else self._input_root()
        if root is not None and self._input is None and not root.exists():
            raise DataError(
                f"config {config.name!r} needs audio: pass --input=PATH, or put the files in "
                f"TFDS's manual_dir {root} ({self.MANUAL_DOWNLOAD_INSTRUCTIONS})"
            )
        items, labels = list_inputs(config, root)
        if self._split == "fault_filtered":
            self._partition = split_source.partition(items, gtzan.fault_filtered_lists())
            items = self._partition.items
        return items, labels

    def _settings(self) -> dict[str, Any]:
        separator = self._separator()
        settings = {
            "config": self.builder_config.to_dict(),
            "separator": separator.name,
            "separator_info": separator.info(),
            "stems": list(self.stems),
            "folds": self._folds,
            "fold_method": self._fold_method,
        }
        if self.builder_config.source == "gtzan":  # other configs' settings stay as they were
            settings["split"] = self._split
        return json_normal(settings)

    def _check_existing(self) -> None:
        """Refuse to reuse a dataset built with other settings or from other input files."""
        check_existing(self, dict(self.info.metadata))


def build_dataset(
    data_dir: str | os.PathLike[str] | None = None,
    config: str | VocalMelsConfig = "synthetic",
    *,
    overwrite: bool = False,
    **options: Any,
) -> VocalMels:
    """Build (or reuse) ``vocal_mels/<config>`` under ``data_dir`` and return its builder.

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
