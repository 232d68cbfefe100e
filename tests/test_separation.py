"""The separator registry, the plug-in hook, the `none` separator and stem choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared_data.errors import DataError
from shared_data.separation import registry as separation
from shared_data.separation.registry import (
    STEM_CHOICES,
    Separator,
    available_separators,
    describe_separator,
    get_separator,
    register_separator,
    require_stem,
    select_stem,
)


class _FakeSeparator:
    """Splits a song into two halves by gain; records the backend it was built for."""

    name = "fake"
    stems = ("vocals", "accompaniment", "mix")

    def __init__(self, backend: str):
        self.backend = backend

    def separate(self, songs):
        return [{"vocals": 0.25 * s, "accompaniment": 0.75 * s, "mix": s} for s in songs]

    def info(self):
        return {"name": self.name, "backend": self.backend}


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so tests can register names without leaking them."""
    # Import the real plug-ins first: one first imported into the copy would be lost with it.
    separation.SEPARATORS.load_plugins()
    monkeypatch.setattr(separation.SEPARATORS, "_entries", dict(separation.SEPARATORS._entries))
    return separation.SEPARATORS


def _songs():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((2, n)).astype(np.float32) for n in (44100, 50000)]


def test_none_returns_the_mix_unchanged():
    sep = get_separator("none")
    assert isinstance(sep, Separator)
    assert (sep.name, sep.stems) == ("none", ("mix",))
    songs = _songs()
    copies = [s.copy() for s in songs]
    out = sep.separate(songs)
    assert [list(d) for d in out] == [["mix"], ["mix"]]
    for song, copy, stems in zip(songs, copies, out, strict=True):
        assert stems["mix"] is song
        np.testing.assert_array_equal(stems["mix"], copy)
    assert json.loads(json.dumps(sep.info())) == {"name": "none", "stems": ["mix"]}
    with pytest.raises(ValueError, match=r"song 0 must be stereo \[2, n\]"):
        sep.separate([np.zeros(100, np.float32)])


def test_none_is_listed_and_stem_choices_are_fixed():
    assert "none" in available_separators()
    assert STEM_CHOICES == ("vocals", "accompaniment", "mix")


def test_unknown_separator_lists_the_valid_ones():
    with pytest.raises(DataError, match=r"unknown separator 'demucs'; choose one of --separator="):
        get_separator("demucs")
    with pytest.raises(DataError) as info:
        get_separator("demucs")
    listed = str(info.value).split("--separator=")[1].split(";")[0].split("|")
    assert set(listed) == set(available_separators()) and "none" in listed


def test_unknown_backend_and_precision_name_the_flag():
    with pytest.raises(DataError, match=r"unknown backend 'tpu'; .*--backend=auto\|jax\|torch"):
        get_separator("none", backend="tpu")
    with pytest.raises(DataError, match=r"'fp16'; .*--separation_precision=auto\|fp32\|bf16"):
        get_separator("none", precision="fp16")


def test_factories_get_the_precision_and_older_ones_keep_theirs(registry):
    asked = []

    def factory(backend, precision):
        asked.append((backend, precision))
        separator = _FakeSeparator(backend)
        separator.choice = f"{backend} {precision} (asked)"
        return separator

    register_separator("fake", factory)
    sep = get_separator("fake", "torch", "bf16")
    assert asked == [("torch", "bf16")]
    assert describe_separator(sep) == "fake: torch bf16 (asked)"
    # A factory written before precisions existed takes the backend only: it runs at its one
    # precision, so fp32 and auto build it and bf16 is refused with the flag to change.
    register_separator("older", _FakeSeparator)
    assert get_separator("older", "jax", "fp32").backend == "jax"
    assert describe_separator(get_separator("older")) == "fake"  # no choice: the name alone
    with pytest.raises(DataError, match=r"'older' has no bf16 mode; .*=auto\|fp32"):
        get_separator("older", "jax", "bf16")
    # The `none` separator has no network: any precision gives the mix back.
    assert get_separator("none", "auto", "bf16").stems == ("mix",)


def test_select_stem_from_the_none_separator():
    song = _songs()[0]
    out = get_separator("none").separate([song])[0]
    assert select_stem(out, "mix", separator_name="none") is song
    with pytest.raises(DataError, match="separator 'none' produces only the mix; pass --stem=mix"):
        select_stem(out, "vocals", separator_name="none")
    with pytest.raises(DataError, match=r"unknown stem 'drums'; choose from --stem=vocals\|"):
        select_stem(out, "drums", separator_name="none")


def test_registration_builds_lazily_and_names_the_alternative(registry):
    built = []

    def factory(backend):
        built.append(backend)
        return _FakeSeparator(backend)

    register_separator("fake", factory)
    assert built == []  # nothing heavy happens at registration
    sep = get_separator("fake", backend="torch")
    assert built == ["torch"] and sep.backend == "torch"
    vocals = select_stem(sep.separate(_songs())[0], "vocals", separator_name="fake")
    np.testing.assert_allclose(vocals, 0.25 * _songs()[0])
    with pytest.raises(DataError, match=r"pass --stem=mix or --separator=.*fake"):
        require_stem(("mix",), "vocals", separator_name="none")


def test_duplicate_registration_raises(registry):
    with pytest.raises(DataError, match="separator 'none' is registered twice"):
        register_separator("none", lambda backend: _FakeSeparator(backend))
    register_separator("fake", _FakeSeparator)
    with pytest.raises(DataError, match="separator 'fake' is registered twice"):
        register_separator("fake", _FakeSeparator)


def test_plugin_modules_register_themselves(registry, tmp_path, monkeypatch):
    package = tmp_path / "vg_plugins_ok"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "fake_sep.py").write_text(
        "from shared_data.separation.registry import NoneSeparator, register_separator\n"
        "class Plugged(NoneSeparator):\n"
        "    name = 'plugged'\n"
        "    def __init__(self, backend):\n"
        "        self.backend = backend\n"
        "register_separator('plugged', Plugged)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        registry, "builtin_plugins", ("vg_plugins_ok.fake_sep", "vg_plugins_absent.sep")
    )
    assert get_separator("plugged", backend="jax").backend == "jax"  # never imported by hand
    assert "plugged" in available_separators()


def test_broken_plugin_is_reported_not_hidden(registry, tmp_path, monkeypatch):
    (tmp_path / "vg_broken_sep.py").write_text("import vg_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "builtin_plugins", ("vg_broken_sep",))
    assert "none" in available_separators()  # the other separators still work
    with pytest.raises(DataError, match=r"plug-in vg_broken_sep failed to import .*vg_no_such"):
        get_separator("vg_broken")
