"""Synerise bodies -> canonical events: the request-independent half of the dialect.

Kept apart from the blueprint (``synerise.py``) so each module stays short;
nothing here touches the request or the response.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from marshmallow import Schema, ValidationError, fields

from ..errors import BadPayload
from ..events import Event, parse_time, utcnow
from ..extension import EventTrackState
from ..schemas.synerise import (
    ACTION_PATTERN,
    AI_EVENT_TYPES,
    DEDICATED,
    IDENTIFIERS,
    MAX_ACTION_LENGTH,
    PRODUCT_ENDPOINTS,
    RESERVED_PARAMS,
    build_schemas,
)
from ._redact import redacted

__all__ = ["Invalid", "SyneriseReader", "flatten", "load", "redacted_payload"]

SOURCE = "synerise"
_CLICK_TYPES = frozenset({"recommendation.click", "item.search.click"})
_ID_KEYS = frozenset(IDENTIFIERS)
#: Keys whose values are hashed in the rejected log, at any depth.
_REDACT_KEYS = _ID_KEYS | {"client", "clientUUID"}
_V4_FIELDS = frozenset({"client", "label", "params", "time", "eventSalt", "action"})
# How redact treats a value: reached from the body through arrays only (a scalar
# is hashed, an object's keys decide for its values), plain, or under an
# identifier key (every scalar and every key but the identifier names hashed).
_TOP, _PLAIN, _SECRET = 0, 1, 2
_JSON_TYPES = {dict: "object", list: "array", bool: "boolean", int: "number", float: "number"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _unknown_client_keys(count: int) -> str:
    fields = "field" if count == 1 else "fields"
    return f"{count} unknown {fields}; the identifiers are {', '.join(IDENTIFIERS)}."


def _named(value: Any) -> str:
    """``value`` for an error message: a string (shortened) as its repr, anything
    else only by its JSON type (it may be an object holding raw identifiers)."""
    if isinstance(value, str):
        return repr(value[:100])
    return "null" if value is None else f"a JSON {_JSON_TYPES.get(type(value), 'value')}"


class Invalid(Exception):
    """One item is not valid; ``errors`` are ``{"field", "message"}`` dicts."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def flatten(messages: Any, path: str = "") -> list[dict[str, Any]]:
    """marshmallow's nested messages as a flat list of ``{"field", "message"}``.

    An unknown key under ``client`` is not named: the key itself may be an
    identifier (``{"jan@example.com": ...}``), and messages reach the rejected log.
    """
    if isinstance(messages, dict):
        out: list[dict[str, Any]] = []
        if path == "client":
            unknown = [key for key in messages if key != "_schema" and key not in _ID_KEYS]
            if unknown:
                messages = {k: v for k, v in messages.items() if k not in unknown}
                out.append({"field": "client", "message": _unknown_client_keys(len(unknown))})
        for key, value in messages.items():
            if key == "_schema":
                out.extend(flatten(value, path))
            elif isinstance(key, int):
                out.extend(flatten(value, f"{path}[{key}]"))
            else:
                out.extend(flatten(value, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(messages, list):
        return [e for m in messages for e in flatten(m, path)]
    return [{"field": path or None, "message": str(messages)}]


def load(schema: Schema, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise Invalid([{"field": None, "message": "Each event must be a JSON object."}])
    try:
        data: dict[str, Any] = schema.load(item)
    except ValidationError as exc:
        raise Invalid(flatten(exc.messages)) from None
    return data


def _action_conflict(endpoint: str, sent: str | None) -> list[dict[str, Any]]:
    """The problem of an ``action`` that is not the dedicated endpoint's own, if any."""
    action = DEDICATED.get(endpoint)
    if action is None or sent in (None, action):
        return []
    return [{"field": "action", "message": f"{endpoint!r} events are {action!r}; remove 'action'."}]


class SyneriseReader:
    """Turns validated bodies into canonical events, per app settings."""

    def __init__(self, state: EventTrackState) -> None:
        cfg = state.config
        self.user_key: Callable[[str], str] = state.pipeline.user_key
        self.hashing = state.pipeline.hash_user is not None
        self.max_events = int(cfg["EVENTTRACK_MAX_EVENTS_PER_REQUEST"])
        self.max_length = int(cfg["EVENTTRACK_MAX_STRING_LENGTH"])
        self.max_depth = int(cfg["EVENTTRACK_MAX_JSON_DEPTH"])
        self.schemas = build_schemas(self.max_length, self.max_depth)
        # The schema's own fields for the rarer identifiers (exact by construction).
        client_schema = cast(fields.Nested, self.schemas.custom.fields["client"]).schema
        self._client_fields: dict[str, fields.Field[Any]] = client_schema.fields

    # -- /v4/events ----------------------------------------------------------
    def v4_event(self, tenant: str, item: Any, endpoint: str, *, in_batch: bool = False) -> Event:
        """One event of ``endpoint`` (``custom`` or a dedicated endpoint name).

        :raises Invalid: naming every problem of the item.
        """
        if endpoint != "custom" and not in_batch and type(item) is dict and "action" in item:
            # A dedicated endpoint does not use ``action`` (seed 002): neither checked nor kept.
            item = {k: v for k, v in item.items() if k != "action"}
        data = self.fast_v4(item, endpoint)
        if data is None:
            schema = self.schemas.custom if endpoint == "custom" else self.schemas.for_endpoint(endpoint)
            try:
                data = load(schema, item)
            except Invalid as exc:  # named with the item's other problems, not after them
                sent = item.get("action") if type(item) is dict else None
                exc.errors.extend(_action_conflict(endpoint, sent if isinstance(sent, str) else None))
                raise
        if endpoint == "custom":
            action = data["action"]
        else:
            action = DEDICATED[endpoint]
            conflict = _action_conflict(endpoint, data.get("action"))  # only a batch item keeps its action
            if conflict:
                raise Invalid(conflict)
        event = self._profile_event(tenant, action, data["client"], dict(data["params"]))
        if endpoint in PRODUCT_ENDPOINTS:
            event.item_type, event.item_id = "product", str(data["params"]["sku"])
        if "time" in data:
            event.occurred_at, event.original_time = data["time"], item["time"]
        if "eventSalt" in data:
            event.dedup_key = self.salt_key(event, data.get("time") or utcnow(), data["eventSalt"])
            event.replace = True
        return event

    def fast_v4(self, item: Any, endpoint: str) -> dict[str, Any] | None:
        """What the endpoint's schema would load from ``item``, without marshmallow;
        None when the item is not valid (the schema then runs, for the messages).

        Accepts exactly what the schema accepts (``tests/test_synerise_fast.py``
        checks both agree); the schema stays the source of truth. As there, an
        optional field sent as null counts as absent.
        """
        if type(item) is not dict or not _V4_FIELDS.issuperset(item):
            return None
        max_length = self.max_length
        label = item.get("label")
        if type(label) is not str or not 0 < len(label) <= max_length:
            return None
        client = self._fast_client(item.get("client"))
        if client is None:
            return None
        data: dict[str, Any] = {"client": client, "label": label}
        action = item.get("action")
        if endpoint == "custom":
            if type(action) is not str or len(action) > MAX_ACTION_LENGTH or not ACTION_PATTERN.match(action):
                return None
            data["action"] = action
        elif action is not None:
            if type(action) is not str:
                return None
            data["action"] = action
        params = item.get("params")
        if params is None:
            params = {}
        elif type(params) is not dict or not RESERVED_PARAMS.isdisjoint(params):
            return None
        elif not _free_form_ok(params, max_length, self.max_depth):
            return None
        if endpoint in PRODUCT_ENDPOINTS:
            sku = params.get("sku")
            if not (type(sku) is int or (type(sku) is str and sku)) or len(str(sku)) > max_length:
                return None
        data["params"] = dict(params)
        raw_time = item.get("time")
        if raw_time is not None:
            if type(raw_time) is not str or len(raw_time) > 64:
                return None
            try:
                data["time"] = parse_time(raw_time)
            except (ValueError, OverflowError):
                return None
        salt = item.get("eventSalt")
        if salt is not None:
            if type(salt) is not str or not 0 < len(salt) <= max_length:
                return None
            data["eventSalt"] = salt
        return data

    def _fast_client(self, client: Any) -> dict[str, Any] | None:
        """``client`` as ``ClientSchema`` loads it (a null identifier is absent), or None."""
        if type(client) is not dict:
            return None
        max_length = self.max_length
        out: dict[str, Any] = {}
        for kind, value in client.items():
            if value is None and kind in _ID_KEYS:
                continue
            if kind == "id" or kind == "customId":
                if kind == "id" and type(value) is int:
                    value = str(value)
                elif type(value) is not str:
                    return None
                if not 0 < len(value) <= max_length:
                    return None
            elif kind in _ID_KEYS:  # uuid, email: the schema's own field
                try:
                    value = self._client_fields[kind].deserialize(value)
                except ValidationError:
                    return None
            else:
                return None
            out[kind] = value
        return out or None

    def v4_batch(self, tenant: str, document: Any) -> list[Event]:
        """Every event of a ``/v4/events/batch`` array, or :class:`Invalid` naming each bad index."""
        errors: list[dict[str, Any]] = []
        items = self._batch_items(document, "The body must be a JSON array of events.", None, errors)
        events: list[Event] = []
        for index, item in enumerate(items):
            kind = item.get("type") if isinstance(item, dict) else None
            if not isinstance(kind, str) or (kind != "custom" and kind not in DEDICATED):
                if not isinstance(item, dict):
                    errors.append(
                        {"index": index, "field": None, "message": "Each event must be a JSON object."}
                    )
                else:
                    message = (
                        f"Must be 'custom' or a dedicated endpoint ({', '.join(DEDICATED)}),"
                        f" not {_named(kind)}."
                    )
                    errors.append({"index": index, "field": "type", "message": message})
                continue
            try:
                item = {k: v for k, v in item.items() if k != "type"}
                events.append(self.v4_event(tenant, item, kind, in_batch=True))
            except Invalid as exc:
                errors.extend({"index": index, **e} for e in exc.errors)
        if errors:
            raise Invalid(errors)
        return events

    def transaction(self, tenant: str, document: Any) -> list[Event]:
        """One ``transaction.charge`` and one ``product.buy`` per product line."""
        products = document.get("products") if type(document) is dict else None
        if type(products) is list and len(products) > self.max_events:
            raise BadPayload(
                f"{len(products)} product lines in one transaction; the limit is {self.max_events}.",
                reason="size_violation",
            )
        data = load(self.schemas.transaction, document)
        when, raw_time = data.get("recordedAt"), document.get("recordedAt")
        order_id = data["orderId"]
        charge_props = {"orderId": order_id, "productCount": len(data["products"])}
        for name in ("value", "revenue", "discountAmount", "paymentInfo", "source", "metadata"):
            if name in data:
                charge_props[name] = data[name]
        events = [self._profile_event(tenant, "transaction.charge", data["client"], charge_props)]
        for line in data["products"]:
            buy = self._profile_event(tenant, "product.buy", data["client"], {**line, "orderId": order_id})
            buy.item_type, buy.item_id = "product", line["sku"]
            events.append(buy)
        for event in events:
            if when is not None:
                event.occurred_at, event.original_time = when, raw_time
        return events

    def _profile_event(
        self, tenant: str, action: str, client: dict[str, Any], props: dict[str, Any]
    ) -> Event:
        # The first identifier present (IDENTIFIERS order) is the user; the
        # others are kept only as keyed hashes, never raw.
        present = [k for k in IDENTIFIERS if client.get(k) is not None]
        kind = present[0]
        others = {k: self.user_key(str(client[k])) for k in present[1:]}
        if others:
            props["identifiers"] = others
        return Event(
            tenant=tenant, source=SOURCE, type=action, user=str(client[kind]), user_kind=kind, props=props
        )

    def salt_key(self, event: Event, when: datetime, salt: str) -> str:
        """``eventSalt`` identity: action, identifier kind, *hashed* user, time (ms), salt,
        hashed again as a whole so no raw id or salt reaches the store."""
        user = self.user_key(event.user or "")
        # Exact integer milliseconds: int(when.timestamp() * 1000) rounds some distinct
        # milliseconds to one number (float), merging two events into one.
        ms = (when - _EPOCH) // timedelta(milliseconds=1)
        identity = json.dumps([event.type, event.user_kind, user, ms, salt], ensure_ascii=False)
        return "salt:" + hashlib.sha256(identity.encode()).hexdigest()

    # -- /events/v1 ------------------------------------------------------------
    def ai_event(self, tenant: str, event_type: str, item: Any) -> Event:
        data = load(self.schemas.ai_event, item)
        props: dict[str, Any] = {"correlationId": data["correlationId"], "items": data["items"]}
        if "campaignId" in data:
            props["campaignId"] = data["campaignId"]
        event = Event(
            tenant=tenant,
            source=SOURCE,
            type=event_type,
            user=data["clientUUID"],
            user_kind="uuid",
            props=props,
            keep_future=True,
        )
        if event_type in _CLICK_TYPES and len(data["items"]) == 1:
            event.item_type, event.item_id = "item", data["items"][0]
        if "eventTimestamp" in data:
            event.occurred_at, event.original_time = data["eventTimestamp"], str(item["eventTimestamp"])
        return event

    def ai_batch(self, tenant: str, document: Any) -> tuple[str, list[Event]]:
        if not isinstance(document, dict):
            raise Invalid(
                [{"field": None, "message": 'The body must be {"eventType": ..., "items": [...]}.'}]
            )
        event_type = document.get("eventType")
        errors: list[dict[str, Any]] = []
        if event_type not in AI_EVENT_TYPES:
            message = f"'eventType' must be one of {', '.join(AI_EVENT_TYPES)}, not {_named(event_type)}."
            errors.append({"field": "eventType", "message": message})
        unknown = sorted(set(document) - {"eventType", "items"})
        errors.extend({"field": name, "message": "Unknown field."} for name in unknown)
        items = self._batch_items(
            document.get("items"), "'items' must be a JSON array of events.", "items", errors
        )
        events: list[Event] = []
        for index, item in enumerate(items):
            try:
                events.append(self.ai_event(tenant, str(event_type), item))
            except Invalid as exc:
                errors.extend({"index": index, **e} for e in exc.errors)
        if errors:
            raise Invalid(errors)
        return str(event_type), events

    def _batch_items(
        self, items: Any, message: str, field: str | None, errors: list[dict[str, Any]]
    ) -> list[Any]:
        """``items`` when it is a non-empty array; otherwise the problem joins
        ``errors`` (the caller raises once, naming every problem) and no items."""
        if not isinstance(items, list):
            errors.append({"field": field, "message": message})
            return []
        if not items:
            errors.append({"field": field, "message": "A batch needs at least one event."})
            return []
        if len(items) > self.max_events:
            raise BadPayload(
                f"{len(items)} events in one batch; the limit is {self.max_events}.", reason="size_violation"
            )
        return items

    # -- the rejected log ------------------------------------------------------
    def redact(self, document: Any) -> Any:
        """``document`` with every scalar under ``client``, ``clientUUID`` or an
        identifier key replaced by its keyed hash, whatever the containers around
        it (a refused body has no trusted shape). A scalar no key names (the body
        itself, an item of a batch) could be an identifier too: hashed as well, and
        so are the keys of an object under those keys (``{"client": {"jan@...": 1}}``).
        """

        def child(mode: int, key: Any) -> tuple[int, Any]:
            if mode == _SECRET:
                return _SECRET, key if key in _REDACT_KEYS else self._hashed(key)
            return _SECRET if key in _REDACT_KEYS else _PLAIN, key

        return redacted(
            document, _TOP, child=child, leaf=lambda mode, v: v if mode == _PLAIN else self._hashed(v)
        )

    def _hashed(self, value: Any) -> Any:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return "hashed:" + self.user_key(str(value))
        return value


def _free_form_ok(params: dict[str, Any], max_length: int, max_depth: int) -> bool:
    """Whether ``check_value`` (``schemas.core``) passes ``params``:
    strings and keys within ``max_length`` and without NUL, containers nested
    less than ``max_depth`` deep, finite floats, JSON values only."""
    stack: list[tuple[Any, int]] = [(params, 0)]
    while stack:
        container, depth = stack.pop()
        if depth >= max_depth:
            return False
        if type(container) is dict:
            for key in container:
                if type(key) is not str or len(key) > max_length or "\x00" in key:
                    return False
            values = container.values()
        else:
            values = container
        for value in values:
            kind = type(value)
            if kind is str:
                if len(value) > max_length or "\x00" in value:
                    return False
            elif kind is dict or kind is list:
                stack.append((value, depth + 1))
            elif kind is float:
                if not math.isfinite(value):
                    return False
            elif not (kind is int or kind is bool or value is None):
                return False
    return True


def redacted_payload(reader: SyneriseReader, raw: bytes) -> str | None:
    """The refused body for the rejected log, identifiers hashed. A body that is not
    JSON cannot be redacted, so it is kept only when the app stores raw ids anyway."""
    try:
        document = json.loads(raw)
    except ValueError:
        return None if reader.hashing else raw.decode("utf-8", "replace")
    except RecursionError:
        return None
    try:
        return json.dumps(reader.redact(document), ensure_ascii=False, default=str)
    except RecursionError:  # redact bounds the depth; a guard all the same: never a 500 here
        return None
