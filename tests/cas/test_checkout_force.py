"""Checkout over a file that stands where the tree has a folder (issue 12)."""

import os

import pytest

from zcas.cas.checkout import checkout
from zcas.cas.errors import ConflictError, ZcasError


def _tree(repo, tmp_path):
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "x").write_text("x")
    (src / "d" / "e" / "y").write_text("y")
    (src / "top").write_text("t")
    [(oid, _, _)] = repo.add([str(src)])
    return oid


def test_force_replaces_a_file_standing_where_a_folder_goes(repo, tmp_path):
    oid = _tree(repo, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "d").write_text("a file where the tree has a folder")
    assert checkout(repo.db, oid, str(out), force=True) == 3
    assert (out / "d" / "x").read_text() == "x" and (out / "d" / "e" / "y").read_text() == "y"
    assert (out / "top").read_text() == "t"


def test_force_replaces_a_file_deeper_down(repo, tmp_path):
    oid = _tree(repo, tmp_path)
    out = tmp_path / "out"
    (out / "d").mkdir(parents=True)
    (out / "d" / "e").write_text("file in place of d/e")
    checkout(repo.db, oid, str(out), force=True)
    assert (out / "d" / "e" / "y").read_text() == "y"


def test_force_replaces_a_link_to_a_folder_and_writes_below_the_new_folder(repo, tmp_path):
    """A link where the tree has a folder is replaced, and what lies behind the link is
    never judged as the checkout's own (it belongs to another folder, left alone)."""
    oid = _tree(repo, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x").write_text("x")  # same content as d/x: must not count as already written
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / "d")
    checkout(repo.db, oid, str(out), force=True)
    assert not (out / "d").is_symlink() and (out / "d" / "x").read_text() == "x"
    assert (elsewhere / "x").read_text() == "x" and sorted(os.listdir(elsewhere)) == ["x"]


def test_without_force_a_file_in_place_of_a_folder_is_a_one_line_conflict(repo, tmp_path):
    oid = _tree(repo, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "d").write_text("mine")
    with pytest.raises(ConflictError) as ei:
        checkout(repo.db, oid, str(out))
    assert "\n" not in str(ei.value) and str(out / "d") in str(ei.value)
    assert (out / "d").read_text() == "mine"


@pytest.mark.parametrize("force", [False, True])
def test_a_file_above_the_destination_is_a_one_line_error(repo, tmp_path, force):
    oid = _tree(repo, tmp_path)
    (tmp_path / "f").write_text("a file")
    with pytest.raises(ZcasError) as ei:
        checkout(repo.db, oid, str(tmp_path / "f" / "out"), force=force)
    assert not isinstance(ei.value, NotADirectoryError) and "\n" not in str(ei.value)
    assert (tmp_path / "f").read_text() == "a file"
    [(foid, _, _)] = repo.add([str(tmp_path / "src" / "top")])
    with pytest.raises(ZcasError):
        checkout(repo.db, foid, str(tmp_path / "f" / "sub" / "top"), force=force)
