"""Request reading shared by the dialects: size limits, JSON, and 503s."""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from .._json import escapes_nul
from ..errors import BadPayload, PayloadTooLarge, StoreUnavailable

if TYPE_CHECKING:
    from ..extension import EventTrackState

__all__ = [
    "ExactBlueprint",
    "body_read",
    "parse_json",
    "read_body",
    "read_json",
    "request_notes",
    "unavailable_response",
]


class ExactBlueprint(Blueprint):
    """A dialect's blueprint: its paths match only as sent. werkzeug would answer
    ``/v4//events/custom`` with a redirect (308) to the path with one slash, where
    the vendors' paths are exact."""

    def add_url_rule(self, rule: str, *args: Any, **options: Any) -> None:
        options.setdefault("merge_slashes", False)
        super().add_url_rule(rule, *args, **options)


def read_body(state: EventTrackState) -> bytes:
    """The raw body, refused with 413 past ``EVENTTRACK_MAX_CONTENT_LENGTH``.

    A body without Content-Length (chunked) is read up to one byte past the
    limit, so an oversized one is a 413 too, never silently cut short. What was
    read is kept for :func:`body_read`: the stream cannot be read twice.
    """
    limit = int(state.config["EVENTTRACK_MAX_CONTENT_LENGTH"])
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"The body is {length} bytes; the limit is {limit}.")
    try:
        if length is not None:
            body = request_notes()["body"] = request.get_data(cache=True)
            return body
        stream = request.stream
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = stream.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except RequestEntityTooLarge:  # the host app's MAX_CONTENT_LENGTH: ours, for every dialect
        raise PayloadTooLarge(
            f"The body is over the app's MAX_CONTENT_LENGTH of {request.max_content_length} bytes."
        ) from None
    if size > limit:
        raise PayloadTooLarge(f"The body is over the limit of {limit} bytes.")
    body = request_notes()["body"] = b"".join(chunks)
    return body


def body_read() -> bytes | None:
    """The body :func:`read_body` returned for this request, or None if it was
    not read (or was over the limit).

    For the rejected log: ``request.get_data()`` finds a chunked body empty once
    ``read_body`` has consumed it, and would read one never read without a limit.
    """
    body: bytes | None = request_notes().get("body")
    return body


def request_notes() -> dict[str, Any]:
    """What this request learned on its way (its body, its tenant), for its
    rejected-log entry. Kept in the WSGI environ, which lives exactly as long as
    the request: ``flask.g`` lives as long as the app context, which a test or a
    CLI command may share across requests.
    """
    notes: dict[str, Any] = request.environ.setdefault("flask_eventtrack.notes", {})
    return notes


# A JSON escape of a UTF-16 surrogate, which only decodes to text when paired with its twin.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (NaN and Infinity are not allowed)")


def _finite_float(text: str) -> float:
    # float() turns a literal past the double range (1e400) into inf, which no
    # store keeps as JSON; ints stay exact (past 4300 digits json.loads refuses them).
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"{shown} is out of range for a JSON number (it overflows a double)")
    return value


# Built once: json.loads with arguments builds a new decoder on every call.
_decode = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite_float).decode


#: A body nested deeper than this is refused whole: far past any valid body, it
#: only keeps readers, redactors and encoders off the stack's limit. Shallower
#: junk is refused item by item, so the valid items of a batch are kept.
MAX_BODY_DEPTH = 256
#: How much deeper than ``EVENTTRACK_MAX_JSON_DEPTH`` (the limit on one value) a
#: body may nest when that setting is raised past :data:`MAX_BODY_DEPTH`: room for
#: each dialect's envelope, e.g. ``{"data": [{...}]}``.
ENVELOPE_DEPTH = 16
# Keeps only brackets, as parentheses, and double quotes.
_BRACKETS = bytes.maketrans(b"[]{}", b"()()")
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}"')


def _nested_deeper_than(body: bytes, document: Any, limit: int) -> bool:
    """Whether containers in ``body``, valid JSON already parsed into ``document``,
    nest more than ``limit`` levels deep.

    Works on the bytes with C-speed ``translate``/``replace``, so a large flat batch
    is not walked object by object (about 0.13 ms for 160 kB). With escapes removed,
    each quote opens or closes a string. When every string is bracket-free (``""``
    once the rest is deleted: each run of quotes pairs up) the brackets left are
    the structure, and each pass of removing ``()`` peels exactly one level. A
    string that holds a bracket leaves an odd run of quotes: then the parsed
    document is walked instead.
    """
    if b"\\" in body:  # an escaped backslash, then an escaped quote, is no delimiter
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = body.translate(_BRACKETS, _NOT_STRUCTURE)
    if shape.count(b'"') != 2 * shape.count(b'""'):
        return _walk_deeper_than(document, limit)
    shape = shape.translate(None, b'"')
    for _ in range(limit):
        if not shape:
            return False
        shape = shape.replace(b"()", b"")
    return bool(shape)


def _walk_deeper_than(document: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if type(value) is dict:
            children: Any = value.values()
        elif type(value) is list:
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(body: bytes, *, max_depth: int) -> Any:
    """Decode a JSON body, with a specific reason for each way it can be wrong.

    Besides malformed JSON this refuses what no store keeps faithfully: NUL
    characters, lone UTF-16 surrogates, NaN/Infinity and numbers that overflow
    a double (``1e400``). A body nested more than :data:`MAX_BODY_DEPTH` levels,
    or ``max_depth`` (the app's ``EVENTTRACK_MAX_JSON_DEPTH``) plus
    :data:`ENVELOPE_DEPTH` if that is more, is refused as a whole
    (``size_violation``), so that no reader, redactor or encoder after it meets a
    document deep enough to exhaust the stack.
    """
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise BadPayload(
            f"Content-Type must be application/json, not {request.content_type or 'missing'!r}.",
            reason="content_type",
        )
    if b"\x00" in body:
        raise BadPayload("The body contains a NUL character.", reason="schema_violation")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("The body is not UTF-8 encoded.", reason="invalid_json") from None
    if escapes_nul(text):
        raise BadPayload("The body contains a NUL character.", reason="schema_violation")
    try:
        document = _decode(text)
    except RecursionError:
        raise BadPayload("The JSON is nested too deeply.", reason="size_violation") from None
    except ValueError as exc:
        raise BadPayload(f"The body is not valid JSON: {exc}.", reason="invalid_json") from None
    limit = max(MAX_BODY_DEPTH, max_depth + ENVELOPE_DEPTH)
    # Each level takes two bytes: a shorter body cannot be too deep.
    if len(body) > 2 * limit and _nested_deeper_than(body, document, limit):
        raise BadPayload(
            f"The JSON is nested too deeply (more than {limit} levels).", reason="size_violation"
        )
    if _ESCAPED_SURROGATE.search(text):
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadPayload(
                "The body contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape).",
                reason="invalid_json",
            ) from None
    return document


def read_json(state: EventTrackState) -> Any:
    return parse_json(read_body(state), max_depth=state.config["EVENTTRACK_MAX_JSON_DEPTH"])


def unavailable_headers(error: StoreUnavailable) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)}


def unavailable_response(error: StoreUnavailable, body: Any) -> Response:
    response = Response(json.dumps(body), status=503, mimetype="application/json")
    response.headers.update(unavailable_headers(error))
    return response
