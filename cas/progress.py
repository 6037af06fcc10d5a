"""Progress bars for long commands (add, push, pull, checkout, fsck), drawn by click's own
progressbar: click is already every command's dependency and keeps the terminal handling
(widths, redraw rate, ETA) right, so no new library earns a place for this.

Drawn only when stderr is a terminal (scripts and logs get nothing), on stderr (stdout
stays the command's output), and without colour when ``NO_COLOR`` is set (no-color.org).
Callers hand the returned function ``(done, total)`` as work finishes; None means no bar.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

Progress = Callable[[int, int], None]


def tty_bar(label: str, unit: str = "") -> Progress | None:
    """A ``(done, total)`` callback drawing a bar on a terminal's stderr; None elsewhere."""
    if not sys.stderr.isatty() or os.environ.get("TERM") == "dumb":
        return None
    return _Bar(label, unit)


class _Bar:
    def __init__(self, label: str, unit: str) -> None:
        self.label, self.unit = label, unit
        self.bar: Any = None
        self.shown = 0
        self.finished = -1  # the total of the bar last completed

    def __call__(self, done: int, total: int) -> None:
        import click

        if self.bar is None and done >= total and self.finished == total:
            return  # told again that it is done: drawn once
        if self.bar is None or self.bar.length != max(total, 1):
            if self.bar is not None:
                self.bar.render_finish()
            self.bar = click.progressbar(length=max(total, 1), label=self.label, file=sys.stderr, show_pos=True,
                                         color=False if os.environ.get("NO_COLOR") else None,
                                         item_show_func=lambda _: self.unit or None)
            self.bar.render_progress()
            self.shown = 0
        if done > self.shown:
            self.bar.update(done - self.shown)
            self.shown = done
        if done >= total:
            self.bar.render_finish()
            self.bar, self.finished = None, total


def tree_size(path: str) -> int:
    """Bytes of the regular files at or under ``path`` (symlinks not followed; what cannot
    be read counts nothing: the add itself reports it)."""
    total, todo = 0, [path]
    while todo:
        p = todo.pop()
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                with os.scandir(p) as it:
                    for de in it:
                        if de.is_dir(follow_symlinks=False):
                            todo.append(de.path)
                        elif de.is_file(follow_symlinks=False):
                            total += de.stat(follow_symlinks=False).st_size
            elif os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
        except OSError:
            continue
    return total
