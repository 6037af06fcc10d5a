"""Remotes: named object stores a repository pushes to, pulls from, and asks for cache hits.

Settings live in ``.zcas/config.toml`` as ``[remote.NAME]`` tables (url, endpoint, region,
allow_http); credentials never do: they come from the environment or the provider's usual
chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP,
AWS_REGION for S3).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import attrs

from zcas.cas.bounded import get_bounded
from zcas.cas.collected import collected
from zcas.cas.db import ObjectDB
from zcas.cas.errors import IntegrityError, ObjectNotFoundError, UsageError, ZcasError
from zcas.cas.objstore import ObstoreBackend, RemoteError, check_no_credentials, parse_url
from zcas.cas.oid import from_hex
from zcas.cas.pack import Entry, decode_index, idx_key
from zcas.cas.reach import walk
from zcas.cas.refs import check_tag_name
from zcas.cas.repack import sources_of
from zcas.cas.repo import read_config, write_config
from zcas.cas.safetext import printable
from zcas.cas.storelock import StoreLock
from zcas.cas.transfer import JOBS, closure, copy_packs, fetch_objects, pull_packs, push_objects, remote_packs
from zcas.lineage import actions, segments
from zcas.lineage.records import artifact_ids
from zcas.lineage.remote import RemoteLineage, Unpushed, secret_run_ids

from . import packlog
from .config import Config, check_name
from .refsync import pull_refs, push_refs, unpushed_history

if TYPE_CHECKING:
    from zcas.cas.repo import Repo
    from zcas.lineage.store import Lineage

Progress = Callable[[int, int], None] | None
AHEAD_FETCHES = 2  # fetches of outputs asked ahead under way at once
AHEAD_BATCH = 16  # steps' outputs per fetch asked ahead
CARRIED_BYTES = 16 << 20  # run records carried in entries (actions ``then``) a command keeps, in all


def _warn(line: str) -> None:
    print(f"zcas: warning: {line}", file=sys.stderr, flush=True)


@attrs.frozen
class RemoteSpec:
    name: str
    url: str
    endpoint: str | None = None
    region: str | None = None
    allow_http: bool | None = None
    instance_credentials: bool | None = None  # let the cloud SDK ask the machine's metadata service

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if k != "name" and v is not None}


def remotes(repo: Any, cfg: Config | None = None) -> dict[str, RemoteSpec]:
    """The configured remotes, read through the one layered ``Config`` (so a remote set in
    the user's file or the environment counts as one set in the repository's)."""
    cfg = cfg if cfg is not None else Config(repo.zdir)
    out = {}
    for name, body in cfg.section("remote").items():
        if not isinstance(body.get("url"), str):
            where = cfg.origin(f"remote.{name}.url") or repo.zdir + "/config.toml"
            raise ZcasError(f"{where}: remote.{name}: 'url' must be a string")
        out[name] = RemoteSpec(name, body["url"], body.get("endpoint"), body.get("region"), body.get("allow_http"),
                               body.get("instance_credentials"))
    return out


# Where each provider's SDK finds credentials without asking a metadata service.
_CREDENTIALS = {
    "s3": (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("AWS_WEB_IDENTITY_TOKEN_FILE",),
           ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",), ("AWS_CONTAINER_CREDENTIALS_FULL_URI",), ("AWS_SKIP_SIGNATURE",)),
    "gs": (("GOOGLE_APPLICATION_CREDENTIALS",), ("GOOGLE_SERVICE_ACCOUNT",), ("GOOGLE_SERVICE_ACCOUNT_PATH",),
           ("GOOGLE_SERVICE_ACCOUNT_KEY",)),
    "az": (("AZURE_STORAGE_ACCOUNT_KEY",), ("AZURE_STORAGE_ACCESS_KEY",), ("AZURE_STORAGE_SAS_KEY",),
           ("AZURE_CLIENT_SECRET",), ("AZURE_STORAGE_TOKEN",), ("AZURE_FEDERATED_TOKEN_FILE",),
           ("AZURE_USE_AZURE_CLI",), ("AZURE_STORAGE_USE_EMULATOR",)),
}
_HINT = {"s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "gs": "GOOGLE_APPLICATION_CREDENTIALS",
         "az": "AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_KEY)"}


def check_credentials(spec: RemoteSpec) -> None:
    """Refuse, in one line, a cloud remote with no credentials in the environment, rather
    than let the SDK fall back to probing the machine's metadata service (slow, and wrong
    off a cloud VM) — unless the remote says the machine's own credentials are meant."""
    scheme = parse_url(spec.url)[0]
    scheme = "az" if scheme in ("abfs", "abfss") else scheme
    if spec.instance_credentials or scheme not in _CREDENTIALS:
        return
    if any(all(os.environ.get(v) for v in group) for group in _CREDENTIALS[scheme]):
        return
    raise RemoteError(0, f"no credentials for remote {spec.name}: set {_HINT[scheme]} in the environment "
                         f"(on a cloud machine with its own role: zcas remote add ... --instance-credentials)")


