"""Compact JSON text, as the stores keep ``props`` and payloads.

``json.JSONEncoder.encode`` builds a new C encoder on every call, which is half
the cost of encoding a small ``props`` object; here it is built once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from json import JSONEncoder
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

__all__ = ["ascii_dumps", "dumps", "escapes_nul"]


def _compact_encoder(ensure_ascii: bool) -> Callable[[Any], str]:
    reference = JSONEncoder(ensure_ascii=ensure_ascii, separators=(",", ":"), allow_nan=False)
    if c_make_encoder is None:  # a Python built without the _json accelerator
        return reference.encode
    encode_string = encode_basestring_ascii if ensure_ascii else encode_basestring
    # No circular-reference markers: what is encoded comes from parsed JSON, so
    # it cannot hold a cycle (one put there by a host hook is a RecursionError).
    # allow_nan=False: NaN and Infinity are not JSON (a ValueError, as from json.dumps).
    encoder = c_make_encoder(None, reference.default, encode_string, None, ":", ",", False, False, False)

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


#: ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``
dumps = _compact_encoder(ensure_ascii=False)
#: the same with non-ASCII characters escaped
ascii_dumps = _compact_encoder(ensure_ascii=True)


# A JSON escape of NUL: an odd number of backslashes before u0000.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def escapes_nul(text: str) -> bool:
    """Whether JSON ``text`` holds a NUL character, which the encoders write as
    ``\\u0000`` (and PostgreSQL's ``jsonb`` refuses)."""
    return "\\u0000" in text and _ESCAPED_NUL.search(text) is not None
