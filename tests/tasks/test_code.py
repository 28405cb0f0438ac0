"""Python source from the standard library (recurlab/tasks/code.py): split by file, deterministic, capped."""

import pytest

from recurlab.tasks.code import is_validation_file, stdlib_code, stdlib_files


def test_stdlib_code_is_split_by_file_deterministically_and_capped(tmp_path):
    for i in range(40):
        (tmp_path / f"pkg{i % 3}").mkdir(exist_ok=True)
        (tmp_path / f"pkg{i % 3}" / f"m{i}.py").write_text(f"def f{i}():\n    return {i}\n")
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "x.py").write_text("def installed(): pass\n")
    files = stdlib_files(tmp_path)
    assert len(files) == 40 and files == stdlib_files(tmp_path) and "site-packages/x.py" not in files
    train, val = stdlib_code(max_bytes=10_000, val_fraction=0.25, root=tmp_path)
    in_val = {f for f in files if is_validation_file(f, 0.25)}
    assert 0 < len(in_val) < 40
    for f in files:
        name = f.split("/")[1][:-3].replace("m", "f")
        assert (f"def {name}(" in val) == (f in in_val) and (f"def {name}(" in train) == (f not in in_val)
    small_train, small_val = stdlib_code(max_bytes=200, val_fraction=0.25, root=tmp_path)
    assert 0 < len(small_train.encode()) <= 150 and len(small_val.encode()) <= 50


def test_the_real_stdlib_gives_python_code_in_both_splits():
    train, val = stdlib_code(max_bytes=300_000, val_fraction=0.1)
    assert 200_000 < len(train.encode()) <= 270_000 and 10_000 < len(val.encode()) <= 30_000
    assert "def " in train and "def " in val and stdlib_code(300_000, 0.1) == (train, val)


def test_bad_arguments_name_what_is_expected():
    with pytest.raises(ValueError, match=r"max_bytes must be an int >= 1"):
        stdlib_code(max_bytes=0)
    with pytest.raises(ValueError, match=r"val_fraction must lie in \(0, 1\)"):
        stdlib_code(val_fraction=1.0)
    with pytest.raises(FileNotFoundError, match="no standard library folder"):
        stdlib_files("/nonexistent/folder")
