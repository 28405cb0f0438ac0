import json

import pytest
import torch

from recurlab.files import append_jsonl, atomic_path, read_jsonl, write_json, write_text


def test_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "sub" / "results.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2} and path.read_text().endswith("\n")
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_new_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        assert stat.S_IMODE(write_text(tmp_path / "new.md", "x").stat().st_mode) == 0o644
        (tmp_path / "new.md").chmod(0o600)
        assert stat.S_IMODE(write_text(tmp_path / "new.md", "y").stat().st_mode) == 0o600  # an existing file's kept
    finally:
        os.umask(umask)


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.pt"
    with atomic_path(path) as tmp:
        torch.save({"step": 1}, tmp)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as tmp:
            torch.save({"step": 2}, tmp)
            raise KeyboardInterrupt  # killed after writing, before the rename
    assert torch.load(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_the_temporary_path_keeps_the_suffix(tmp_path):
    with atomic_path(tmp_path / "plot.png") as tmp:  # matplotlib picks the format by the suffix
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")


def test_read_jsonl_drops_a_torn_last_line_and_rewrites_the_file(tmp_path):
    path = tmp_path / "runs.jsonl"
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with open(path, "a") as f:
        f.write('{"step": 1600, "lo')  # printf '{"step": 1600, "lo' >> runs.jsonl
    with pytest.warns(RuntimeWarning, match="torn last line"):
        assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    append_jsonl(path, {"step": 3})
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}, {"step": 3}]


def test_read_jsonl_ends_an_unterminated_last_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    write_text(path, '{"step": 1}')
    assert read_jsonl(path) == [{"step": 1}]
    append_jsonl(path, {"step": 2})
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]


def test_read_jsonl_refuses_a_bad_line_in_the_middle(tmp_path):
    path = tmp_path / "runs.jsonl"
    write_text(path, '{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_jsonl(path)
    assert read_jsonl(tmp_path / "missing.jsonl") == []
