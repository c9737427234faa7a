"""Synerise events: ``/v4/events/...``, ``/v4/transactions`` and the AI events ``/events/v1/...``.

Unlike Cortex, this vendor answers what it thinks of a request: 202 when the
events were committed, 400 naming every problem (by index in a batch), 401 for
credentials, 404 for an unknown event type, 413, and 503 with ``Retry-After``.
A batch is all or nothing, so a client that retries a refused batch cannot
duplicate its valid part. Every refusal is also written to the rejected log,
with profile identifiers replaced by their keyed hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
from flask import Blueprint, Response, current_app, g, request
from flask.cli import with_appcontext
from marshmallow import Schema, ValidationError
from werkzeug.http import HTTP_STATUS_CODES

from ..errors import BadPayload, NotFoundError, PayloadTooLarge, StoreUnavailable, UnauthorizedError
from ..events import Event, Rejection, format_time, utcnow
from ..extension import EventTrackState, get_state
from ..keys import check_key, hash_key
from ..schemas.synerise import AI_EVENT_TYPES, DEDICATED, IDENTIFIERS, PRODUCT_ENDPOINTS, build_schemas
from ..stores import EventQuery
from ..tokens import Tokens, app_secret_keys
from ._http import read_json, unavailable_headers

NAME = "synerise"
#: This dialect's settings and their defaults (merged into the app config by ``init_app``).
CONFIG = {
    "EVENTTRACK_SYNERISE_URL_PREFIX": "",
    "EVENTTRACK_SYNERISE_TOKEN_MAX_AGE": 3600,
    "EVENTTRACK_SYNERISE_READ_LIMIT": 1000,
}
_CLICK_TYPES = frozenset({"recommendation.click", "item.search.click"})
_REDACT_KEYS = frozenset(IDENTIFIERS)


class Invalid(Exception):
    """One item is not valid; ``errors`` are ``{"field", "message"}`` dicts."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def flatten(messages: Any, path: str = "") -> list[dict[str, Any]]:
    """marshmallow's nested messages as a flat list of ``{"field", "message"}``."""
    if isinstance(messages, dict):
        out: list[dict[str, Any]] = []
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


