"""Helpers shared by the command-line entry points."""

from __future__ import annotations

import sys
from collections.abc import Callable

from shared_data.errors import UserError


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run a CLI ``main``; a :class:`UserError` is printed without a traceback and exits with 2."""
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
