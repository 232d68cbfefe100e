"""The command line both training CLIs share: the recipe's flags, ``--no_progress``, and the
flags only one backend has (:data:`BACKEND_ONLY_FLAGS`, each with the reason)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from shared_data.destinations import write_failure
from shared_data.training.hooks import Hook, ProgressBar
from shared_data.training.loop import TrainingError
from shared_data.training.recipe_flags import add_recipe_flags

#: Flags of one backend's CLI only, and why the other has no such flag.
BACKEND_ONLY_FLAGS: dict[str, dict[str, str]] = {
    "jax": {
        "--coordinator_address": "multi-host JAX joins its processes itself; torchrun passes "
        "the rendezvous to torch in the environment",
        "--num_processes": "as --coordinator_address",
        "--process_id": "as --coordinator_address",
        "--jax_cache": "XLA compiles every program, so JAX keeps them in a persistent cache; "
        "torch eager compiles nothing",
    },
    "torch": {
        "--compile": "torch.compile is opt-in in torch; jax.jit always compiles",
    },
}


def build_train_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with every recipe flag and ``--no_progress`` (backends add their own flags)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_recipe_flags(parser)
    parser.add_argument(
        "--no_progress", action="store_true", help="no progress bar (log lines only)"
    )
    return parser


def cli_hooks(args: argparse.Namespace, *, is_main: bool) -> tuple[Hook, ...]:
    """The hooks a CLI run gets: a progress bar on the main process unless ``--no_progress``."""
    return (ProgressBar(enabled=is_main and not args.no_progress),)


@contextlib.contextmanager
def os_errors_as_user_errors() -> Iterator[None]:
    """Report a failed file operation (full disk, permissions, read-only file system) as one
    :class:`TrainingError` line naming the file, instead of a traceback."""
    try:
        yield
    except OSError as err:
        raise TrainingError(write_failure(err, "--workdir")) from err