class SyneriseReader:
    """Turns validated bodies into canonical events, per app settings."""

    def __init__(self, state: EventTrackState) -> None:
        cfg = state.config
        self.user_key: Callable[[str], str] = state.pipeline.user_key
        self.hashing = state.pipeline.hash_user is not None
        self.max_events = int(cfg["EVENTTRACK_MAX_EVENTS_PER_REQUEST"])
        self.schemas = build_schemas(int(cfg["EVENTTRACK_MAX_STRING_LENGTH"]), int(cfg["EVENTTRACK_MAX_JSON_DEPTH"]))

    # -- /v4/events ----------------------------------------------------------
    def v4_event(self, tenant: str, item: Any, endpoint: str) -> Event:
        """One event of ``endpoint`` (``custom`` or a dedicated endpoint name).

        :raises Invalid: naming every problem of the item.
        """
        if endpoint == "custom":
            data = load(self.schemas.custom, item)
            action = data["action"]
        else:
            data = load(self.schemas.for_endpoint(endpoint), item)
            action = DEDICATED[endpoint]
            if data.get("action") not in (None, action):
                raise Invalid([{"field": "action", "message": f"{endpoint!r} events are {action!r}; remove 'action'."}])
        event = self._profile_event(tenant, action, data["client"], dict(data["params"]))
        if endpoint in PRODUCT_ENDPOINTS:
            event.item_type, event.item_id = "product", str(data["params"]["sku"])
        if "time" in data:
            event.occurred_at, event.original_time = data["time"], item["time"]
        if "eventSalt" in data:
            event.dedup_key = self.salt_key(event, data.get("time") or utcnow(), data["eventSalt"])
            event.replace = True
        return event

    def v4_batch(self, tenant: str, document: Any) -> list[Event]:
        """Every event of a ``/v4/events/batch`` array, or :class:`Invalid` naming each bad index."""
        items = self._batch_items(document, "The body must be a JSON array of events.")
        events: list[Event] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            kind = item.get("type") if isinstance(item, dict) else None
            if kind != "custom" and kind not in DEDICATED:
                if not isinstance(item, dict):
                    errors.append({"index": index, "field": None, "message": "Each event must be a JSON object."})
                else:
                    message = f"Must be 'custom' or a dedicated endpoint ({', '.join(DEDICATED)}), not {kind!r}."
                    errors.append({"index": index, "field": "type", "message": message})
                continue
            try:
                events.append(self.v4_event(tenant, {k: v for k, v in item.items() if k != "type"}, kind))
            except Invalid as exc:
                errors.extend({"index": index, **e} for e in exc.errors)
        if errors:
            raise Invalid(errors)
        return events

    def transaction(self, tenant: str, document: Any) -> list[Event]:
        """One ``transaction.charge`` and one ``product.buy`` per product line."""
        data = load(self.schemas.transaction, document)
        when, raw_time = data.get("recordedAt"), document.get("recordedAt")
        order_id = data["orderId"]
        charge_props = {"orderId": order_id, "productCount": len(data["products"])}
        for name in ("value", "revenue", "discountAmount", "paymentInfo", "source", "metadata"):
            if name in data:
                charge_props[name] = data[name]
        events = [self._profile_event(tenant, "transaction.charge", data["client"], charge_props)]
        for line in data["products"]:
            buy = self._profile_event(tenant, "product.buy", data["client"], {"orderId": order_id, **line})
            buy.item_type, buy.item_id = "product", line["sku"]
            events.append(buy)
        for event in events:
            if when is not None:
                event.occurred_at, event.original_time = when, raw_time
        return events

    def _profile_event(self, tenant: str, action: str, client: dict[str, Any], props: dict[str, Any]) -> Event:
        # The first identifier present (IDENTIFIERS order) is the user; the
        # others are kept only as keyed hashes, never raw.
        present = [k for k in IDENTIFIERS if client.get(k) is not None]
        kind = present[0]
        others = {k: self.user_key(str(client[k])) for k in present[1:]}
        if others:
            props["identifiers"] = others
        return Event(tenant=tenant, source=NAME, type=action, user=str(client[kind]), user_kind=kind, props=props)

    def salt_key(self, event: Event, when: datetime, salt: str) -> str:
        """``eventSalt`` identity: action, identifier kind, *hashed* user, time (ms), salt,
        hashed again as a whole so no raw id or salt reaches the store."""
        user = self.user_key(event.user or "")
        ms = int(when.timestamp() * 1000)
        identity = json.dumps([event.type, event.user_kind, user, ms, salt], ensure_ascii=False)
        return "salt:" + hashlib.sha256(identity.encode()).hexdigest()

    # -- /events/v1 ------------------------------------------------------------
    def ai_event(self, tenant: str, event_type: str, item: Any) -> Event:
        data = load(self.schemas.ai_event, item)
        props: dict[str, Any] = {"correlationId": data["correlationId"], "items": data["items"]}
        if "campaignId" in data:
            props["campaignId"] = data["campaignId"]
        event = Event(tenant=tenant, source=NAME, type=event_type, user=data["clientUUID"], user_kind="uuid",
                      props=props, keep_future=True)  # fmt: skip
        if event_type in _CLICK_TYPES and len(data["items"]) == 1:
            event.item_type, event.item_id = "item", data["items"][0]
        if "eventTimestamp" in data:
            event.occurred_at, event.original_time = data["eventTimestamp"], str(item["eventTimestamp"])
        return event

    def ai_batch(self, tenant: str, document: Any) -> tuple[str, list[Event]]:
        if not isinstance(document, dict):
            raise Invalid([{"field": None, "message": 'The body must be {"eventType": ..., "items": [...]}.'}])
        event_type = document.get("eventType")
        errors: list[dict[str, Any]] = []
        if event_type not in AI_EVENT_TYPES:
            message = f"'eventType' must be one of {', '.join(AI_EVENT_TYPES)}, not {event_type!r}."
            errors.append({"field": "eventType", "message": message})
        unknown = sorted(set(document) - {"eventType", "items"})
        errors.extend({"field": name, "message": "Unknown field."} for name in unknown)
        items = self._batch_items(document.get("items"), "'items' must be a JSON array of events.", "items")
        events: list[Event] = []
        for index, item in enumerate(items):
            try:
                events.append(self.ai_event(tenant, str(event_type), item))
            except Invalid as exc:
                errors.extend({"index": index, **e} for e in exc.errors)
        if errors:
            raise Invalid(errors)
        return str(event_type), events

    def _batch_items(self, items: Any, message: str, field: str | None = None) -> list[Any]:
        if not isinstance(items, list):
            raise Invalid([{"field": field, "message": message}])
        if not items:
            raise Invalid([{"field": field, "message": "A batch needs at least one event."}])
        if len(items) > self.max_events:
            raise BadPayload(f"{len(items)} events in one batch; the limit is {self.max_events}.",
                             reason="size_violation")  # fmt: skip
        return items

    # -- the rejected log ------------------------------------------------------
    def redact(self, document: Any) -> Any:
        """``document`` with every profile identifier replaced by its keyed hash."""
        if isinstance(document, list):
            return [self.redact(item) for item in document]
        if not isinstance(document, dict):
            return document
        out: dict[str, Any] = {}
        for key, value in document.items():
            if key == "client" and isinstance(value, dict):
                value = {k: self._hashed(v) if k in _REDACT_KEYS else self.redact(v) for k, v in value.items()}
            elif key == "clientUUID":
                value = self._hashed(value)
            else:
                value = self.redact(value)
            out[key] = value
        return out

    def _hashed(self, value: Any) -> Any:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return "hashed:" + self.user_key(str(value))
        return value


