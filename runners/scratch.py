"""Steps on a worker that shares nothing with the client but the store.

Each task gets a private scratch folder on the worker, laid out like the repository: the
step's declared (and planned implicit) inputs are checked out there by id from the store,
verified as every checkout is; the command runs there (a Python step is called with it as
its working folder), its declared outputs are stored and published, and the folder is
removed, whatever happened. No path of the client's travels with a task: only ids,
repository-relative paths, the command line and the values of the step's declared
environment, so a worker may be any machine that can reach the store.

Failures of the store (unreachable, a corrupt object) are raised as ``StoreFailed``, which
the client does not record as the step's failure: the step did not run, or ran and could
not publish, and nothing it wrote is named by any record.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import posixpath
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from zcas.cas import codec
from zcas.cas.checkout import checkout
from zcas.cas.errors import IntegrityError, StoreError, UsageError, ZcasError
from zcas.cas.ingest import Ingester
from zcas.cas.statcache import StatCache
from zcas.cas.tree import is_reserved_name

from . import workercache
from .capture import Logs, run_captured
from .tasks import check_command, open_store, python_task


class StoreFailed(StoreError):
    """The store failed a worker (not the step): one line, nothing recorded. Plain
    ``(errno, text)`` arguments, so it crosses a process boundary intact."""


class StepImportError(ZcasError):
    """A Python step's module (or the step in it) cannot be imported on a worker."""


def safe_rel(path: str, what: str, empty: bool = False) -> str:
    """A repository-relative path a task may write below its scratch folder: relative,
    normalised, no ``..``, no ``.zcas``; anything else is refused in one line."""
    ok = isinstance(path, str) and "\0" not in path and "\\" not in path
    if ok and path == "":
        ok = empty
    elif ok:
        parts = path.split("/")
        ok = (not path.startswith("/") and posixpath.normpath(path) == path
              and all(p not in ("", ".", "..") and not is_reserved_name(p.encode()) for p in parts))
    if not ok:
        raise UsageError(f"refusing {what} {path!r}: not a plain path inside the repository")
    return path


