"""Dependencies point one way: the import graph of every module, and a torch-only installation.

The rules (``docs/design.md``, "Layout"): ``torch_ref`` imports nothing from ``jax_impl``;
``shared_data`` imports neither backend (the backends register themselves into its registries);
the model packages import no dataset code; and no module imports, directly or through others, a
module that imports it back. The graph is read from the source (every ``import`` statement, at
module level or inside a function), so a lazy import counts too.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("shared_data", "jax_impl", "torch_ref", "benchmarks")
DATASET_CODE = ("shared_data.dataset", "shared_data.audio", "shared_data.corpus")
DATASET_LIBRARIES = ("tensorflow_datasets", "grain", "array_record", "librosa", "soundfile")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


MODULES = _modules()


def _imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports: project modules resolved to the deepest module named,
    other libraries by their full dotted name."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return found


GRAPH = {name: _imports(path, name) for name, path in MODULES.items()}


def _project_edges(name: str) -> set[str]:
    # A submodule's import of its own parent packages is implied by Python, not a dependency.
    parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in GRAPH[name] if m in MODULES and m not in parents and m != name}


def _offenders(importer_prefix: str, imported_prefixes: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name == importer_prefix or name.startswith(importer_prefix + ".")
        for target in targets
        if any(target == p or target.startswith(p + ".") for p in imported_prefixes)
    )


def test_the_graph_covers_every_module():
    assert len(MODULES) > 100
    assert "torch_ref.ensemble" in GRAPH["jax_impl.ensemble"]  # a lazy import, inside a function
    assert "shared_data.ensemble.loaders" in GRAPH["torch_ref.ensemble"]


def test_the_reference_imports_nothing_from_jax():
    assert _offenders("torch_ref", ("jax_impl", "jax", "flax", "optax", "orbax")) == []


def test_shared_data_imports_neither_backend():
    assert _offenders("shared_data", ("jax_impl", "torch_ref")) == []


@pytest.mark.parametrize("models", ["jax_impl.models", "torch_ref.models"])
def test_model_packages_import_no_dataset_code(models):
    assert _offenders(models, DATASET_CODE + DATASET_LIBRARIES) == []


BASE = {
    "shared_data.errors",
    "shared_data.cli",
    "shared_data.registry",
    "shared_data.paths",
    "shared_data.backends",
    "shared_data.destinations",
}


def _design_table() -> dict[str, set[str]]:
    """What each subpackage of shared_data may import besides BASE, read from the table in
    docs/design.md (section 2), so the document and this test cannot drift apart."""
    text = (REPO / "docs" / "design.md").read_text()
    rows = re.findall(r"^\s*\| `(\w+)` \| ([^|]*) \|\s*$", text, flags=re.M)
    return {name: set(re.findall(r"`(\w+)`", allowed)) for name, allowed in rows}


ALLOWED = _design_table()


def test_the_base_modules_import_no_subpackage():
    wrong = sorted(
        f"{name} imports {target}"
        for name in BASE
        for target in GRAPH[name] & set(MODULES)
        if target.startswith("shared_data.") and target not in BASE
    )
    assert wrong == []


def test_shared_data_subpackages_import_only_what_the_design_table_allows():
    wrong = []
    for name, targets in GRAPH.items():
        parts = name.split(".")
        if parts[0] != "shared_data" or len(parts) < 3:
            continue
        for target in targets & set(MODULES):
            sub = target.split(".")
            if sub[0] != "shared_data" or target in BASE or sub[1] == parts[1]:
                continue
            if sub[1] not in ALLOWED[parts[1]]:
                wrong.append(f"{name} imports {target}")
    assert sorted(wrong) == []
    assert set(ALLOWED) == {p.parent.name for p in (REPO / "shared_data").glob("*/__init__.py")}


def _cycle() -> list[str] | None:
    """One import cycle among the project's modules, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(_project_edges(node)):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_the_cycle_search_finds_a_planted_cycle(monkeypatch):
    monkeypatch.setitem(
        GRAPH, "shared_data.errors", {*GRAPH["shared_data.errors"], "shared_data.cli"}
    )
    cycle = _cycle()
    assert cycle is not None and cycle[0] == cycle[-1]
    assert sorted(cycle[1:]) == ["shared_data.cli", "shared_data.errors"]


