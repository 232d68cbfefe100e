"""Command-line flags generated from :class:`~shared_data.training.recipe.Recipe`.

API::

    parser = argparse.ArgumentParser()
    add_recipe_flags(parser)                    # --model=... --epochs=... one flag per field
    recipe = recipe_from_args(parser.parse_args(argv))      # validated; raises RecipeError

The flags' types come from :mod:`shared_data.training.recipe_checks` (the field types it validates).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from shared_data.training.recipe import Recipe
from shared_data.training.recipe_checks import base_type, field_types

# --- flags ------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parser_for(name: str, base: type, optional: bool):
    def parse(text: str) -> Any:
        if optional and text.strip().lower() in {"none", ""}:
            return None
        if base is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise argparse.ArgumentTypeError(f"--{name} expects true or false, got {text!r}")
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--{name} expects {base.__name__}, got {text!r}"
            ) from None

    parse.__name__ = base.__name__  # argparse names the type in its messages
    return parse


def add_recipe_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one ``--<field>=<value>`` flag per :class:`Recipe` field (types and help from the field).

    Optional fields accept ``none``; booleans accept ``true/false/1/0/yes/no`` and a bare
    ``--flag`` means true. Defaults are the dataclass defaults (shown in ``--help``).
    """
    hints = field_types(Recipe)
    group = parser.add_argument_group("recipe (shared by jax_impl.train and torch_ref.train)")
    for f in dataclasses.fields(Recipe):
        base, optional = base_type(hints[f.name])
        kwargs: dict[str, Any] = {
            "type": _parser_for(f.name, base, optional),
            "default": f.default,
            "dest": f.name,
            "help": f"{f.metadata.get('help', '')} (default: {f.default})",
        }
        if base is bool:
            kwargs.update(nargs="?", const=True)
        group.add_argument(f"--{f.name}", **kwargs)
    return parser


def recipe_from_args(namespace: argparse.Namespace) -> Recipe:
    """The :class:`Recipe` of parsed flags (extra namespace attributes are ignored)."""
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(Recipe)}
    return Recipe(**values)
