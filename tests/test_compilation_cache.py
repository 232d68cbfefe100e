"""JAX's persistent compilation cache, on by default in the JAX CLIs: a second process that
compiles the same program reads it from the cache instead of compiling it again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax

from jax_impl import runtime

REPO = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp
    from jax import monitoring
    from jax_impl.runtime import use_compilation_cache

    hits = []
    monitoring.register_event_listener(
        lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None
    )
    print("cache:", use_compilation_cache(sys.argv[1]))
    jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((64, 64))).block_until_ready()
    print("hits:", len(hits))
    """
)


def _compile_once(location: str, env: dict) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", CHILD, location], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def test_a_second_process_reads_the_compiled_program_from_the_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # fmt: skip
    cache = tmp_path / "cache"
    assert _compile_once(str(cache), env) == [f"cache: {cache}", "hits: 0"]
    assert any(cache.iterdir())  # the compiled program was written
    again = _compile_once(str(cache), env)  # every program of the first run, ones() included
    assert again[0] == f"cache: {cache}" and int(again[1].split()[1]) >= 1
    assert _compile_once("off", env) == ["cache: None", "hits: 0"]


def test_the_default_location_and_the_environment_override(monkeypatch, tmp_path):
    monkeypatch.delenv(runtime.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.default_compilation_cache() == str(tmp_path / "vocalgenre" / "jax")
    monkeypatch.setenv(runtime.CACHE_ENV, "off")
    assert runtime.default_compilation_cache() == "off"


def test_a_directory_jax_was_given_is_kept(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    try:
        assert runtime.use_compilation_cache("/elsewhere") == str(tmp_path)
        assert runtime.use_compilation_cache("off") == str(tmp_path)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
