"""Client text made safe to print on an operator's terminal."""

from __future__ import annotations

import re

__all__ = ["printable"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1) escaped as ``repr`` does: event
    names and ids are client text, and an ESC sequence or a newline printed raw would
    run in the operator's terminal or forge a row of a table."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
