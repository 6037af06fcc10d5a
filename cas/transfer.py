"""Moving objects between two stores, in packs: what makes 10,000 objects a few requests.

Push sends every local pack the remote lacks, as it is (pack first, index last: a pack
interrupted mid-upload is invisible and is sent again next time); objects named one by one
travel in a new pack of their own. Pull does the reverse: whole packs, or, for named
objects and what they reach, just their records, fetched by byte range and verified before
they are stored. Transfers run on several threads; every put is create-only.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from . import codec
from .chunking import decode_manifest
from .db import ObjectDB
from .errors import IntegrityError
from .oid import hash_bytes
from .pack import PREFIX, check_index, idx_key, name_of_idx_key, pack_key
from .tree import decode_tree

JOBS = 8


def remote_packs(backend) -> set[str]:
    return {n for n in (name_of_idx_key(k) for k in backend.list(PREFIX)) if n}


def _upload(src, dst, name: str) -> int:
    """Copy one pack and its index; the index goes last, so the pack counts only when whole."""
    local = src.local_path(pack_key(name))
    if local and hasattr(dst, "put_path"):
        dst.put_path(pack_key(name), local)  # streamed from disk
        size = os.path.getsize(local)
    elif hasattr(dst, "tmp_dir") and hasattr(src, "download"):
        size = src.download(pack_key(name), dst)
    else:
        data = src.get(pack_key(name))
        size = len(data)
        dst.put(pack_key(name), data)
    idx = src.get(idx_key(name))
    check_index(name, idx)
    dst.put(idx_key(name), idx)
    return size + len(idx)


def copy_packs(src, dst, names: Iterable[str], progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Copy whole packs (concurrently); (packs, bytes) copied."""
    names = sorted(names)
    done = total = 0
    with ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="zcas-xfer") as ex:
        for n in ex.map(lambda name: _upload(src, dst, name), names):
            done += 1
            total += n
            if progress:
                progress(done, len(names))
    return done, total


def closure(db: ObjectDB, roots: Iterable[bytes]) -> list[bytes]:
    """The roots and everything they reach (tree entries, chunks), each once."""
    seen: set[bytes] = set()
    order: list[bytes] = []
    stack = list(roots)
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        order.append(oid)
        kind = db.entry(oid).kind
        if kind == codec.KIND_TREE:
            stack.extend(e.oid for e in decode_tree(oid.hex(), db.get(oid)[1]))
        elif kind == codec.KIND_CHUNKED:
            stack.extend(c for c, _ in decode_manifest(oid.hex(), db.get(oid)[1])[1])
    return order


def push_objects(local: ObjectDB, remote: ObjectDB, oids: Iterable[bytes]) -> int:
    """Send the named objects the remote lacks, as one new pack; returns how many."""
    missing = [o for o in oids if not remote.has(o)]
    if not missing:
        return 0
    for o in missing:
        e = local.entry(o)
        remote.put_record(o, e.kind, e.size, local.read_record(o, e))
    remote.flush()
    return len(missing)


def fetch_objects(local: ObjectDB, remote: ObjectDB, roots: Iterable[bytes]) -> int:
    """Fetch the roots and what they reach from ``remote`` into ``local``, verified."""
    fetched = 0
    frontier = [o for o in roots if not local.has(o)]
    while frontier:
        by_pack: dict[str, list] = {}
        for o in dict.fromkeys(frontier):
            e = remote.entry(o)
            by_pack.setdefault(e.pack, []).append((o, e))
        frontier = []

        def one_pack(item):
            name, items = item
            get_ranges = getattr(remote.backend, "get_ranges", None)
            if get_ranges:
                datas = get_ranges(pack_key(name), [e.offset for _, e in items], [e.length for _, e in items])
            else:
                datas = [remote.backend.get_range(pack_key(name), e.offset, e.length) for _, e in items]
            return [(o, e, d) for (o, e), d in zip(items, datas)]

        with ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="zcas-xfer") as ex:
            for batch in ex.map(one_pack, by_pack.items()):
                for o, e, record in batch:
                    kind, payload = codec.decode(o.hex(), record)
                    if kind != codec.KIND_CHUNKED and hash_bytes(payload) != o:
                        raise IntegrityError(o.hex(), "content hash mismatch (fetched from the remote)")
                    local.put_record(o, kind, e.size, record)
                    fetched += 1
                    if kind == codec.KIND_TREE:
                        frontier.extend(x.oid for x in decode_tree(o.hex(), payload) if not local.has(x.oid))
                    elif kind == codec.KIND_CHUNKED:
                        frontier.extend(c for c, _ in decode_manifest(o.hex(), payload)[1] if not local.has(c))
    local.flush()
    return fetched


def tty_progress(verb: str) -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\r{verb}: {done}/{total} packs", end=end, file=sys.stderr, flush=True)

    return show

