"""Text from a store or a record, made safe to print on a terminal.

Names, tags, step names and commands can come from a shared remote. Printed as they are, a
name holding ESC sequences could rewrite the screen, hide lines or retitle the terminal, so
every such string passes through ``printable`` on its way out: control characters become
visible escapes, everything else is left alone.
"""

from __future__ import annotations

import re

# C0 controls (tab excepted), DEL, C1 controls, and the bidi overrides that reorder text.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(text) -> str:
    """``text`` with control characters shown as ``\\xNN`` (None prints as an empty string)."""
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    return _CONTROL.sub(_escape, s)
