"""What `add` refuses up front: special files swapped in, links no checkout would restore,
spellings of .zcas; and the repository's own store is never added."""

import os
import threading

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from zcas.cas import ingest
from zcas.cas.checkout import checkout
from zcas.cas.errors import InputPathError, RefusedInputError
from zcas.cas.view import list_tree


def _with_timeout(fn, seconds=10.0):
    """Run ``fn`` in a thread; fail (not hang) if it blocks."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "add blocked on a FIFO"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _swap_for_fifo(path):
    os.unlink(path)
    os.mkfifo(path)


@pytest.mark.parametrize("size", [100, 2 << 20])  # read whole, and chunked
def test_attack_file_turned_fifo_after_walk(repo, tmp_path, monkeypatch, size):
    d = tmp_path / "d"
    d.mkdir()
    victim = d / "victim"
    victim.write_bytes(b"v" * size)
    (d / "other").write_bytes(b"o" * 10)
    real_open = ingest.open_regular

    def swapped(path):
        if os.fsdecode(path).endswith("victim") and not os.path.exists(str(victim) + ".done"):
            _swap_for_fifo(victim)
            open(str(victim) + ".done", "w").close()
        return real_open(path)

    monkeypatch.setattr(ingest, "open_regular", swapped)
    with pytest.raises(InputPathError) as ei:
        _with_timeout(lambda: repo.add([str(d)]))
    assert "not a regular file" in str(ei.value) and "victim" in str(ei.value)
    assert "\n" not in str(ei.value)


def test_attack_fifo_given_directly_is_refused_without_blocking(repo, tmp_path):
    p = tmp_path / "pipe"
    os.mkfifo(p)
    with pytest.raises(InputPathError, match="not a regular file"):
        _with_timeout(lambda: repo.add([str(p)]))


@pytest.mark.parametrize("rel,target,why", [
    ("link", "/etc/passwd", "absolute path"),
    ("link", "../outside", "outside the folder"),
    ("sub/link", "../../outside", "outside the folder"),
    ("sub/link", "x/../../../y", "outside the folder"),
])
def test_attack_symlink_no_checkout_would_restore_is_refused_at_add(repo, tmp_path, rel, target, why):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    os.symlink(target, d / rel)
    with pytest.raises(RefusedInputError) as ei:
        repo.add([str(d)])
    msg = str(ei.value)
    assert msg.startswith(f"refusing to add {d / rel}: symlink") and why in msg
    assert "relative links" in msg and "\n" not in msg
    assert isinstance(ei.value, InputPathError)
    assert list(repo.backend.list("packs/")) == []


def test_links_inside_the_folder_are_kept_and_restored(repo, tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    os.symlink("a.txt", d / "l1")
    os.symlink("../a.txt", d / "sub" / "l2")
    os.symlink("sub", d / "l3")
    [(oid, _, _)] = repo.add([str(d)])
    out = tmp_path / "out"
    checkout(repo.db, oid, str(out))
    assert os.readlink(out / "sub" / "l2") == "../a.txt" and (out / "l1").read_text() == "a"


def test_top_level_symlink_follows_the_same_rule(repo, tmp_path):
    """`zcas add link`: stored as a link when its target stays in its own folder."""
    (tmp_path / "data.txt").write_text("x")
    os.symlink("data.txt", tmp_path / "ok")
    os.symlink("/etc/passwd", tmp_path / "abs")
    os.symlink("../elsewhere", tmp_path / "up")
    [(oid, _, kind)] = repo.add([str(tmp_path / "ok")])
    assert kind == "link" and repo.db.get_bytes(oid) == b"data.txt"
    for name in ("abs", "up"):
        with pytest.raises(RefusedInputError, match="symlink"):
            repo.add([str(tmp_path / name)])


def test_add_never_stores_the_repository_store(repo):
    """`zcas add .` at the repository root skips .zcas (names came back as bytes, and the
    skip compared them with a str)."""
    root = repo.root
    with open(os.path.join(root, "f.txt"), "w") as f:
        f.write("hello")
    [(oid, _, _)] = repo.add([root])
    assert [r[3] for r in list_tree(repo.db, oid)] == ["f.txt"]


@pytest.mark.parametrize("name", [".ZCAS", ".Zcas", ".zc\u200bas", "\uff0ezcas", "\uff0e\uff3a\uff23\uff21\uff33"])
def test_attack_folder_spelled_like_zcas_refused_at_add(repo, tmp_path, name):
    d = tmp_path / "d"
    (d / name).mkdir(parents=True)
    (d / name / "config.toml").write_text("x")
    with pytest.raises(RefusedInputError, match=".zcas"):
        repo.add([str(d)])


_FOLDING = ".zcasZCAS\uff0e\uff5a\uff43\uff41\uff53\u200b\ufeff\u2024x"  # spellings that fold to .zcas, and others


@given(st.one_of(st.binary(min_size=1, max_size=70), st.text(_FOLDING, min_size=1, max_size=8).map(str.encode)))
@example(b".ZCAS")
@example(".zc\u200bas".encode())
@example("\uff0ezcas".encode())
@example("\u2024zcas".encode())
def test_the_walks_shortcut_never_skips_a_reserved_name(name):
    """The walk checks a name for .zcas only when it starts with "." or is not ASCII."""
    from zcas.cas.tree import is_reserved_name

    if is_reserved_name(name):
        assert name[0] == 46 or not name.isascii()
    if name in (b".ZCAS", "\uff0ezcas".encode()):
        assert is_reserved_name(name)  # the examples do reach reserved names
