"""A remote plants a chunked-file manifest under the id of a file the victim adds later.

A manifest's id is the hash of the whole file, so a pull can only check that its sizes add
up; the victim's own ``add`` must not trust a copy it finds under that id, and every reader
(in any later process, and after gc) must use the copy whose chunks reassemble."""

import json
import os
import subprocess
import sys
import textwrap

from zcas.cas import codec
from zcas.cas.chunking import encode_manifest
from zcas.cas.gc import gc
from zcas.cas.memory import MemoryBackend
from zcas.cas.oid import hash_bytes
from zcas.cas.pull import pull_packs
from zcas.cas.repo import Repo

from .forge import blob, pack, publish

READ_BACK = textwrap.dedent("""
    import json, os, sys
    from zcas.cas.repo import Repo
    from zcas.cas.checkout import checkout
    from zcas.cas.view import iter_file_bytes
    r = Repo(sys.argv[1])
    fid = bytes.fromhex(sys.argv[2])
    out = {}
    checkout(r.db, fid, sys.argv[3])
    with open(sys.argv[3], "rb") as f:
        out["checkout"] = f.read() == open(sys.argv[4], "rb").read()
    r2 = Repo(sys.argv[1])  # cat and get_bytes from another fresh ObjectDB
    out["cat"] = b"".join(iter_file_bytes(r2.db, fid)) == open(sys.argv[4], "rb").read()
    r3 = Repo(sys.argv[1])
    out["get_bytes"] = r3.db.get_bytes(fid) == open(sys.argv[4], "rb").read()
    print(json.dumps(out))
""")


def _plant(remote, size: int, fid: bytes) -> str:
    """The reviewer's pack: zero chunks, and a manifest of them (sizes adding up) under ``fid``."""
    zeros = bytes(size)
    chunks = [zeros[i : i + 65536] for i in range(0, size, 65536)]
    items = {hash_bytes(c): blob(c) for c in chunks}
    man = encode_manifest(size, [(hash_bytes(c), len(c)) for c in chunks])
    name, body, idx = pack([*items.values(), (fid, codec.KIND_CHUNKED, size, codec.encode(codec.KIND_CHUNKED, man))])
    return publish(remote, name, body, idx)


def _read_back(root, fid, dest, want_path) -> dict:
    p = subprocess.run([sys.executable, "-c", READ_BACK, str(root), fid.hex(), str(dest), str(want_path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _manifest_copies(root, fid) -> int:
    r = Repo(str(root))
    try:
        return len(r.db._copies(fid))
    finally:
        r.close()


def test_attack_planted_manifest_under_a_future_files_id(repo, tmp_path):
    data = os.urandom(2 << 20)
    fid = hash_bytes(data)
    remote = MemoryBackend()
    name = _plant(remote, len(data), fid)
    res = pull_packs(remote, repo.db, [name])
    assert res.objects > 0 and not res.rejected  # it adds up: a pull cannot tell
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    [(oid, _, _)] = repo.add([str(path)])
    assert oid == fid
    assert repo.db.get_bytes(fid) == data  # this process
    repo.db.flush()
    want = tmp_path / "want"
    want.write_bytes(data)
    path.unlink()
    assert _read_back(repo.root, fid, path, want) == {"checkout": True, "cat": True, "get_bytes": True}
    # adding it again (any process) finds its own copy: no third copy
    r = Repo(str(repo.root))
    assert r.add([str(path)])[0][0] == fid
    r.close()
    assert _manifest_copies(repo.root, fid) == 2
    # gc keeps the copy that reassembles (and the chunks it names), drops the planted one
    r = Repo(str(repo.root))
    gc(r.db, [fid], grace=0)
    r.close()
    assert _manifest_copies(repo.root, fid) == 1
    path.unlink()
    assert _read_back(repo.root, fid, path, want) == {"checkout": True, "cat": True, "get_bytes": True}


def test_attack_planted_manifest_then_add_in_memory(repo):
    """store_buffer (values, not files) checks the copy it finds the same way."""
    from zcas.cas.chunking import store_buffer

    data = os.urandom(3 << 20)
    fid = hash_bytes(data)
    remote = MemoryBackend()
    pull_packs(remote, repo.db, [_plant(remote, len(data), fid)])
    assert store_buffer(repo.db, data) == fid
    repo.db.flush()
    assert Repo(str(repo.root)).db.get_bytes(fid) == data


def test_same_manifest_found_under_its_id_is_not_stored_again(repo, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(2 << 20))
    [(fid, _, _)] = repo.add([str(path)])
    repo.db.flush()
    r = Repo(str(repo.root))
    r.add([str(path)])
    r.db.flush()
    r.close()
    assert _manifest_copies(repo.root, fid) == 1
