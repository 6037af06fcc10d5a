"""Reads without a Python ``open`` (finding 2): a folder a step lists (glob, os.walk,
listdir, scandir, pathlib) is an implicit input by its listing, and a database opened with
``sqlite3.connect`` by its content."""

from __future__ import annotations

import sqlite3
import textwrap

from tests.conftest import run_zcas
from zcas.runners import fileaudit, implicit

FLOW = '''
import glob, os, sqlite3, zcas

@zcas.step
def total() -> int:
    open("exec.log", "a").write("total\\n")
    return sum(int(open(p).read()) for p in sorted(glob.glob("data/*.txt")))

@zcas.step
def walked() -> int:
    open("exec.log", "a").write("walked\\n")
    return sum(len(files) for _, _, files in os.walk("tree"))

@zcas.step
def from_db() -> int:
    open("exec.log", "a").write("from_db\\n")
    con = sqlite3.connect("db.sqlite")
    v = con.execute("select v from t").fetchone()[0]
    con.close()
    return v

@zcas.pipeline
def main():
    return total(), walked(), from_db()
'''


def _ran(root) -> list[str]:
    log = root / "exec.log"
    out = sorted(log.read_text().split()) if log.exists() else []
    if log.exists():
        log.unlink()
    return out


def _db(path, v: int) -> None:
    con = sqlite3.connect(path)
    con.execute("create table if not exists t (v int)")
    con.execute("delete from t")
    con.execute("insert into t values (?)", (v,))
    con.commit()
    con.close()


def test_a_file_added_to_a_globbed_folder_or_a_changed_database_is_a_miss(repo_dir):
    (repo_dir / "flow.py").write_text(textwrap.dedent(FLOW))
    (repo_dir / "data").mkdir()
    (repo_dir / "data" / "a.txt").write_text("1")
    (repo_dir / "data" / "b.txt").write_text("2")
    (repo_dir / "tree" / "sub").mkdir(parents=True)
    (repo_dir / "tree" / "sub" / "x").write_text("x")
    _db(repo_dir / "db.sqlite", 7)
    assert run_zcas("run", "flow.py:main", cwd=repo_dir).code == 0
    assert _ran(repo_dir) == ["from_db", "total", "walked"]
    assert run_zcas("run", "flow.py:main", cwd=repo_dir).code == 0 and _ran(repo_dir) == []
    (repo_dir / "data" / "c.txt").write_text("30")
    assert run_zcas("run", "flow.py:main", cwd=repo_dir).code == 0 and _ran(repo_dir) == ["total"]
    (repo_dir / "tree" / "sub" / "y").write_text("y")  # a sub-folder os.walk went into
    assert run_zcas("run", "flow.py:main", cwd=repo_dir).code == 0 and _ran(repo_dir) == ["walked"]
    _db(repo_dir / "db.sqlite", 8)
    assert run_zcas("run", "flow.py:main", cwd=repo_dir).code == 0 and _ran(repo_dir) == ["from_db"]
    r = run_zcas("why", "flow.total", "--explain", "--json", cwd=repo_dir)
    assert r.code == 0 and "data/" in r.out, r
    (repo_dir / "data" / "c.txt").unlink()  # back to the first listing: the first run's result
    assert run_zcas("run", "flow.py:main", cwd=repo_dir).code == 0 and _ran(repo_dir) == []


def test_a_listing_is_named_dir_slash_and_its_id_follows_its_names(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("1")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with fileaudit.recording(str(tmp_path)) as rec:
            os.listdir("d")
            os.listdir(".")
    finally:
        os.chdir(cwd)
    assert {"d/", "./"} <= rec.reads
    before = implicit.current(str(tmp_path), "d/", None)
    (tmp_path / "d" / "a").write_text("changed content, same names")
    assert implicit.current(str(tmp_path), "d/", None) == before
    (tmp_path / "d" / "b").mkdir()
    assert implicit.current(str(tmp_path), "d/", None) not in (before, None)
    assert implicit.current(str(tmp_path), ".zcas/", None) is None