def check_spec(spec: RemoteSpec) -> None:
    """Everything a remote's settings must satisfy before they are written, in one line each."""
    check_name("remote", spec.name)  # the names the config accepts: a '.' would split its key
    parse_url(spec.url)  # a malformed URL (or one holding credentials) fails here, in one line
    check_no_credentials(spec.endpoint, "endpoint URL")
    plain_ok = spec.allow_http or os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes")
    if spec.endpoint and spec.endpoint.lower().startswith("http://") and not plain_ok:
        raise UsageError(f"endpoint {spec.endpoint} is plain HTTP: add --allow-http (a local test server), "
                         "or use https://")


def add_remote(repo: Repo, spec: RemoteSpec) -> None:
    check_spec(spec)
    cfg = read_config(repo.zdir)
    table = cfg.setdefault("remote", {})
    if spec.name in table:
        raise ZcasError(f"remote {spec.name} already exists (change it: zcas remote modify {spec.name} ...)")
    table[spec.name] = spec.settings()
    write_config(repo.zdir, cfg)


def modify_remote(repo: Repo, name: str, **changes: Any) -> RemoteSpec:
    """Change some of a remote's settings (a value of None leaves that one as it is); the
    result is checked as a new remote would be."""
    old = pick(repo, name)
    spec = attrs.evolve(old, **{k: v for k, v in changes.items() if v is not None})
    check_spec(spec)
    cfg = read_config(repo.zdir)
    cfg["remote"][name] = spec.settings()
    write_config(repo.zdir, cfg)
    return spec


def remove_remote(repo: Repo, name: str) -> None:
    cfg = read_config(repo.zdir)
    if name not in cfg.get("remote", {}):
        raise ZcasError(f"no remote named {name}")
    del cfg["remote"][name]
    write_config(repo.zdir, cfg)


def pick(repo: Any, name: str | None, cfg: Config | None = None) -> RemoteSpec:
    rs = remotes(repo, cfg)
    if name is None:
        if not rs:
            raise ZcasError("no remote configured: add one with 'zcas remote add NAME URL'")
        return rs["origin"] if "origin" in rs else rs[sorted(rs)[0]]
    if name not in rs:
        raise ZcasError(f"no remote named {name} (remotes: {', '.join(sorted(rs)) or 'none'})")
    return rs[name]


