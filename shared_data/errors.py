"""The user-facing error types of the project.

Every package raises subclasses of :class:`UserError` for problems the user can fix (a bad flag, a
missing dataset, a corrupt file, an unknown model). CLIs catch it, print the message without a
traceback and exit non-zero (see :func:`shared_data.cli.run_main`).
"""

from __future__ import annotations

import os


class UserError(Exception):
    """A problem the user can fix; the message names the thing and the fix."""


class DataError(UserError):
    """Raised by ``shared_data`` for bad datasets, flags and configuration."""


class AudioError(DataError):
    """An audio file that cannot be used: the message names the file and the reason.

    Attributes:
        path: the offending file.
        reason: a short, human-readable reason (also used in build reports).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
