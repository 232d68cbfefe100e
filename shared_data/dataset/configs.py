"""The ``vocal_mels`` constants and builder configs: names, record/metadata keys, config lookup.

Configs (:data:`CONFIGS`): ``synthetic_small`` (tests), ``synthetic`` (the demo),
``synthetic_instrumental`` (the demo corpus with a third of its songs instrumental), ``folder``
(GTZAN layout ``<input>/<label>/<file>``), ``csv`` (manifest ``path,label[,song_id]``) and
``gtzan`` (GTZAN as distributed, :mod:`shared_data.dataset.gtzan`); see
:mod:`shared_data.dataset.inputs` for the input rules. Custom :class:`VocalMelsConfig` objects
with other sizes work too (their name must differ from the built-in ones).

Features per record (format 3): per built stem ``s`` (``--stems``), ``mel_<s>`` float32
``[128, 128]`` (the log-mel of that stem, stored as its raw bytes, see
:mod:`shared_data.dataset.records`); per built separated stem (not ``mix``) ``level_<s>``
float32, the clip's stem level in dB against the mix, and ``mix_dbfs`` float32, the mix's level
(dB re full scale): the two numbers the build's presence rule reads
(:mod:`shared_data.dataset.presence`); ``label`` ClassLabel (names sorted, the labels
of the accepted songs; an unlabelled csv row is stored as :data:`UNLABELLED` = -1, the value TFDS's
ClassLabel reserves for "no label"); ``song_id`` text; ``clip_index`` int32 (position of the clip
in its song; several csv files of one song are numbered on consecutively, in manifest order, so
``(song_id, clip_index)`` is unique); ``fold`` int32 in ``[0, K)`` from
:func:`shared_data.dataset.folds.song_folds` (``fold_method`` stratified, the default, or hash).

Splits: ``train`` holds every labelled clip (K-fold cross-validation selects on ``fold`` at load
time); ``test`` holds the unlabelled csv rows (present only when there are some). A ``gtzan``
build with ``--split=fault_filtered`` (its default) has ``train``, ``validation`` and ``test``
from the published lists instead, and no folds (:mod:`shared_data.dataset.split_source`).

Metadata (``metadata.json`` beside the records, a TFDS ``MetadataDict``; :data:`METADATA_KEYS`):
``stems`` (the built stems), ``mel_stats`` (``{stem: {"mean", "std"}}``, over every value of every
train clip of that stem), ``separator`` (name), ``separator_info`` (its ``info()``: weights
checksums, ...), ``separation_backend`` (``--backend`` as asked; metadata format 1 called it
``backend``, read by :func:`separation_backend_of`),
``feature_params`` (``FeatureParams.to_dict()``), ``checksums`` ({input path: SHA-256}),
``label_names``, ``folds`` (K), ``fold_method``, ``num_songs``/``num_clips`` per split,
``files_seen``/``files_ok``/``files_rejected``, ``config`` (the config's fields) and ``settings``
(what a rebuild compares); a ``gtzan`` build adds ``split`` (its split source).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from shared_data.dataset.features import FeatureParams
from shared_data.dataset.stems import DEFAULT_STEM  # noqa: F401 (the builder's public names)
from shared_data.errors import DataError

NAME = "vocal_mels"
# 3.0.0: every stem of one separation in each record (``mel_<stem>``, ``level_<stem>``,
# ``mix_dbfs``); 2.0.0 held one stem's ``mel`` as raw bytes in uncompressed shards
# (:mod:`shared_data.dataset.records`); 1.0.0 stored it as protobuf floats, ~30x slower to decode.
DATASET_VERSION = "3.0.0"
#: Older versions: a dataset found under one of them is refused with the rebuild command.
OLDER_VERSIONS = ("2.0.0", "1.0.0")
# The reference report's pipeline: Spleeter 2-stem separation, then the vocal stem is featurised
# (the stem training reads by default; a build stores every stem of the separator).
DEFAULT_SEPARATOR = "spleeter"
MIX = "mix"
#: The record field of the mix's level (dBFS) per clip.
MIX_LEVEL_KEY = "mix_dbfs"
UNLABELLED = -1
REPORT_NAME = "build_report.json"
SEPARATION_SR = 44100
# 2: the separation backend is ``separation_backend`` (format 1: ``backend``).
METADATA_FORMAT = 2
METADATA_KEYS = (
    "stems",
    "mel_stats",
    "separator",
    "separator_info",
    "separation_backend",
    "feature_params",
    "checksums",
    "label_names",
    "folds",
    "fold_method",
    "num_songs",
    "num_clips",
    "files_seen",
    "files_ok",
    "files_rejected",
    "config",
    "settings",
)
SOURCES = ("synthetic", "folder", "csv", "gtzan")
#: The metadata and report key of the separation backend as asked (``--backend``), apart from the
#: training backend of a run's ``recipe.json``.
SEPARATION_BACKEND_KEY = "separation_backend"
#: Its name in datasets and reports written before it had its own (read, never written).
OLD_SEPARATION_BACKEND_KEY = "backend"


@dataclasses.dataclass(eq=False)
class VocalMelsConfig(tfds.core.BuilderConfig):
    """A ``vocal_mels`` config: where the songs come from and how they are featurised.

    Attributes:
        source: ``synthetic``, ``folder``, ``csv`` or ``gtzan``.
        songs_per_genre, seconds, seed, genres: the synthetic corpus (``genres=None``: all of
            :data:`shared_data.corpus.synthetic.GENRES`); ignored by the other sources.
        instrumental_genres: synthetic genres whose songs are rendered without their vocal line
            (``generate_song(..., instrumental=True)``); a corpus for checking what a build does
            with instrumental music. Empty by default, and then absent from :meth:`to_dict`, so
            the built-in configs' settings and records are those of earlier versions.
        instrumental_every: ``n > 0``: every ``n``-th song of each genre (indices ``n-1,
            2n-1, ...``) is rendered without its vocal line, so sung and instrumental songs share
            every genre (0, the default: none; then absent from :meth:`to_dict`).
        feature_params: the feature definition.
    """

    source: str = "synthetic"
    songs_per_genre: int = 8
    seconds: float = 15.0
    seed: int = 0
    genres: tuple[str, ...] | None = None
    instrumental_genres: tuple[str, ...] = ()
    instrumental_every: int = 0
    feature_params: FeatureParams = dataclasses.field(default_factory=FeatureParams)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise DataError(f"config {self.name!r}: source must be one of {SOURCES}")
        if (self.instrumental_genres or self.instrumental_every) and self.source != "synthetic":
            raise DataError(f"config {self.name!r}: instrumental songs need source synthetic")
        if self.instrumental_every < 0:
            raise DataError(f"config {self.name!r}: instrumental_every must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The fields that define the data (JSON-able)."""
        out = {
            "name": self.name,
            "source": self.source,
            "songs_per_genre": self.songs_per_genre,
            "seconds": self.seconds,
            "seed": self.seed,
            "genres": list(self.genres) if self.genres is not None else None,
            "feature_params": self.feature_params.to_dict(),
        }
        if self.instrumental_genres:
            out["instrumental_genres"] = sorted(self.instrumental_genres)
        if self.instrumental_every:
            out["instrumental_every"] = self.instrumental_every
        return out