# A torch-only installation: JAX and its libraries cannot be imported at all.
NO_JAX = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoJax(importlib.abc.MetaPathFinder):
        BLOCKED = ("jax", "jaxlib", "flax", "optax", "orbax", "chex", "grain")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"No module named {name!r} (blocked: a torch-only install)")
            return None

    sys.meta_path.insert(0, NoJax())
    """
)


def _run(code: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / f"child{len(list(tmp_path.glob('child*.py')))}.py"
    script.write_text(NO_JAX + textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=REPO, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_torch_alone_trains_evaluates_and_predicts(tmp_path):
    from shared_data.audio.decode import write_wav
    from shared_data.corpus.synthetic import SAMPLE_RATE, generate_song
    from shared_data.dataset.builder import build_dataset

    data = tmp_path / "data"
    build_dataset(data, "synthetic_small", separator="none", stem="mix", progress=False)
    song = generate_song("rock", 7, seed=7, seconds=6.0)
    write_wav(tmp_path / "song.wav", song.mix, SAMPLE_RATE)
    run = tmp_path / "run"
    done = _run(
        """
        import sys
        from shared_data.cli import run_main

        def main(argv):
            from torch_ref import evaluate, predict, train
            data, run, wav = argv or sys.argv[1:]
            for cli, args in (
                (train.main, [f"--data_dir={data}", "--dataset=synthetic_small", "--model=lstm",
                              "--epochs=1", "--batch_size=16", f"--workdir={run}"]),
                (evaluate.main, [f"--members={run}", f"--data_dir={data}",
                                 "--dataset=synthetic_small", f"--out={run}/eval"]),
                (predict.main, [f"--members={run}", wav]),
            ):
                code = cli(args)
                print("EXIT", cli.__module__, code, flush=True)
            print("JAX LOADED", any(m.split(".")[0] in ("jax", "flax") for m in sys.modules))
            return 0

        run_main(main)
        """,
        tmp_path,
        str(data),
        str(run),
        str(tmp_path / "song.wav"),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "EXIT torch_ref.train" in done.stdout and "JAX LOADED False" in done.stdout
    assert (run / "eval").is_dir() and (run / "checkpoints").is_dir()
    assert "song" in done.stdout  # the prediction table names the file


def test_torch_alone_names_what_a_jax_member_needs(tmp_path):
    run = tmp_path / "jax_run"
    run.mkdir()
    done = _run(
        """
        import sys
        from pathlib import Path
        from shared_data.ensemble.members import MemberInfo
        from torch_ref.ensemble import load_member

        info = MemberInfo.__new__(MemberInfo)
        object.__setattr__(info, "backend", "jax")
        object.__setattr__(info, "run_dir", Path(sys.argv[1]))
        try:
            load_member(info)
        except Exception as err:
            print("ERROR", type(err).__name__, err)
        """,
        tmp_path,
        str(run),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "ERROR MemberError" in done.stdout
    assert "is a jax member; computing it with torch needs that backend installed" in done.stdout
    assert "jax_impl.ensemble failed to import" in done.stdout


def test_no_test_module_imports_another():
    """Shared helpers live in ``tests/support``; a test module imports no other test module."""
    wrong = []
    for suite in ("tests", "parity_tests"):
        for path in sorted((REPO / suite).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    parts = name.split(".")
                    if parts[0] in ("tests", "parity_tests") and (
                        parts[0] == "parity_tests" or parts[1:2] != ["support"]
                    ):
                        wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert sorted(set(wrong)) == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_subpackage_docstring_says_what_the_design_table_says(package):
    doc = (REPO / "shared_data" / package / "__init__.py").read_text()
    said = doc.split("May import:", 1)[1].split('"""', 1)[0]
    assert set(re.findall(r":mod:`shared_data\.(\w+)`", said)) == ALLOWED[package]
