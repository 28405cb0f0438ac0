"""The compiled-kernel cache: one build folder per install (issue 13, item 3).

Torch's build files record absolute source paths, so two checkouts (or virtual environments) that
shared one build folder recompiled each other's kernel on every switch. The build folder is keyed
on the source folder as well as on everything that changes the binary.
"""

import shutil
from pathlib import Path

import pytest

from recurlab.ops import _cpu_ext

KERNEL = Path(_cpu_ext.__file__).parent / _cpu_ext.SOURCES[0]


def copy_sources(folder: Path) -> Path:
    target = folder / _cpu_ext.SOURCES[0]
    target.parent.mkdir(parents=True)
    shutil.copy(KERNEL, target)
    return folder


def test_two_copies_of_the_sources_get_different_build_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    a, b = copy_sources(tmp_path / "a"), copy_sources(tmp_path / "b")
    names = {}
    for folder in (a, b):
        monkeypatch.setattr(_cpu_ext, "_source_dir", lambda folder=folder: folder)
        names[folder] = _cpu_ext.extension_name()
        assert _cpu_ext.extension_name() == names[folder]  # stable
    assert names[a] != names[b]
    for folder in (a, b):
        monkeypatch.setattr(_cpu_ext, "_source_dir", lambda folder=folder: folder)
        assert _cpu_ext.build_directory() == tmp_path / "ext" / "recurlab" / names[folder]


def test_the_name_changes_with_what_changes_the_binary(tmp_path, monkeypatch):
    a = copy_sources(tmp_path / "a")
    base = _cpu_ext.extension_name(a)
    monkeypatch.setattr(_cpu_ext, "CFLAGS", _cpu_ext.CFLAGS + ("-DEXTRA",))
    assert _cpu_ext.extension_name(a) != base
    monkeypatch.undo()
    monkeypatch.setattr(_cpu_ext, "_cpu_flags", lambda: "flags : sse2")
    assert _cpu_ext.extension_name(a) != base
    monkeypatch.undo()
    monkeypatch.setattr(_cpu_ext, "_compiler_identity", lambda: "/usr/bin/other-c++ 99")
    assert _cpu_ext.extension_name(a) != base
    monkeypatch.undo()
    (a / _cpu_ext.SOURCES[0]).write_text(KERNEL.read_text() + "\n// edited\n")
    assert _cpu_ext.extension_name(a) != base
    assert set(_cpu_ext.build_key(a)) == {"source_dir", "sources", "cflags", "ldflags", "compiler", "torch",
                                          "python", "cpu"}


def test_building_a_second_install_keeps_the_first(tmp_path, monkeypatch):
    """A real build of a tiny source in two folders: building the second leaves the first's library
    alone, and loading the first again compiles nothing."""
    if _cpu_ext._compiler() is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    sources = ("probe.cpp",)
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
        (folder / "probe.cpp").write_text('extern "C" int recurlab_probe() { return 1; }\n')
    lib_a = _cpu_ext.build(folders[0], sources)
    stamp = lib_a.stat().st_mtime_ns
    lib_b = _cpu_ext.build(folders[1], sources)
    assert lib_a.parent != lib_b.parent and lib_a.exists() and lib_b.exists()
    assert lib_a.stat().st_mtime_ns == stamp
    assert _cpu_ext.build(folders[0], sources) == lib_a
    assert lib_a.stat().st_mtime_ns == stamp  # nothing was recompiled
    assert (lib_a.parent / "build_key.json").exists()