CONFIGS: tuple[VocalMelsConfig, ...] = (
    VocalMelsConfig(
        name="synthetic_small",
        description="Synthetic corpus for tests: every genre x 3 songs x 6 s.",
        source="synthetic",
        songs_per_genre=3,
        seconds=6.0,
    ),
    VocalMelsConfig(
        name="synthetic",
        description="Synthetic corpus for the demo: every genre x 13 songs x 9 s.",
        source="synthetic",
        # 130 songs of 3 clips rather than 80 of 5: about the same audio (build time) and clips
        # (epoch time), but more singers and melodies per genre to learn from; with stratified
        # folds each fold holds 26 songs (78 clips), 2 or 3 of every genre. Measured with the
        # earlier hash folds (fold 0: 23 songs instead of 11): with the demo's 3-epoch ResNet18
        # recipe, fold-0 validation accuracy over 3 seeds (torch, bf16) rose from 0.87-0.95 to
        # 0.97-0.99.
        songs_per_genre=13,
        seconds=9.0,
    ),
    VocalMelsConfig(
        name="synthetic_instrumental",
        description="The demo corpus with every third song of each genre instrumental: "
        "every genre x 13 songs x 9 s, songs 2, 5, 8, 11 without their vocal line.",
        source="synthetic",
        songs_per_genre=13,
        seconds=9.0,
        instrumental_every=3,
    ),
    VocalMelsConfig(
        name="folder",
        description="Audio files in the GTZAN layout <input>/<label>/<file>.",
        source="folder",
    ),
    VocalMelsConfig(
        name="csv",
        description="Audio files listed in a manifest path,label[,song_id]; unlabelled -> test.",
        source="csv",
    ),
    VocalMelsConfig(
        name="gtzan",
        description="GTZAN as distributed (genres/ .au or genres_original/ .wav); song id = clip.",
        source="gtzan",
    ),
)
CONFIG_NAMES: tuple[str, ...] = tuple(c.name for c in CONFIGS)
#: The configs generated in-process (no input files): built on demand, meaningless for real music.
SYNTHETIC_CONFIGS: tuple[str, ...] = tuple(c.name for c in CONFIGS if c.source == "synthetic")


