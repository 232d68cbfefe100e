"""The project's default locations, in one place (the builder, the recipe and the help texts).

Light on purpose: the recipe reads the default data directory without importing TFDS.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "DATA_DIR_RULE", "default_data_dir"]

#: The environment variable that moves every dataset root at once (a cluster's scratch disk).
DATA_DIR_ENV = "VOCALGENRE_DATA_DIR"
#: The rule in words, for help texts.
DATA_DIR_RULE = f"${DATA_DIR_ENV} or ~/vocalgenre_data"


def default_data_dir() -> Path:
    """``$VOCALGENRE_DATA_DIR`` if set (and not empty), else ``~/vocalgenre_data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "~/vocalgenre_data").expanduser()
