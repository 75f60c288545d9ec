"""Text that users and servers control, made safe for the operator's terminal.

Fleet keys, cluster names, server error messages, reasons and journal details reach Rich,
which reads ``[...]`` as markup (``[/x]`` raises instead of printing the error it carries), and
the terminal, which acts on escape sequences (clear the screen, rewrite the title, hide text,
move the cursor over an earlier line). Everything such goes through ``safe`` (for Rich) or
``plain`` (for a plain write): control characters are shown as ``\\xNN`` — nothing is acted
upon, and what the file or the server really said stays readable.
"""
from __future__ import annotations

import re

from rich.markup import escape

# C0 and C1 controls but newline and tab (our own messages use them), DEL, and the Unicode
# bidirectional overrides that make a line read differently from what it holds.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def plain(value: object) -> str:
    """``str(value)`` with every control character shown as an escape, never sent as such."""
    return _CONTROL.sub(_visible, str(value))


def safe(value: object) -> str:
    """``plain(value)`` with Rich markup escaped: prints as written, whatever brackets it holds."""
    return escape(plain(value))
