"""Finding and opening a built ``vocal_mels`` dataset, without TensorFlow."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from shared_data.dataset.configs import (
    CONFIG_NAMES,
    CONFIGS,
    DATASET_VERSION,
    NAME,
    OLDER_VERSIONS,
    REPORT_NAME,
    separation_backend_of,
)
from shared_data.dataset.records import RecordSource
from shared_data.errors import DataError
from shared_data.paths import default_data_dir


def dataset_dir(data_dir: str | os.PathLike[str], config: str) -> Path:
    """Where ``vocal_mels/<config>`` lives: ``<data_dir>/vocal_mels/<config>/<version>``."""
    return Path(data_dir).expanduser() / NAME / config / DATASET_VERSION


def build_command(config: str, data_dir: str | os.PathLike[str]) -> str:
    """The shell command that builds ``config`` into ``data_dir``."""
    cmd = f"python -m shared_data.build --config={config} --data_dir={data_dir}"
    source = next((c.source for c in CONFIGS if c.name == config), None)
    return cmd + (" --input=PATH" if source in ("folder", "csv", "gtzan") else "")


@dataclasses.dataclass(frozen=True)
class OpenedDataset:
    """A built ``vocal_mels`` dataset, read without TensorFlow.

    Records of :meth:`source` (a :class:`~shared_data.dataset.records.RecordSource`, safe to hand
    to worker processes) are dicts: ``mel_<stem>`` float32 ``[128, 128]`` per stored stem (with
    ``stem=``: that stem's as ``mel``), ``level_<stem>`` and ``mix_dbfs`` float32, ``label`` int
    (``UNLABELLED`` = -1 in ``test``), ``song_id`` bytes, ``clip_index`` int, ``fold`` int.
    """

    path: Path
    config: str
    builder: Any  # tfds ReadOnlyBuilder

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names present (``train``, and ``test`` for csv with unlabelled rows)."""
        return tuple(sorted(self.builder.info.splits.keys()))

    def source(self, split: str = "train", stem: str | None = None) -> Sequence[dict[str, Any]]:
        """Random-access records of ``split`` (``len``, ``[i]``, ``__getitems__``); with
        ``stem``, each record's ``mel`` is that stem's (:func:`records.stem_view`).

        Raises:
            DataError: no such split, or no such stem in this dataset (naming the fix).
        """
        if split not in self.splits:
            raise DataError(
                f"dataset {self.path} has no split {split!r}; it has {', '.join(self.splits)}"
            )
        if stem is not None:
            self.require_stem(stem)
        return RecordSource(self.path, split, self.num_examples(split), stem)

    @property
    def stems(self) -> tuple[str, ...]:
        """The stems stored in the records (``--stems`` of the build)."""
        return tuple(self.metadata.get("stems", ()))

    def require_stem(self, stem: str, flag: str = "--stem") -> None:
        """Raises :class:`DataError` naming the stored stems when ``stem`` is not one of them."""
        if stem not in self.stems:
            raise DataError(
                f"{flag}={stem}: dataset {self.path} holds the stems {', '.join(self.stems)}; "
                f"pass {flag}={'|'.join(self.stems)}, or rebuild it with "
                f"--stems={','.join([*self.stems, stem])} --overwrite (songs already separated "
                "come from the cache)"
            )

    def mel_stats(self, stem: str) -> tuple[float, float]:
        """``(mean, std)`` of ``stem``'s train mels (build metadata; not checked here)."""
        self.require_stem(stem)
        stats = self.metadata["mel_stats"][stem]
        return float(stats["mean"]), float(stats["std"])

    def num_examples(self, split: str = "train") -> int:
        """Number of clips in ``split`` (0 for an absent split)."""
        return self.builder.info.splits[split].num_examples if split in self.splits else 0

    @property
    def label_names(self) -> tuple[str, ...]:
        """Class names, index = label."""
        return tuple(self.builder.info.features["label"].names)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.label_names)

    @property
    def metadata(self) -> dict[str, Any]:
        """The build metadata (keys: ``METADATA_KEYS`` of :mod:`shared_data.dataset.configs`)."""
        return dict(self.builder.info.metadata)

    @property
    def separation_backend(self) -> str | None:
        """``--backend`` of the build (the Spleeter port as asked: ``auto``, ``jax`` or
        ``torch``), from older metadata too; None when not recorded."""
        return separation_backend_of(self.metadata)

    @property
    def report_path(self) -> Path:
        """The ``build_report.json`` written by the build."""
        return self.path / REPORT_NAME


def open_dataset(
    data_dir: str | os.PathLike[str] | None = None, config: str = "synthetic"
) -> OpenedDataset:
    """Open a built ``vocal_mels/<config>`` under ``data_dir`` (default :func:`default_data_dir`).

    Raises:
        DataError: the dataset is not built; the message gives the command that builds it.
    """
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    path = dataset_dir(root, config)
    if not (path / "dataset_info.json").exists():
        refuse_older_version(root, config)
        known = "" if config in CONFIG_NAMES else f" (known configs: {', '.join(CONFIG_NAMES)})"
        raise DataError(
            f"no {NAME} dataset for config {config!r} in {root}{known}; build it with: "
            f"{build_command(config, root)}"
        )
    return OpenedDataset(path=path, config=config, builder=tfds.builder_from_directory(path))


def refuse_older_version(root: Path, config: str) -> None:
    """Raise :class:`DataError` with the rebuild command when ``root`` holds ``config`` built
    only in a record format this version no longer reads (:data:`OLDER_VERSIONS`)."""
    for version in OLDER_VERSIONS:
        if (root / NAME / config / version / "dataset_info.json").exists():
            raise DataError(
                f"{NAME}/{config} in {root} was built in the older record format {version} "
                f"(this version reads {DATASET_VERSION}); rebuild it with: "
                f"{build_command(config, root)} (songs already separated are taken from the cache)"
            )
