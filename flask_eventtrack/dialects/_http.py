"""Request reading shared by the dialects: size limits, JSON, and 503s."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import BadPayload, PayloadTooLarge, StoreUnavailable

if TYPE_CHECKING:
    from ..extension import EventTrackState

__all__ = ["parse_json", "read_body", "read_json", "unavailable_response"]


def read_body(state: EventTrackState) -> bytes:
    """The raw body, refused with 413 past ``EVENTTRACK_MAX_CONTENT_LENGTH``."""
    limit = int(state.config["EVENTTRACK_MAX_CONTENT_LENGTH"])
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The body is {request.content_length} bytes; the limit is {limit}.")
    request.max_content_length = limit
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"The body is over the limit of {limit} bytes.") from None


def parse_json(body: bytes) -> Any:
    """Decode a JSON body, with a specific reason for each way it can be wrong."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise BadPayload(
            f"Content-Type must be application/json, not {request.content_type or 'missing'!r}.",
            reason="content_type",
        )
    if b"\x00" in body or b"\\u0000" in body:
        raise BadPayload("The body contains a NUL character.", reason="schema_violation")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("The body is not UTF-8 encoded.", reason="invalid_json") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise BadPayload("The JSON is nested too deeply.", reason="size_violation") from None
    except ValueError as exc:
        raise BadPayload(f"The body is not valid JSON: {exc}.", reason="invalid_json") from None


def read_json(state: EventTrackState) -> Any:
    return parse_json(read_body(state))


def unavailable_headers(error: StoreUnavailable) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)}


def unavailable_response(error: StoreUnavailable, body: Any) -> Response:
    response = Response(json.dumps(body), status=503, mimetype="application/json")
    response.headers.update(unavailable_headers(error))
    return response