def error_response(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
    """The one error envelope of this dialect (CHOICE, see docs/synerise.md)."""
    body = {"status": status, "error": HTTP_STATUS_CODES.get(status, "Error"), "message": message,
            "errors": errors or []}  # fmt: skip
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


def accepted(count: int) -> Response:
    body = {"status": 202, "message": "Accepted", "events": count}
    return Response(json.dumps(body), status=202, mimetype="application/json")


def bearer_token() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def create_blueprint(state: EventTrackState) -> Blueprint:
    reader = SyneriseReader(state)
    pipeline, store = state.pipeline, state.store
    tokens = Tokens(app_secret_keys(pipeline.app), int(state.config["EVENTTRACK_SYNERISE_TOKEN_MAX_AGE"]), store)
    read_limit = int(state.config["EVENTTRACK_SYNERISE_READ_LIMIT"])
    bp = Blueprint("eventtrack_synerise", __name__)

    def authorize(tracker_key_allowed: bool = False) -> str:
        """The tenant of the request's credentials; never taken from the body."""
        key = request.args.get("token") if tracker_key_allowed else None
        if key is not None:
            tenant = check_key(store, key, ("tracker",))
        else:
            tenant = tokens.verify(bearer_token()).tenant
        g._eventtrack_synerise_tenant = tenant
        return tenant

    def body() -> Any:
        return read_json(state)

    def invalid(exc: Invalid, type_: str | None = None) -> BadPayload:
        count = len(exc.errors)
        indexed = any("index" in e for e in exc.errors)
        what = "The batch was refused; nothing was stored" if indexed else "The event is not valid"
        g._eventtrack_synerise_type = type_
        return BadPayload(f"{what}: {count} problem{'s' * (count != 1)}.", errors=exc.errors)

    def submit(events: list[Event]) -> Response:
        pipeline.submit(events)
        return accepted(len(events))

    @bp.post("/v4/auth/token")
    def issue_token() -> Response:
        """Exchange an API key (``{"apiKey": ...}``) for a bearer token of its tenant."""
        g._eventtrack_synerise_secret = True  # the body is a secret: never logged
        document = body()
        api_key = document.get("apiKey") if isinstance(document, dict) else None
        if not isinstance(api_key, str) or not api_key:
            raise BadPayload("The body must be {\"apiKey\": \"<API key>\"}.",
                             errors=[{"field": "apiKey", "message": "Missing data for required field."}])  # fmt: skip
        tenant = check_key(store, api_key, ("api",))
        row = store.find_key(hash_key(api_key))
        token = tokens.issue(tenant, row["id"] if row else None)
        return Response(json.dumps({"token": token, "tokenType": "Bearer", "expiresIn": tokens.max_age,
                                    "tenant": tenant}), status=200, mimetype="application/json")  # fmt: skip

    @bp.post("/v4/events/custom")
    def custom_event() -> Response:
        return dedicated_event("custom")

    @bp.post("/v4/events/<endpoint>")
    def dedicated_event(endpoint: str) -> Response:
        tenant = authorize()
        if endpoint != "custom" and endpoint not in DEDICATED:
            raise NotFoundError(
                f"Unknown event endpoint {endpoint!r}; use /v4/events/custom or one of: {', '.join(DEDICATED)}."
            )
        document = body()
        g._eventtrack_synerise_type = DEDICATED.get(endpoint)
        try:
            event = reader.v4_event(tenant, document, endpoint)
        except Invalid as exc:
            action = document.get("action") if isinstance(document, dict) else None
            raise invalid(exc, DEDICATED.get(endpoint, action if isinstance(action, str) else None)) from None
        return submit([event])

    @bp.post("/v4/events/batch")
    def batch() -> Response:
        tenant = authorize()
        document = body()
        try:
            return submit(reader.v4_batch(tenant, document))
        except Invalid as exc:
            raise invalid(exc) from None

    @bp.post("/v4/transactions")
    def transaction() -> Response:
        tenant = authorize()
        document = body()
        try:
            return submit(reader.transaction(tenant, document))
        except Invalid as exc:
            raise invalid(exc, "transaction.charge") from None

    @bp.post("/events/v1/single/<event_type>")
    def ai_single(event_type: str) -> Response:
        tenant = authorize(tracker_key_allowed=True)
        if event_type not in AI_EVENT_TYPES:
            raise NotFoundError(f"Unknown AI event type {event_type!r}; use one of: {', '.join(AI_EVENT_TYPES)}.")
        document = body()
        try:
            return submit([reader.ai_event(tenant, event_type, document)])
        except Invalid as exc:
            raise invalid(exc, event_type) from None

    @bp.post("/events/v1/batch")
    def ai_batch() -> Response:
        tenant = authorize(tracker_key_allowed=True)
        document = body()
        try:
            return submit(reader.ai_batch(tenant, document)[1])
        except Invalid as exc:
            raise invalid(exc) from None

    @bp.get("/v4/events/profile/<kind>/<value>")
    def profile_events(kind: str, value: str) -> Response:
        """A profile's events, newest first, times in UTC (``?limit=``, ``?offset=``, ``?action=``)."""
        tenant = authorize()
        if kind not in IDENTIFIERS:
            raise NotFoundError(f"Unknown identifier kind {kind!r}; use one of: {', '.join(IDENTIFIERS)}.")
        limit, offset = _int_arg("limit", 100, 1, read_limit), _int_arg("offset", 0, 0, None)
        lookup = value
        if kind == "uuid":
            try:
                lookup = reader.schemas.ai_event.fields["clientUUID"].deserialize(value)
            except ValidationError:
                raise BadPayload("Not valid: the profile's uuid.", errors=[{"field": "uuid",
                                 "message": "Must be a UUID."}]) from None  # fmt: skip
        query = EventQuery(tenant=tenant, source=NAME, type=request.args.get("action"),
                           users=[pipeline.user_key(lookup)], newest_first=True)  # fmt: skip
        out: list[dict[str, Any]] = []
        matched = 0
        for event in store.iter_events(query):
            if event.user_kind != kind:
                continue
            matched += 1
            if matched > offset:
                out.append(_vendor_event(event, kind, value))
                if len(out) >= limit:
                    break
        return Response(json.dumps(out, ensure_ascii=False), status=200, mimetype="application/json")

    @bp.get("/v4/event-definitions")
    def definitions() -> Response:
        """The tenant's event-definition catalog (read-only)."""
        tenant = authorize()
        rows = [_definition(row) for row in store.definitions(tenant)]
        return Response(json.dumps(rows, ensure_ascii=False), status=200, mimetype="application/json")

    def record(reason: str, message: str) -> Response | None:
        """Log a refused write in the rejected log; a 503 response if even that failed."""
        if request.method != "POST":
            return None
        payload = None
        if not getattr(g, "_eventtrack_synerise_secret", False) and reason != "auth_failure":
            payload = _redacted_payload(reader, request.get_data(cache=True))
        tenant = getattr(g, "_eventtrack_synerise_tenant", "default")
        rejection = Rejection(reason, message, NAME, tenant=tenant,
                              type=getattr(g, "_eventtrack_synerise_type", None), payload=payload)  # fmt: skip
        try:
            pipeline.submit([], [rejection])
        except StoreUnavailable as exc:
            return unavailable(exc)
        return None

    @bp.errorhandler(BadPayload)
    def bad_payload(error: BadPayload) -> Response:
        message = error.description or "Bad request."
        errors = error.errors if isinstance(error.errors, list) else None
        detail = message + (" " + json.dumps(errors, ensure_ascii=False) if errors else "")
        return record(error.reason, detail) or error_response(400, message, errors)

    @bp.errorhandler(UnauthorizedError)
    def unauthorized(error: UnauthorizedError) -> Response:
        message = error.description or "Unauthorized."
        response = record("auth_failure", message) or error_response(401, message)
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @bp.errorhandler(NotFoundError)
    def not_found(error: NotFoundError) -> Response:
        message = error.description or "Not found."
        return record("unknown_event_type", message) or error_response(404, message)

    @bp.errorhandler(PayloadTooLarge)
    def too_large(error: PayloadTooLarge) -> Response:
        message = error.description or "The body is too large."
        g._eventtrack_synerise_secret = True  # not read: nothing to log but the fact
        return record("size_violation", message) or error_response(413, message)

    @bp.errorhandler(StoreUnavailable)
    def unavailable(error: StoreUnavailable) -> Response:
        current_app.logger.warning("synerise: %s", error.description)
        response = error_response(503, error.description or "The event store is unavailable; retry later.")
        response.headers.update(unavailable_headers(error))
        return response

    return bp


def _int_arg(name: str, default: int, low: int, high: int | None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadPayload(f"Query parameter {name!r} must be an integer {bound}.",
                         errors=[{"field": name, "message": f"Must be an integer {bound}."}])  # fmt: skip
    return int(raw)


def _redacted_payload(reader: SyneriseReader, raw: bytes) -> str | None:
    """The refused body for the rejected log, identifiers hashed. A body that is not
    JSON cannot be redacted, so it is kept only when the app stores raw ids anyway."""
    try:
        document = json.loads(raw)
    except ValueError:
        return None if reader.hashing else raw.decode("utf-8", "replace")
    except RecursionError:
        return None
    return json.dumps(reader.redact(document), ensure_ascii=False, default=str)


def _vendor_event(event: Event, kind: str, value: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "eventUUID": event.id,
        "action": event.type,
        "time": format_time(event.occurred_at) if event.occurred_at else None,
        "saveTime": format_time(event.received_at) if event.received_at else None,
        "client": {kind: value},
        "params": event.props,
    }
    if event.original_time:
        out["originalTime"] = event.original_time
    return out


def _definition(row: dict[str, Any]) -> dict[str, Any]:
    return {"name": row["name"], "source": row["source"], "firstSeen": row["first_seen"],
            "lastSeen": row["last_seen"], "count": row["count"], "params": row["params"]}  # fmt: skip


@click.command("token", help="Mint a Synerise bearer token for a tenant and print it.")
@click.option("--tenant", required=True, help="The tenant (workspace) the token writes to.")
@with_appcontext
def token_command(tenant: str) -> None:
    state = get_state()
    max_age = int(state.config.get("EVENTTRACK_SYNERISE_TOKEN_MAX_AGE", CONFIG["EVENTTRACK_SYNERISE_TOKEN_MAX_AGE"]))
    tokens = Tokens(app_secret_keys(current_app), max_age, state.store)
    click.echo(f"valid for {max_age} seconds", err=True)
    click.echo(tokens.issue(tenant))


@click.command("definitions", help="List the event-definition catalog (name, first/last seen, count, params).")
@click.option("--tenant", help="Only this tenant.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@with_appcontext
def definitions_command(tenant: str | None, as_json: bool) -> None:
    rows = get_state().store.definitions(tenant)
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            params = ",".join(row["params"])
            click.echo(f"{row['tenant']}  {row['source']}  {row['name']}  count={row['count']}"
                       f"  first={row['first_seen']}  last={row['last_seen']}  params={params}")  # fmt: skip
    if not rows and not as_json:
        click.echo("(no event definitions yet)", err=True)


commands = [token_command, definitions_command]
