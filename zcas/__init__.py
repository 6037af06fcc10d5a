"""zcas: content-addressed caching and versioning for data and ML work.

The public Python API. Implementation lives in zcas.cas (objects), zcas.lineage (the
metadata graph) and zcas.runners (execution and the command line).
"""

from zcas._version import __version__

__all__ = ["__version__", "Repo", "ZcasError"]


def __getattr__(name: str):
    # Lazy, so `import zcas` stays cheap for the command line.
    if name == "Repo":
        from zcas.cas.repo import Repo

        return Repo
    if name == "ZcasError":
        from zcas.cas.errors import ZcasError

        return ZcasError
    raise AttributeError(f"module 'zcas' has no attribute {name!r}")