def config_for(config: str | VocalMelsConfig) -> VocalMelsConfig:
    """The built-in config named ``config`` (or ``config`` itself); unknown names: DataError."""
    if isinstance(config, VocalMelsConfig):
        return config
    for c in CONFIGS:
        if c.name == config:
            return c
    raise DataError(f"unknown config {config!r}; choose one of --config={'|'.join(CONFIG_NAMES)}")


def separation_backend_of(stored: Mapping[str, Any]) -> str | None:
    """The separation backend recorded in a dataset's metadata or build report: its
    ``separation_backend``, else (written before the rename) its ``backend``; None when neither."""
    value = stored.get(SEPARATION_BACKEND_KEY, stored.get(OLD_SEPARATION_BACKEND_KEY))
    return None if value is None else str(value)


def json_normal(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples -> lists), for comparisons with stored data."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def mel_key(stem: str) -> str:
    """The record field holding the log-mel of ``stem``: ``mel_<stem>``."""
    return f"mel_{stem}"


def level_key(stem: str) -> str:
    """The record field holding the level of ``stem`` against the mix (dB): ``level_<stem>``."""
    return f"level_{stem}"


def record_features(params: FeatureParams, stems: Sequence[str]) -> tfds.features.FeaturesDict:
    """The TFDS features of a record: per stem ``mel_<stem>`` float32 ``[n_mels, frames]``, per
    separated stem ``level_<stem>`` float32 and ``mix_dbfs`` float32, ``label``, ``song_id``,
    ``clip_index`` int32, ``fold`` int32."""
    mels = {
        # BYTES: the array's raw bytes, decoded by np.frombuffer (30x faster than protobuf
        # floats, the default encoding; the same values bit for bit).
        mel_key(stem): tfds.features.Tensor(
            shape=(params.n_mels, params.frames),
            dtype=np.float32,
            encoding=tfds.features.Encoding.BYTES,
        )
        for stem in stems
    }
    levels = {
        level_key(stem): tfds.features.Scalar(dtype=np.float32) for stem in stems if stem != MIX
    }
    return tfds.features.FeaturesDict(
        {
            **mels,
            **levels,
            MIX_LEVEL_KEY: tfds.features.Scalar(dtype=np.float32),
            # Names are set once the accepted songs are known (VocalMels._split_generators).
            "label": tfds.features.ClassLabel(),
            "song_id": tfds.features.Text(),
            "clip_index": tfds.features.Scalar(dtype=np.int32),
            "fold": tfds.features.Scalar(dtype=np.int32),
        }
    )
