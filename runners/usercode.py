"""What counts as user code, and how installed code is named in a key.

User code is any file outside the interpreter's standard library and installed
distributions (an editable install's files live in its project, so they count as user
code); its definitions are fingerprinted by source. Installed code counts by distribution
name and version, zcas by its own version, the standard library by Python's.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import types


def _installed_roots() -> tuple[str, ...]:
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # zcas counts by its version
    roots = {os.path.realpath(p) + os.sep for p in paths if p}
    roots |= {os.path.join(here, d) + os.sep for d in ("zcas", "cas", "lineage", "runners")}
    roots.add(os.path.dirname(os.path.abspath(__file__)) + os.sep)
    return tuple(sorted(roots))


_INSTALLED_ROOTS = _installed_roots()


@functools.lru_cache(maxsize=4096)
def is_user_file(path: str | None) -> bool:
    if not path or path.startswith("<"):
        return False
    return not os.path.realpath(path).startswith(_INSTALLED_ROOTS)


def is_user_module(mod: types.ModuleType | None) -> bool:
    return is_user_file(getattr(mod, "__file__", None))


@functools.cache
def package_version(top: str) -> str:
    """name==version of an installed package, cheapest source first: the module's own
    __version__, its distribution of the same name, then the full map of distributions
    (which reads every installed package's metadata: a quarter of a second)."""
    if top in ("zcas", "builtins") or top in sys.stdlib_module_names:
        if top == "zcas":
            from zcas._version import __version__

            return f"zcas=={__version__}"
        return f"python{sys.version_info.major}.{sys.version_info.minor}"
    v = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(v, str):
        return f"{top}=={v}"
    from importlib import metadata  # ~10 ms to import: only for a package without __version__

    try:
        return f"{top}=={metadata.version(top)}"
    except metadata.PackageNotFoundError:
        pass
    try:
        dists = metadata.packages_distributions().get(top) or [top]
        return f"{dists[0]}=={metadata.version(dists[0])}"
    except Exception:  # noqa: BLE001 - a module with no distribution: vendored
        return f"{top}@python{sys.version_info.major}.{sys.version_info.minor}"


def modname(mod_name: str | None, file: str | None) -> str:
    """A module's name in entries: a script's file stem for ``__main__``, as step names are
    (so ``python flow.py`` and ``zcas run flow.py:main`` share keys)."""
    if mod_name == "__main__" and file:
        return os.path.splitext(os.path.basename(file))[0]
    return mod_name or "?"
