"""Request reading shared by the dialects: size limits, JSON, and 503s."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from flask import Response, request

from ..errors import BadPayload, PayloadTooLarge, StoreUnavailable

if TYPE_CHECKING:
    from ..extension import EventTrackState

__all__ = ["parse_json", "read_body", "read_json", "unavailable_response"]


def read_body(state: EventTrackState) -> bytes:
    """The raw body, refused with 413 past ``EVENTTRACK_MAX_CONTENT_LENGTH``.

    A body without Content-Length (chunked) is read up to one byte past the
    limit, so an oversized one is a 413 too, never silently cut short.
    """
    limit = int(state.config["EVENTTRACK_MAX_CONTENT_LENGTH"])
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"The body is {length} bytes; the limit is {limit}.")
    if length is not None:
        return request.get_data(cache=True)
    stream = request.stream
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise PayloadTooLarge(f"The body is over the limit of {limit} bytes.")
    return b"".join(chunks)


# A JSON escape of NUL (an odd number of backslashes before u0000), and of a
# UTF-16 surrogate, which only decodes to text when paired with its twin.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (NaN and Infinity are not allowed)")


def parse_json(body: bytes) -> Any:
    """Decode a JSON body, with a specific reason for each way it can be wrong.

    Besides malformed JSON this refuses what no store keeps faithfully: NUL
    characters, lone UTF-16 surrogates, and NaN/Infinity.
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
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise BadPayload("The body contains a NUL character.", reason="schema_violation")
    try:
        document = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise BadPayload("The JSON is nested too deeply.", reason="size_violation") from None
    except ValueError as exc:
        raise BadPayload(f"The body is not valid JSON: {exc}.", reason="invalid_json") from None
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
    return parse_json(read_body(state))


def unavailable_headers(error: StoreUnavailable) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)}


def unavailable_response(error: StoreUnavailable, body: Any) -> Response:
    response = Response(json.dumps(body), status=503, mimetype="application/json")
    response.headers.update(unavailable_headers(error))
    return response