def _base() -> str:
    """Where scratch folders go: the Dask worker's local directory, else the system's."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return tempfile.gettempdir()


def _rmtree(path: str) -> None:
    shutil.rmtree(path, onerror=_again)


def _again(fn: Any, p: str, _: Any) -> None:
    """What ``rmtree`` could not remove, made writable and removed: a step may leave
    read-only or unreadable (mode 000) folders behind. Nothing is chmod'ed through a link
    (chmod follows links: a link to a file outside would have had that file's mode changed);
    a folder is emptied by ``rmtree`` again once it can be read."""
    try:
        parent = os.path.dirname(p)
        if not os.path.islink(parent):
            os.chmod(parent, stat.S_IRWXU)
        st = os.lstat(p)
        if stat.S_ISDIR(st.st_mode):
            os.chmod(p, stat.S_IRWXU)
            shutil.rmtree(p, onerror=_again)
        else:
            fn(p)
    except OSError:
        pass


@contextlib.contextmanager
def scratch() -> Iterator[str]:
    """A private folder (``root`` inside it is the step's repository), removed at the end."""
    top = tempfile.mkdtemp(prefix="zcas-step-", dir=_base())
    try:
        root = os.path.join(top, "repo")
        os.mkdir(root)
        yield root
    finally:
        _rmtree(top)


def materialise(db: Any, root: str, inputs: dict[str, str], modes: dict[str, str] | None = None) -> None:
    """Check out each input (path -> id) below ``root``, verified, refusing any path that
    would land outside it. ``modes``: inputs that are executable files or links (an id
    alone says neither); a link is made only if it points inside the scratch folder."""
    modes = modes or {}
    real_root = os.path.realpath(root)
    for rel, oid_hex in inputs.items():
        dest = root if rel == "." else os.path.join(root, *safe_rel(rel, "input path").split("/"))  # "." : the whole tree
        if dest != root and not _within(real_root, os.path.dirname(dest)):  # through a link input made before it
            raise UsageError(f"refusing input {rel}: its folder is a link out of the repository")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        mode = modes.get(rel)
        if mode == "link":
            _link(db, root, rel, dest, bytes.fromhex(oid_hex))
            if not _within(real_root, dest):  # links through links: the text looked inside, the path is not
                os.unlink(dest)
                raise UsageError(f"refusing input {rel}: a link that resolves out of the repository")
            continue
        checkout(db, bytes.fromhex(oid_hex), dest, force=True)
        if mode == "exec":
            st = os.stat(dest)
            os.chmod(dest, st.st_mode | (st.st_mode & 0o444) >> 2)  # x where r, as git does


def _within(real_root: str, path: str) -> bool:
    """Whether ``path``, every link on the way followed (as far as it exists), lies in the
    folder whose real path is ``real_root``."""
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def _link(db: Any, root: str, rel: str, dest: str, oid: bytes) -> None:
    """A link input, recreated; its target must resolve inside the scratch folder (a
    relative path, no way out through ``..``), else it is refused in one line."""
    e = db.entry(oid)
    target = db.get_bytes(oid) if e.kind == codec.KIND_BLOB and e.size <= 4096 else b""
    text = os.fsdecode(target)
    where = posixpath.normpath(posixpath.join(posixpath.dirname(rel), text)) if text else ""
    if (not text or "\0" in text or text.startswith("/") or where == ".." or where.startswith("../")
            or any(is_reserved_name(p.encode()) for p in where.split("/"))):
        raise UsageError(f"refusing input {rel}: a link to {text!r}, which is not inside the repository")
    if os.path.isdir(dest) and not os.path.islink(dest):
        _rmtree(dest)
    elif os.path.lexists(dest):
        os.unlink(dest)
    os.symlink(text, dest)


def _failed(name: str, e: BaseException) -> StoreFailed:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if not isinstance(e, StoreError):  # the worker's own disk (full, say): not the step's failure either
        return StoreFailed(0, f"step {name}: worker {socket.gethostname()} failed: {text}")
    return StoreFailed(0, f"step {name}: the store failed on worker {socket.gethostname()}: {text}")


def _worker_error(e: BaseException) -> bool:
    """A failure of the worker or the store, not of the step: an OS error of zcas's own
    work (checking out, spilling logs, building packs), never a refusal (ZcasError)."""
    return isinstance(e, StoreError) or (isinstance(e, OSError) and not isinstance(e, ZcasError))


def store_command_task(spec: dict[str, Any], name: str, argv: list[str], cwd: str, env: dict[str, str | None],
                       inputs: dict[str, str], outputs: list[str], damaged: list[bytes],
                       metrics: tuple[str, ...] = (), modes: dict[str, str] | None = None) -> tuple[Any, ...]:
    """Run a command in a scratch folder holding its inputs; a ``core.Done``'s fields.
    ``env``: what the command's environment adds to the worker's (its params and declared
    variables; None removes one). ``modes``: inputs that are executables or links."""
    cwd = "" if cwd == "." else safe_rel(cwd, "working folder", empty=True)
    for o in (*outputs, *metrics):
        safe_rel(o, "output path")
    try:
        return _command_in_scratch(spec, name, argv, cwd, env, inputs, outputs, damaged, metrics, modes)
    except OSError as e:
        if _worker_error(e):
            raise _failed(name, e) from None
        raise


def _command_in_scratch(spec: dict[str, Any], name: str, argv: list[str], cwd: str, env: dict[str, str | None],
                        inputs: dict[str, str], outputs: list[str], damaged: list[bytes], metrics: tuple[str, ...],
                        modes: dict[str, str] | None) -> tuple[Any, ...]:
    db = open_store(spec)
    db.mark_damaged(damaged)
    with scratch() as root:
        try:
            materialise(db, root, inputs, modes)
        except IntegrityError as e:  # read again once, past what this worker cached
            if not workercache.forget(db, e.oid):
                raise
            db = open_store(spec)
            db.mark_damaged(damaged)
            materialise(db, root, inputs, modes)
        where = os.path.join(root, *cwd.split("/")) if cwd else root
        os.makedirs(where, exist_ok=True)
        for o in outputs:  # as in a working tree, where an output's folder is usually there already
            os.makedirs(os.path.dirname(os.path.join(root, *o.split("/"))), exist_ok=True)
        full = {**os.environ, "PWD": where}
        for k, v in env.items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        started = time.time_ns()
        logs = Logs(os.path.dirname(root))
        try:
            code, err = run_captured(argv, where, full, None, logs)
            ended = time.time_ns()
            log = logs.store(db)
            code, err, found = check_command(root, code, err, outputs, metrics, log)
            ids: dict[str, str] = {}
            if code == 0:
                ing = Ingester(db, StatCache(None))
                ids = {o: ing.add(os.path.join(root, *o.split("/")))[0].hex() for o in outputs}
            db.flush()  # published before the client records a run naming these ids
        except BaseException:
            db.abort()
            raise
    return code, err, ids, {}, started, ended, False, None, {**found, "packs": db.published}


_cwd = threading.Lock()  # the working folder is the process's: one Python step at a time has it


def _resolve(ref: Any, name: str, code: str | None) -> None:
    """Import a step's module here, or fail in one line naming it; and refuse to run code
    other than what the client keyed (``code``: the step's fingerprint there), which would
    record this worker's results under a key that does not describe them."""
    if not isinstance(ref, tuple):
        return
    mod_name, qual = ref[0], ref[1]
    host = socket.gethostname()
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except ImportError as e:
        raise StepImportError(f"step {name}: module {mod_name!r} cannot be imported on worker {host} ({e}): "
                              "install it where the workers run") from None
    except AttributeError:
        raise StepImportError(f"step {name}: module {mod_name!r} on worker {host} has no {qual!r}: "
                              "the workers have another version of it") from None
    if code and not code.startswith("version:") and getattr(obj, "is_zcas_step", False):
        here = obj.code_id()  # memoised: a worker pays for each step's walk once
        if here != code:
            raise StepImportError(f"step {name}: the code of module {mod_name!r} on worker {host} is not the "
                                  f"client's (fingerprint {here[:12]} there, {code[:12]} here): deploy the same "
                                  "version to the workers")


def store_python_task(spec: dict[str, Any], fn: Any, args: list[Any], kwargs: dict[str, Any], allow_pickle: bool,
                      multiple: bool, damaged: list[bytes], name: str, code: str | None = None) -> tuple[Any, ...]:
    """Call a Python step with a scratch folder as its working folder (path inputs are
    checked out inside it); a ``core.Done``'s fields. ``code``: the step's code id as
    the client keyed it."""
    _resolve(fn, name, code)
    with scratch() as root, _cwd:
        before = os.getcwd()
        os.chdir(root)
        try:
            return python_task(spec, fn, args, kwargs, allow_pickle, multiple, damaged, None, name,
                               zdir=os.path.join(os.path.dirname(root), "zdir"), paths=True)
        except StoreError as e:
            if isinstance(e, IntegrityError):  # Dask's retry reads the store again, not this cache
                workercache.forget(open_store(spec), e.oid)
            raise _failed(name, e) from None
        finally:
            os.chdir(before)