class Remote:
    """An opened remote: its backend, object database and lineage segments."""

    def __init__(self, repo: Repo, lineage: Lineage, spec: RemoteSpec) -> None:
        self.spec = spec
        self.repo = repo
        check_credentials(spec)
        self.backend = ObstoreBackend(spec.url, spec.endpoint, spec.region, spec.allow_http)
        self.db = ObjectDB(self.backend, tmp_dir=os.path.join(repo.zdir, "objects", "tmp"),
                           warn=lambda line: _warn(f"remote {spec.name}: {printable(line)}"))
        self.lineage = RemoteLineage(lineage, self.backend, os.path.join(repo.zdir, "remotes", spec.name, "segments"))
        self._synced = False
        self._where_hints: dict[bytes, Entry] = {}
        self.unusable: str | None = None  # why lookups stopped asking this remote (see lookup_failed)
        # Lookups and fetches asked ahead of the steps that need them (runners.lookahead): a
        # key is asked once per command, an object fetched once, whoever asks first.
        self._asked: dict[bytes, Future[Any]] = {}
        self._fetching: dict[bytes, Future[Any]] = {}
        self._ahead_lock = threading.Lock()
        self._ahead_pool: ThreadPoolExecutor | None = None
        self._queued: list[tuple[list[bytes], Future[Any]]] = []  # asked ahead, fetched by the next _drain
        self._draining = 0  # threads fetching what was asked ahead
        self._stopping = False
        self._carried = 0  # bytes of carried run records kept in _asked

    def lookup_failed(self, e: Exception) -> None:
        """A cache lookup on the remote failed (offline, server down, refused): lookups are
        an optimisation, so say so once and go on without the remote for this command."""
        if self.unusable is None:
            self.unusable = str(e)
            _warn(f"remote {self.spec.name} cannot be reached ({printable(e)}); continuing without its cache")

    # -- push / pull ---------------------------------------------------------------------

    def push(self, targets: list[bytes] | None, tags: dict[str, bytes] | None = None, progress: Progress = None,
             force: bool = False, refs: bool = False) -> dict[str, int]:
        """Send what the remote lacks; ``refs``: also every tag and the path history.

        The remote's lock is held shared throughout (``cas.storelock``): a ``gc --remote``
        at work makes the push refuse, and no gc starts while it runs."""
        with StoreLock(self.backend, "push", exclusive=False, where=f"remote {self.spec.name}") as lock:
            return self._push(targets, tags or {}, progress, force, refs, lock)

    def _push(self, targets: list[bytes] | None, tags: dict[str, bytes], progress: Progress, force: bool,
              refs: bool, lock: StoreLock) -> dict[str, int]:
        local = self.repo.db
        local.flush()
        pending = self.lineage.unpushed()
        if targets is None:
            have = local.packs()
            on_remote = remote_packs(self.backend)
            gone = collected(self.backend)[0]  # rewritten by a gc there: never sent whole again
            gone |= _sent_before(have - on_remote - gone, on_remote | gone, sources_of(self.repo.backend))
            clean, objects, added = self._push_without_secrets(have - on_remote - gone)
            packs, nbytes = copy_packs(self.repo.backend, self.backend, clean, progress)
            on_remote |= clean
            added |= clean
            stale = (have & gone) - on_remote
            if stale:
                n, refilled = self._refill(stale, pending, tags, refs)
                objects += n
                added |= refilled
        else:
            packs = nbytes = 0
            sent = closure(local, targets)
            objects, added = self._send_objects(sent)
            on_remote = remote_packs(self.backend)
        lock.check()  # what names the packs goes only while a gc cannot have taken them
        packlog.note(self.backend, added)  # after the packs: a pull that reads it finds them
        runs = self.lineage.push(pending=pending)
        # an entry only for runs whose outputs the remote now holds (all of them, after a
        # push of every pack; after a push of named objects, those and what it had)
        there = None if targets is None else (lambda o, sent=set(sent): o in sent or self.db.has(o))
        self._push_actions(pending, on_remote, there)
        for name, oid in tags.items():
            self.push_tag(name, oid, force)
        ntags, history = len(tags), 0
        if refs:
            more, history = push_refs(self, _warn)
            ntags += more
        return {"packs": packs, "bytes": nbytes, "objects": objects, "runs": runs, "tags": ntags, "history": history}

    def _push_actions(self, pending: Unpushed, on_remote: set[str], there: Callable[[bytes], bool] | None) -> int:
        """Write the action cache entry (``lineage.actions``) of each pushed run a lookup
        may use, with where its outputs sit in the packs the remote holds by name. Last, so
        an entry never names what is not there yet (``there``: whether an output is)."""
        jobs: list[tuple[str, bytes, dict[bytes, Entry]]] = []
        recs: list[tuple[str, dict]] = []
        for _, data in pending.records:
            rec = json.loads(data)
            if rec.get("cache_key") and rec.get("status") in ("ran", "cached"):
                outputs = artifact_ids({"outputs": rec.get("outputs")})
                if there is not None and not all(there(o) for o in outputs):
                    continue
                jobs.append((rec["cache_key"], data, actions.locate(self.repo.db, outputs, on_remote)))
                recs.append((rec["cache_key"], rec))
        if not jobs:
            return 0
        thens = []
        for down in actions.downstream(recs):  # the entries a pipeline reaches next, carried along
            then, size = [], 0
            for j in down:
                key, data, where = jobs[j]
                size += len(data)
                if size > actions.THEN_BYTES:
                    break
                then.append(actions.Then(key, data, where))
            thens.append(then)
        with ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="zcas-ac") as ex:
            return sum(ex.map(lambda j, t: actions.put(self.backend, j[0], j[1], j[2], t), jobs, thens))

    def _refill(self, stale: set[str], pending: Unpushed, tags: dict[str, bytes], refs: bool) -> tuple[int, set[str]]:
        """Send, object by object, what this push names (its run records, their inputs and
        outputs, its tags and history lines) that sits in local packs a gc on the remote has
        rewritten, if the remote lacks it: the pack is not sent whole, and gc may have
        dropped objects of it that were unreachable then and are named again now."""
        roots: list[bytes] = []
        for rid, data in pending.records:
            roots.append(rid)
            roots.extend(artifact_ids(json.loads(data)))
        roots.extend(tags.values())
        if refs:
            roots.extend(self.repo.refs.tags().values())
            roots.extend(v.oid for v in unpushed_history(self))
        live, _ = walk(self.repo.db, roots)  # (what was never fetched here is not ours to send)
        return self._send_objects([o for o in sorted(live) if self.repo.db.entry(o).pack in stale])

    def _send_objects(self, oids: list[bytes]) -> tuple[int, set[str]]:
        """(objects sent, the remote packs that made) of the named objects the remote lacks."""
        before = self.db.packs()
        n = push_objects(self.repo.db, self.db, oids)
        return n, self.db.packs() - before

    def _push_without_secrets(self, names: set[str]) -> tuple[set[str], int, set[str]]:
        """(packs that may travel as they are, objects sent otherwise, the packs those made).

        Run records an older zcas wrote hold environment values in the clear; they are
        objects in local packs, so a pack holding one is not copied whole: its other
        objects go in a new pack, and those records stay here."""
        secret = secret_run_ids(self.lineage.lineage) if names else set()
        if not secret:
            return set(names), 0, set()
        clean: set[str] = set()
        rest: list[bytes] = []
        for name in names:
            ids = [e[0] for e in decode_index(name, self.repo.backend.get(idx_key(name)))]
            if secret.isdisjoint(ids):
                clean.add(name)
            else:
                rest.extend(o for o in ids if o not in secret)
        return clean, *self._send_objects(rest)

    def remote_tag(self, name: str) -> bytes | None:
        """What tag NAME names on the remote (None: no such tag), validated before use."""
        check_tag_name(name)
        try:
            data = get_bounded(self.backend, f"refs/tags/{name}", 128)  # an id and a newline
        except ObjectNotFoundError:
            return None
        except IntegrityError:
            data = b""
        try:
            return from_hex(data.decode("ascii").strip())
        except (UnicodeDecodeError, ZcasError):
            raise ZcasError(f"tag {name} on remote {self.spec.name} is damaged: it does not hold an object id") from None

    def push_tag(self, name: str, oid: bytes, force: bool = False) -> None:
        """Set tag NAME on the remote. Creating is create-only, so of two pushes racing to
        create one tag exactly one wins and the other is refused; moving an existing tag to
        another id takes ``force`` (then the last writer wins)."""
        key = f"refs/tags/{name}"
        old = self.remote_tag(name)
        if old == oid:
            return
        if old is not None:
            if not force:
                raise ZcasError(f"tag {name} on remote {self.spec.name} points to {old.hex()[:12]}, not "
                                f"{oid.hex()[:12]} (use --force to move it)")
            self.backend.delete(key)
        if not self.backend.put(key, oid.hex().encode() + b"\n"):
            now = self.remote_tag(name)
            if now != oid:
                shown = now.hex()[:12] if now else "another id"
                raise ZcasError(f"tag {name} on remote {self.spec.name} was just set to {shown} by another push "
                                f"(use --force to move it)")

    def pull(self, targets: list[str] | None, progress: Progress = None,
             warn: Callable[[str], None] | None = None, full: bool = False) -> dict[str, int]:
        """Fetch from the remote, everything verified before it is kept: every pack not yet
        pulled, or the named objects and what they reach. Objects that fail verification are
        skipped, each with one warning (``warn``, default: a line on stderr). Lineage and
        history segments are listed from this repository's cursor on (``full``: all)."""
        warn = warn or _warn
        runs = self.sync_lineage(full)
        local = self.repo.db
        if targets is None:
            done = self._pulled_packs()
            cursor = segments.Cursor(os.path.join(self.repo.zdir, "remotes", self.spec.name, "packs-cursor"))
            if full or cursor.get() is None:  # every pack (and the log's newest time, for next time)
                names, latest = remote_packs(self.backend), packlog.newest(self.backend)
            else:  # what the log names since the last pull (a pack collected since is gone)
                names, latest = packlog.since(self.backend, cursor)
                names = {n for n in names - local.packs() - done if self.backend.exists(idx_key(n))}
            missing = names - local.packs() - done
            res = pull_packs(self.backend, local, missing, progress)
            for line in res.rejected:
                warn(f"remote {self.spec.name}: {printable(line)}")
            self._remember_pulled(res.complete)  # a pack with a refusal is looked at again next time
            if latest is not None and not res.rejected:
                cursor.advance(latest)
            tags, history = pull_refs(self, warn, full)
            return {"packs": res.packs, "bytes": res.bytes, "objects": res.objects, "runs": runs,
                    "rejected": len(res.rejected), "tags": tags, "history": history}
        roots = [self.resolve(t) for t in targets]
        n = fetch_objects(local, self.db, roots)
        return {"packs": 0, "bytes": 0, "objects": n, "runs": runs, "rejected": 0, "tags": 0, "history": 0}

    def _pulled_path(self) -> str:
        return os.path.join(self.repo.zdir, "remotes", self.spec.name, "pulled-packs")

    def _pulled_packs(self) -> set[str]:
        """Remote packs whose every record verified and was kept (copied object by object
        because they held objects this repository had), so no local pack bears their name.
        Without this they would be downloaded again by every pull. Packs with a refused
        record are not remembered: each pull looks at them again (and warns again)."""
        try:
            with open(self._pulled_path(), encoding="ascii", errors="replace") as f:
                return {line.strip() for line in f if len(line.strip()) == 64}
        except FileNotFoundError:
            return set()

    def _remember_pulled(self, names: Iterable[str]) -> None:
        if not names:
            return
        os.makedirs(os.path.dirname(self._pulled_path()), exist_ok=True)
        fd = os.open(self._pulled_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, "".join(f"{n}\n" for n in sorted(names)).encode())
        finally:
            os.close(fd)

    def resolve(self, text: str) -> bytes:
        """A tag on the remote, or an id (prefix) the remote holds."""
        try:
            check_tag_name(text)
        except UsageError:
            return self.db.resolve(text)
        oid = self.remote_tag(text)
        return oid if oid is not None else self.db.resolve(text)

    # -- the shared cache -------------------------------------------------------------------

    def lookup(self, key: bytes) -> tuple[bytes, dict, bytes] | None:
        """(run id, record, its bytes) of the run the remote's action cache holds for
        ``key`` (one GET), checked (``lineage.actions``); None if none. A failure to reach
        the remote raises; an entry that does not validate is no hit (the step runs), with
        one warning. Where the entry says the outputs are is kept for ``fetch``. A key is
        asked once per command (whichever thread asks first, the others wait for its
        answer), and one whose entry came carried in another's is not asked at all."""
        with self._ahead_lock:
            f = self._asked.get(key)
            mine = f is None
            if mine:
                f = self._asked[key] = Future()
        assert f is not None
        if mine:
            try:
                f.set_result(self._lookup(key))
            except BaseException as e:
                f.set_exception(e)
        return f.result()

    def prefetch(self, oids: list[bytes]) -> None:
        """Start fetching ``oids`` in the background (a hit found ahead will want them);
        ``fetch`` of any of them waits for it rather than asking twice. What is asked while
        fetches are under way is fetched a few steps' worth at a time, in the order asked
        (a chain's first steps first), on up to ``AHEAD_FETCHES`` threads."""
        with self._ahead_lock:
            todo = [o for o in oids if o not in self._fetching]
            if not todo or self._stopping:
                return
            f: Future[Any] = Future()
            for o in todo:
                self._fetching[o] = f
            self._queued.append((todo, f))
            if self._draining < AHEAD_FETCHES:
                self._draining += 1
                self._pool().submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._ahead_lock:
                batch, self._queued = self._queued[:AHEAD_BATCH], self._queued[AHEAD_BATCH:]
                if not batch or self._stopping:  # (stop_ahead fails what is left)
                    self._draining -= 1
                    return
            try:
                self._fetch([o for todo, _ in batch for o in todo])
            except Exception:  # one bad guess must not spoil the others: each alone, once
                for todo, f in batch:
                    try:
                        self._fetch(todo)
                    except BaseException as e:  # the step that wants it fetches it itself
                        f.set_exception(e)
                    else:
                        f.set_result(None)
            except BaseException as e:
                for _, f in batch:
                    f.set_exception(e)
                raise
            else:
                for _, f in batch:
                    f.set_result(None)

    def stop_ahead(self) -> None:
        """Drop what was asked ahead and not started; wait for the fetches under way
        (nothing is written into the local store after this returns)."""
        with self._ahead_lock:
            self._stopping = True
            pool, self._ahead_pool = self._ahead_pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._ahead_lock:
            batch, self._queued, self._draining = self._queued, [], 0
        for _, f in batch:  # never fetched: whoever waits on one fetches for itself
            f.set_exception(ZcasError("fetch ahead stopped"))

    def _pool(self) -> ThreadPoolExecutor:
        if self._ahead_pool is None:
            self._ahead_pool = ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="zcas-ahead")
        return self._ahead_pool

    def _lookup(self, key: bytes) -> tuple[bytes, dict, bytes] | None:
        try:
            data = actions.get(self.backend, key.hex())
            if data is None:
                return None
            found = actions.decode_all(key.hex(), data)
        except RemoteError:
            raise
        except ZcasError as e:  # too large, or not an entry for this key
            _warn(f"remote {self.spec.name}: action cache entry {key.hex()[:12]} ignored: {printable(e)}")
            return None
        self._where_hints.update(found.where)
        with self._ahead_lock:  # the entries of the runs downstream: lookups of those keys are answered
            for then_key, rid, rec, raw, where in found.then:
                k = bytes.fromhex(then_key)
                if k in self._asked:
                    continue
                self._carried += len(raw)
                if self._carried > CARRIED_BYTES:  # kept for the whole command: bounded, whatever entries say
                    break
                f: Future[Any] = Future()
                f.set_result((rid, rec, raw))
                self._asked[k] = f
                self._where_hints.update(where)
        return found.run_id, found.record, found.raw

    def sync_lineage(self, full: bool = False) -> int:
        """Index the run records pushed since the last pull (once per process)."""
        if not self._synced:
            self._synced = True
            self._new = self.lineage.pull(full=full)
        return self._new

    def fetch(self, oids: list[bytes]) -> int:
        """Fetch ``oids`` and what they reach, where the action cache said they are when it
        did (a few ranged GETs), else (or when a hint is wrong) through the pack indexes."""
        with self._ahead_lock:
            started = {id(f): f for o in oids if (f := self._fetching.get(o)) is not None}
        hints = True
        for f in started.values():  # fetched ahead already, or being fetched: wait for it
            try:
                f.result()
            except Exception:  # noqa: BLE001 - fetched again below, its failure raised from there
                hints = False  # it may have stopped part way down a folder: walk what is absent
        return self._fetch(oids, hints)

    def _fetch(self, oids: list[bytes], hints: bool = True) -> int:
        if hints and self._where_hints:  # (flushed with the run records this command writes)
            try:
                return fetch_objects(self.repo.db, self.db, oids, locate=self._where_hints.get, flush=False)
            except (ObjectNotFoundError, IntegrityError):
                pass  # a hint was stale (the pack was collected) or wrong: ask the indexes
        # for what is still absent at or below the roots (a folder whose tree came through a
        # good hint may still lack files a bad one named)
        _, absent = walk(self.repo.db, oids)
        return fetch_objects(self.repo.db, self.db, sorted(absent), flush=False)


def _sent_before(names: set[str], sent: set[str], sources: dict[str, list[str]]) -> set[str]:
    """Of local packs the remote lacks by name, those a local repack made only from packs
    the remote holds or a gc there collected (``cas.repack.note_sources``, followed down
    repacks of repacks): every object of theirs went already, so they are treated as a gc
    treats what it collected (not sent whole; what a push names of them is refilled)."""
    memo: dict[str, bool] = {}

    def went(name: str, depth: int = 0) -> bool:
        if name in sent:
            return True
        if name in memo:
            return memo[name]
        memo[name] = False  # (a cycle, impossible for content-named packs, counts as not sent)
        src = sources.get(name, [])
        memo[name] = bool(src) and depth < 64 and all(went(s, depth + 1) for s in src)
        return memo[name]

    return {n for n in names if went(n)}


def open_default(repo: Repo, lineage: Lineage, name: str | None = None, cfg: Config | None = None) -> Remote | None:
    """The remote a run asks on a cache miss: NAME, else origin, else the only one; None if none."""
    rs = remotes(repo, cfg)
    if not rs:
        return None
    return Remote(repo, lineage, pick(repo, name, cfg))
