"""``zcas://``: stored data for every fsspec reader (pandas, polars, pyarrow, DuckDB).

Registered with fsspec through the ``fsspec.specs`` entry point, so ``fsspec.open`` and
every library built on it knows the protocol once zcas is installed. Importing this
package imports fsspec; nothing in zcas imports it unless a ``zcas://`` path is used.
"""

from .filesystem import ZcasFile, ZcasFileSystem
from .location import BadLocationError, Location, parse, unparse

__all__ = ["BadLocationError", "Location", "ZcasFile", "ZcasFileSystem", "parse", "unparse"]
