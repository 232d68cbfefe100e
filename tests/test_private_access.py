"""Modules talk through public names: no module reads another object's or module's ``_private``.

Read from the source with ``ast``: an attribute ``x._name`` is allowed only when ``x`` is ``self``
or ``cls`` (an object's own state), or a private name bound at the top level of the same module
(its own helper object); ``from m import _name`` only for the library names listed below, each with
the reason it is needed. Everything else is a dependency on another module's internals, which
that module may change without notice.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("shared_data", "jax_impl", "torch_ref", "benchmarks")

#: Library attributes with a leading underscore that are their public API, and why.
ALLOWED_ATTRIBUTES = {
    # namedtuple's documented methods carry an underscore so they cannot clash with field names.
    "_replace": "namedtuple.replace (documented API)",
    "_asdict": "namedtuple._asdict (documented API)",
    "_fields": "namedtuple._fields (documented API)",
    "_make": "namedtuple._make (documented API)",
}
#: ``(module, name)`` of library privates imported by name, and why.
ALLOWED_IMPORTS = {
    ("numpy._core.multiarray", "_reconstruct"): (
        "the safe unpickler's allow-list must name the exact callable numpy pickles arrays with"
    ),
}


def _module_privates(tree: ast.Module) -> set[str]:
    """Private names bound at the top level of a module (assignments, defs, classes, imports)."""
    names: set[str] = set()
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return {n for n in names if n.startswith("_")}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(source: str, where: str) -> list[str]:
    """``"where:line: text"`` for every access to another object's or module's private name."""
    tree = ast.parse(source, where)
    own = _module_privates(tree) | {"self", "cls"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in own:
                continue
            if node.attr not in ALLOWED_ATTRIBUTES:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and not node.level:
            for alias in node.names:
                if _is_private(alias.name) and (node.module, alias.name) not in ALLOWED_IMPORTS:
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.ImportFrom):  # relative: always this project's modules
            found += [
                f"{where}:{node.lineno}: from {'.' * node.level}{node.module or ''} import {a.name}"
                for a in node.names
                if _is_private(a.name)
            ]
    return found


def test_no_module_reads_another_ones_private_names():
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found += violations(path.read_text(), str(path.relative_to(REPO)))
    assert not found, "private names used from outside their owner:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("def f(builder):\n    return builder._settings()", ["m.py:2: builder._settings"]),
        ("from pkg.mod import _helper", ["m.py:1: from pkg.mod import _helper"]),
        ("from .mod import _helper", ["m.py:1: from .mod import _helper"]),
        ("import torch\nx = torch.nn._reduction", ["m.py:2: torch.nn._reduction"]),
        ("super()._hidden()", ["m.py:1: super()._hidden"]),
        (
            "class A:\n    def f(self):\n        return self._x, type(self)._y",
            ["m.py:3: type(self)._y"],
        ),
    ],
)
def test_the_check_finds_planted_accesses(code, expected):
    assert violations(code, "m.py") == expected


def test_the_check_allows_own_state_module_helpers_and_listed_library_names():
    code = textwrap.dedent(
        """
        import collections
        from numpy._core.multiarray import _reconstruct
        _STATE = object()
        class A:
            def f(self):
                return self._x

            @classmethod
            def g(cls):
                return cls._y
        def h(point):
            return point._replace(x=1), _STATE._lock, point.__dict__
        """
    )
    assert violations(code, "m.py") == []
