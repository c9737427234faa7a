"""Cortex Behavioral API: ``POST <prefix>`` with ``{"data": [event, ...]}``.

The vendor always answers 200 to what a client sent: a malformed body, a bad
item or a bad signature is still a 200, and what was wrong goes to the rejected
log (``flask eventtrack export --rejected``). The answer never says whether the
signature held, as the vendor validates signatures "during processing". Items
are independent: valid items of a batch are stored even when others are not.
A body over the byte limit (ours or the host app's ``MAX_CONTENT_LENGTH``) is
refused whole, logged and answered 200 too. The one answer that is not 200
(besides 405 for another method) is 503 with ``Retry-After``: the store could
not commit, retry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, request
from marshmallow import Schema, ValidationError

from ..config import MOST
from ..errors import BadPayload, ConfigurationError, PayloadTooLarge, StoreUnavailable
from ..events import Event, Rejection
from ..extension import EventTrackState
from ..schemas.cortex import MAX_KEY_LENGTH, MAX_TIMESTAMP, make_cortex_event_schema
from ..signing import SIGNATURE_HEADER, SignatureFailure, key_list, verify_body
from ._http import ExactBlueprint, parse_json, read_body, unavailable_response
from ._methods import answer_wrong_methods
from ._redact import redacted

NAME = "cortex"
#: This dialect's settings and their defaults (merged into the app config by ``init_app``).
CONFIG: dict[str, Any] = {
    "EVENTTRACK_CORTEX_URL_PREFIX": "/cortex",
    "EVENTTRACK_CORTEX_TENANT": "default",
    "EVENTTRACK_CORTEX_ID_FIELD": "user_id",
    "EVENTTRACK_CORTEX_SIGNATURE": "off",
    "EVENTTRACK_CORTEX_SIGNING_KEYS": [],
    "EVENTTRACK_CORTEX_SIGNATURE_MAX_AGE": None,
}
#: Numeric settings -> (type, least, most), checked by ``init_app``.
NUMBERS = {"EVENTTRACK_CORTEX_SIGNATURE_MAX_AGE": (int, 1, MOST)}
_OK_BODY = json.dumps({"status": "received"})
_SCALARS = (str, int, float, bool)
#: Containers nested deeper than this in a rejected payload are replaced by a marker.


class CortexReader:
    """Turns one request body into events and rejections, per app settings."""

    def __init__(self, state: EventTrackState) -> None:
        cfg = state.config
        self.tenant = str(cfg["EVENTTRACK_CORTEX_TENANT"])
        self.id_field = str(cfg["EVENTTRACK_CORTEX_ID_FIELD"])
        self.max_length = int(cfg["EVENTTRACK_MAX_STRING_LENGTH"])
        self.max_events = int(cfg["EVENTTRACK_MAX_EVENTS_PER_REQUEST"])
        self.max_depth = int(cfg["EVENTTRACK_MAX_JSON_DEPTH"])
        mode = str(cfg["EVENTTRACK_CORTEX_SIGNATURE"]).lower()
        if mode not in {"off", "required"}:
            raise ConfigurationError(
                f"EVENTTRACK_CORTEX_SIGNATURE must be 'off' or 'required', not {mode!r}."
            )
        self.signature_required = mode == "required"
        self.keys = key_list(cfg["EVENTTRACK_CORTEX_SIGNING_KEYS"], "EVENTTRACK_CORTEX_SIGNING_KEYS")
        if self.signature_required and not self.keys:
            raise ConfigurationError(
                "EVENTTRACK_CORTEX_SIGNATURE is 'required' but EVENTTRACK_CORTEX_SIGNING_KEYS is empty."
            )
        max_age = cfg["EVENTTRACK_CORTEX_SIGNATURE_MAX_AGE"]
        self.max_age = int(max_age) if max_age else None
        self.clock_skew = int(cfg["EVENTTRACK_CLOCK_SKEW"])
        self.schema: Schema = make_cortex_event_schema(self.id_field, self.max_length)()
        #: keys that are not custom parameters
        self.reserved = frozenset({self.id_field, "type", "timestamp", "item_id"})
        self.times: dict[int, tuple[datetime, str]] = {}
        self.hash_user = state.pipeline.hash_user

    def rejection(self, reason: str, message: str, payload: Any, type: str | None = None) -> Rejection:
        """A rejected-log entry; object ids in the payload are replaced by their keyed hash."""
        if payload is not None:
            payload = json.dumps(self.redact(payload), ensure_ascii=False, default=str)
        return Rejection(reason, message, NAME, tenant=self.tenant, type=type, payload=payload)

    def unparsed_rejection(self, reason: str, message: str, body: bytes) -> Rejection:
        """A body that is not JSON: kept only when user ids are not hashed, since
        ids in it cannot be found and hashed."""
        payload = None if self.hash_user else body.decode("utf-8", "replace")
        rejection = self.rejection(reason, message, None)
        rejection.payload = payload
        return rejection

    def redact(self, value: Any) -> Any:
        """``value`` with every ``<id field>`` value hashed, wherever it is nested.

        The value of an id field is replaced whatever its type: a scalar by
        ``hash:<keyed hash>``, a container by a copy with every scalar and every
        key in it hashed (a refused body has no trusted shape).
        """
        hash_user = self.hash_user
        if hash_user is None:
            return value
        id_field = self.id_field

        def hashed(item: Any) -> Any:
            return f"hash:{hash_user(str(item))}" if isinstance(item, (str, int, float)) else item

        def child(secret: bool, key: Any) -> tuple[bool, Any]:
            return secret or key == id_field, hashed(key) if secret else key

        return redacted(value, False, child=child, leaf=lambda secret, item: hashed(item) if secret else item)

    def read(self, body: bytes, signature: str | None) -> tuple[list[Event], list[Rejection]]:
        try:
            document = parse_json(body, max_depth=self.max_depth)
        except BadPayload as exc:
            return [], [self.unparsed_rejection(exc.reason, exc.description or "bad body", body)]
        if self.signature_required:
            try:
                verify_body(body, signature, self.keys, self.max_age, self.clock_skew)
            except SignatureFailure as exc:
                return [], [self.rejection("signature_failure", str(exc), document)]
        if not isinstance(document, dict) or not isinstance(document.get("data"), list):
            message = 'The body must be an object {"data": [event, ...]}.'
            return [], [self.rejection("schema_violation", message, document)]
        items = document["data"]
        if len(items) > self.max_events:
            message = f"{len(items)} events in one request; the limit is {self.max_events}."
            return [], [self.rejection("size_violation", message, document)]
        events: list[Event] = []
        rejections: list[Rejection] = []
        for index, item in enumerate(items):
            event = self.fast_event(item)
            if event is None:
                try:
                    event = self.slow_event(item)
                except ValidationError as exc:
                    message = f"data[{index}]: {json.dumps(exc.messages, sort_keys=True)}"
                    kind = item.get("type") if isinstance(item, dict) else None
                    rejections.append(
                        self.rejection(
                            "schema_violation", message, item, kind if isinstance(kind, str) else None
                        )
                    )
                    continue
            events.append(event)
        return events, rejections

    def fast_event(self, item: Any) -> Event | None:
        """The common case without marshmallow; None sends the item to :meth:`slow_event`.

        Accepts exactly what the schema accepts (``tests/test_cortex.py`` checks both agree).
        """
        if type(item) is not dict:
            return None
        max_length = self.max_length
        object_id = item.get(self.id_field)
        kind = item.get("type")
        if type(object_id) is not str or type(kind) is not str:
            return None
        if not (0 < len(object_id) <= max_length and 0 < len(kind) <= max_length):
            return None
        # null counts as absent (clients serialise an unset optional field as null).
        timestamp = item.get("timestamp")
        if timestamp is not None and (type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP):
            return None
        item_id = item.get("item_id")
        if item_id is not None and (
            type(item_id) not in (str, int) or not 0 < len(str(item_id)) <= max_length
        ):
            return None
        props = {}
        reserved = self.reserved
        for key, value in item.items():
            if key in reserved:
                continue
            if len(key) > MAX_KEY_LENGTH:
                return None
            if type(value) is str:
                if len(value) > max_length:
                    return None
            elif value is not None and type(value) not in _SCALARS:
                return None
            props[key] = value
        return self.build(object_id, kind, timestamp, None if item_id is None else str(item_id), props)

    def slow_event(self, item: Any) -> Event:
        """Validate with marshmallow: slower, but with messages for every field."""
        if not isinstance(item, dict):
            raise ValidationError({"_schema": ["Each event must be a JSON object."]})
        data = self.schema.load(item)
        object_id = str(data.pop(self.id_field))
        kind = data.pop("type")
        timestamp = data.pop("timestamp", None)
        item_id = data.pop("item_id", None)
        return self.build(object_id, kind, timestamp, item_id, data)

    def build(
        self, object_id: str, kind: str, timestamp: int | None, item_id: str | None, props: dict[str, Any]
    ) -> Event:
        occurred_at = original_time = None
        if timestamp is not None:
            occurred_at, original_time = self.times.get(timestamp) or self._times(timestamp)
        if self.id_field == "item_id":
            user, user_kind, item_id = None, None, object_id
        else:
            user, user_kind = object_id, self.id_field
        return Event(
            tenant=self.tenant, source=NAME, type=kind, user=user, user_kind=user_kind, item_id=item_id,
            occurred_at=occurred_at, original_time=original_time, props=props,
        )  # fmt: skip

    def _times(self, timestamp: int) -> tuple[datetime, str]:
        """``occurred_at`` and ``original_time`` of ``timestamp``, kept: the events of a
        batch mostly share a few seconds."""
        if len(self.times) >= 4096:
            self.times.clear()
        times = self.times[timestamp] = (datetime.fromtimestamp(timestamp, UTC), str(timestamp))
        return times


def create_blueprint(state: EventTrackState) -> Blueprint:
    reader = CortexReader(state)
    pipeline = state.pipeline
    bp = ExactBlueprint("eventtrack_cortex", __name__)

    def track() -> Response:
        signature = request.headers.get(SIGNATURE_HEADER)
        events, rejections = reader.read(read_body(state), signature)
        pipeline.submit(events, rejections)
        return Response(_OK_BODY, status=200, mimetype="application/json")

    # Both "<prefix>" and "<prefix>/" answer (werkzeug's strict_slashes=False
    # would turn a GET on one of them into a 404 instead of a 405).
    bp.add_url_rule("/", view_func=track, methods=["POST"])
    if state.config["EVENTTRACK_CORTEX_URL_PREFIX"]:
        bp.add_url_rule("", endpoint="track_no_slash", view_func=track, methods=["POST"])

    # Ours, and the host app's MAX_CONTENT_LENGTH (read_body raises it as ours).
    @bp.errorhandler(PayloadTooLarge)
    def too_large(error: PayloadTooLarge) -> Response:
        # The vendor always answers 200 to what the client sent (spec): an oversized
        # body is refused as a whole and logged, like a malformed one. A 413 would
        # make a retrying client send the same batch for ever.
        message = error.description or "body too large"
        try:
            pipeline.submit([], [reader.rejection("size_violation", message, None)])
        except StoreUnavailable as exc:
            return unavailable(exc)
        return Response(_OK_BODY, status=200, mimetype="application/json")

    @bp.errorhandler(StoreUnavailable)
    def unavailable(error: StoreUnavailable) -> Response:
        current_app.logger.warning("cortex: %s", error.description)
        return unavailable_response(error, {"status": "unavailable", "message": error.description})

    answer_wrong_methods(bp, _method_not_allowed)
    return bp


def _method_not_allowed(message: str) -> Response:
    body = json.dumps({"status": "rejected", "message": message})
    return Response(body, status=405, mimetype="application/json")
