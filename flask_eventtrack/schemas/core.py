"""Fields and schemas shared by every dialect."""

from __future__ import annotations

import math
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from .._json import dumps, escapes_nul
from ..stores import unstorable

__all__ = ["EmitSchema", "ScalarOrString", "check_value"]


class ScalarOrString(fields.Field[str]):
    """An id that clients send as a string or a number; kept as a string.

    Booleans and floats with a fraction are refused: ``True`` is not an id.
    """

    default_error_messages = {"invalid": "Must be a string or an integer."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.make_error("invalid")
        return str(value)


def check_value(value: Any, *, max_length: int, max_depth: int, path: str, named_levels: int = 1) -> None:
    """Refuse strings over ``max_length``, NUL characters, NaN and infinities (which
    Python's json accepts and JSON does not), and nesting over ``max_depth``.

    Walks containers iteratively, so a hostile depth cannot exhaust the stack.

    :raises ValidationError: naming the offending path. Keys of the first
        ``named_levels`` levels are parameter names; deeper keys are data (an
        e-mail may be a key) and the message shows them as ``*``, since it
        goes to the rejected log, where raw ids must never be written.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if len(item) > max_length:
                raise ValidationError(f"{where}: longer than {max_length} characters.")
            if "\x00" in item:
                raise ValidationError(f"{where}: contains a NUL character.")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValidationError(f"{where}: NaN and Infinity are not numbers in JSON.")
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                raise ValidationError(f"{where}: nested deeper than {max_depth} levels.")
            if isinstance(item, dict):
                for key, child in item.items():
                    if len(key) > max_length or "\x00" in key:
                        raise ValidationError(f"{where}: a key is too long or has a NUL character.")
                    stack.append((child, f"{where}.{key if depth < named_levels else '*'}", depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))


def storable_json(value: Any) -> None:
    """Refuse what no store keeps as given: NaN, Infinity, values JSON has no
    form of (``Decimal``, ``datetime``), NUL characters and unpaired surrogates."""
    try:
        text = dumps(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValidationError(f"Must hold JSON values only: {exc}.") from None
    if escapes_nul(text) or unstorable(text):
        raise ValidationError("Must not contain a NUL character or an unpaired surrogate.")


class EmitSchema(Schema):
    """Events emitted from Python by the host app (``EventTrack.emit``)."""

    type = fields.String(required=True, validate=validate.Length(min=1, max=200))
    user = fields.String(allow_none=True)
    user_kind = fields.String(allow_none=True)
    tenant = fields.String(required=True, validate=validate.Length(min=1, max=200))
    source = fields.String(required=True, validate=validate.Length(min=1, max=50))
    item_type = ScalarOrString(allow_none=True)
    item_id = ScalarOrString(allow_none=True)
    occurred_at = fields.AwareDateTime(allow_none=True, format="iso")
    props = fields.Dict(keys=fields.String(), validate=storable_json)
    dedup_key = fields.String(allow_none=True)
