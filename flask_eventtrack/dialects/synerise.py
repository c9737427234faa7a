"""Synerise events: ``/v4/events/...``, ``/v4/transactions`` and the AI events ``/events/v1/...``.

Unlike Cortex, this vendor answers what it thinks of a request: 202 when the
events were committed, 400 naming every problem (by index in a batch), 401 for
credentials, 404 for an unknown event type, 413, and 503 with ``Retry-After``.
A batch is all or nothing, so a client that retries a refused batch cannot
duplicate its valid part. Every refusal is also written to the rejected log,
with profile identifiers replaced by their keyed hashes.
"""

from __future__ import annotations

import json
from typing import Any

import click
from flask import Blueprint, Response, current_app, request
from flask.cli import with_appcontext
from marshmallow import ValidationError
from werkzeug.http import HTTP_STATUS_CODES

from .._terminal import printable
from ..config import MOST
from ..errors import BadPayload, NotFoundError, PayloadTooLarge, StoreUnavailable, UnauthorizedError
from ..events import Event, Rejection, format_time
from ..extension import EventTrackState, get_state
from ..keys import check_key, hash_key
from ..schemas.synerise import AI_EVENT_TYPES, DEDICATED, IDENTIFIERS, MAX_ACTION_LENGTH
from ..stores import EventQuery, unstorable
from ..tokens import Tokens, app_secret_keys
from ._http import ExactBlueprint, body_read, read_json, request_notes, unavailable_headers
from ._methods import answer_wrong_methods
from ._synerise_reader import SOURCE, Invalid, SyneriseReader, redacted_payload

NAME = SOURCE
#: This dialect's settings and their defaults (merged into the app config by ``init_app``).
CONFIG = {
    "EVENTTRACK_SYNERISE_URL_PREFIX": "",
    "EVENTTRACK_SYNERISE_TOKEN_MAX_AGE": 3600,
    "EVENTTRACK_SYNERISE_READ_LIMIT": 1000,
}
#: Numeric settings -> (type, least, most), checked by ``init_app``.
NUMBERS = {
    "EVENTTRACK_SYNERISE_TOKEN_MAX_AGE": (int, 1, MOST),
    "EVENTTRACK_SYNERISE_READ_LIMIT": (int, 1, MOST),
}


def error_response(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
    """The one error envelope of this dialect (CHOICE, see docs/synerise.md)."""
    body = {
        "status": status,
        "error": HTTP_STATUS_CODES.get(status, "Error"),
        "message": message,
        "errors": errors or [],
    }
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


#: The 202 body of a single event, serialised once.
_ACCEPTED_ONE = json.dumps({"status": 202, "message": "Accepted", "events": 1})


def accepted(count: int) -> Response:
    if count == 1:
        return Response(_ACCEPTED_ONE, status=202, mimetype="application/json")
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
    tokens = Tokens(
        app_secret_keys(pipeline.app), int(state.config["EVENTTRACK_SYNERISE_TOKEN_MAX_AGE"]), store
    )
    read_limit = int(state.config["EVENTTRACK_SYNERISE_READ_LIMIT"])
    bp = ExactBlueprint("eventtrack_synerise", __name__)

    def authorize(tracker_key_allowed: bool = False) -> str:
        """The tenant of the request's credentials; never taken from the body."""
        key = request.args.get("token") if tracker_key_allowed else None
        if key is not None:
            tenant = check_key(store, key, ("tracker",))
        else:
            tenant = tokens.verify(bearer_token()).tenant
        request_notes()["tenant"] = tenant
        return tenant

    def body() -> Any:
        return read_json(state)

    def invalid(exc: Invalid, type_: str | None = None) -> BadPayload:
        count = len(exc.errors)
        indexed = any("index" in e for e in exc.errors)
        what = "The batch was refused; nothing was stored" if indexed else "The event is not valid"
        request_notes()["type"] = type_
        return BadPayload(f"{what}: {count} problem{'s' * (count != 1)}.", errors=exc.errors)

    def submit(events: list[Event]) -> Response:
        pipeline.submit(events)
        return accepted(len(events))

    @bp.post("/v4/auth/token")
    def issue_token() -> Response:
        """Exchange an API key (``{"apiKey": ...}``) for a bearer token of its tenant."""
        request_notes()["secret"] = True  # the body is a secret: never logged
        document = body()
        api_key = document.get("apiKey") if isinstance(document, dict) else None
        if not isinstance(api_key, str) or not api_key:
            raise BadPayload(
                'The body must be {"apiKey": "<API key>"}.',
                errors=[{"field": "apiKey", "message": "Missing data for required field."}],
            )
        tenant = check_key(store, api_key, ("api",))
        row = store.find_key(hash_key(api_key))
        token = tokens.issue(tenant, row["id"] if row else None)
        return Response(
            json.dumps(
                {"token": token, "tokenType": "Bearer", "expiresIn": tokens.max_age, "tenant": tenant}
            ),
            status=200,
            mimetype="application/json",
        )

    @bp.post("/v4/events/custom")
    def custom_event() -> Response:
        return dedicated_event("custom")

    @bp.post("/v4/events/<endpoint>")
    def dedicated_event(endpoint: str) -> Response:
        tenant = authorize()
        if endpoint != "custom" and endpoint not in DEDICATED:
            raise NotFoundError(
                f"Unknown event endpoint {endpoint!r}; use custom or one of: {', '.join(DEDICATED)}."
            )
        document = body()
        request_notes()["type"] = DEDICATED.get(endpoint)
        try:
            event = reader.v4_event(tenant, document, endpoint)
        except Invalid as exc:
            action = document.get("action") if isinstance(document, dict) else None
            named = action if isinstance(action, str) and len(action) <= MAX_ACTION_LENGTH else None
            raise invalid(exc, DEDICATED.get(endpoint, named)) from None
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
            raise NotFoundError(
                f"Unknown AI event type {event_type!r}; use one of: {', '.join(AI_EVENT_TYPES)}."
            )
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

    @bp.get("/v4/events/profile/<kind>/<path:value>")
    def profile_events(kind: str, value: str) -> Response:
        """A profile's events, newest first, times in UTC (``?limit=``, ``?offset=``, ``?action=``)."""
        tenant = authorize()
        if kind not in IDENTIFIERS:
            raise NotFoundError(f"Unknown identifier kind {kind!r}; use one of: {', '.join(IDENTIFIERS)}.")
        # The default page never exceeds the read limit: a limit under 100 bounds every read.
        limit = _int_arg("limit", min(100, read_limit), 1, read_limit)
        offset = _int_arg("offset", 0, 0, None)
        action = request.args.get("action")
        _storable_args({kind: value, "action": action})
        lookup = value
        if kind == "uuid":
            try:
                lookup = reader.schemas.ai_event.fields["clientUUID"].deserialize(value)
            except ValidationError:
                raise BadPayload(
                    "Not valid: the profile's uuid.", errors=[{"field": "uuid", "message": "Must be a UUID."}]
                ) from None
        query = EventQuery(
            tenant=tenant,
            source=NAME,
            type=action,
            users=[pipeline.user_key(lookup)],
            newest_first=True,
        )
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
        # Only a body already read within the size limit is logged; never one
        # holding a secret (the token request) or one that failed authentication.
        raw = body_read()
        notes = request_notes()
        secret = notes.get("secret", False)
        if raw is not None and reason != "auth_failure" and not secret:
            payload = redacted_payload(reader, raw)
        tenant = notes.get("tenant", "default")
        rejection = Rejection(
            reason,
            message,
            NAME,
            tenant=tenant,
            type=notes.get("type"),
            payload=payload,
        )
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
        return record("size_violation", message) or error_response(413, message)

    @bp.errorhandler(StoreUnavailable)
    def unavailable(error: StoreUnavailable) -> Response:
        current_app.logger.warning("synerise: %s", error.description)
        response = error_response(503, error.description or "The event store is unavailable; retry later.")
        response.headers.update(unavailable_headers(error))
        return response

    answer_wrong_methods(bp, lambda message: error_response(405, message))
    return bp


def _int_arg(name: str, default: int, low: int, high: int | None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    digits = raw.isascii() and raw.isdigit() and len(raw) <= 9
    if not digits or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadPayload(
            f"Query parameter {name!r} must be an integer {bound}.",
            errors=[{"field": name, "message": f"Must be an integer {bound}."}],
        )
    return int(raw)


def _storable_args(values: dict[str, str | None]) -> None:
    """Refuse a path or query value no store can compare (NUL, an unpaired
    surrogate): PostgreSQL would fail on it, and no stored event could match."""
    bad = [name for name, value in values.items() if value is not None and unstorable(value)]
    if bad:
        message = "Must not contain a NUL character or an unpaired surrogate."
        raise BadPayload(
            f"Not valid: {', '.join(bad)}.", errors=[{"field": name, "message": message} for name in bad]
        )


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
    return {
        "name": row["name"],
        "source": row["source"],
        "firstSeen": row["first_seen"],
        "lastSeen": row["last_seen"],
        "count": row["count"],
        "params": row["params"],
    }


@click.command("token", help="Mint a Synerise bearer token for a tenant and print it.")
@click.option("--tenant", required=True, help="The tenant (workspace) the token writes to.")
@with_appcontext
def token_command(tenant: str) -> None:
    state = get_state()
    max_age = int(
        state.config.get("EVENTTRACK_SYNERISE_TOKEN_MAX_AGE", CONFIG["EVENTTRACK_SYNERISE_TOKEN_MAX_AGE"])
    )
    tokens = Tokens(app_secret_keys(current_app), max_age, state.store)
    try:
        token = tokens.issue(tenant)
    except ValueError as exc:  # an empty tenant: no request could use the token
        raise click.BadParameter(str(exc), param_hint="--tenant") from None
    click.echo(f"valid for {max_age} seconds", err=True)
    click.echo(token)


@click.command(
    "definitions", help="List the event-definition catalog (name, first/last seen, count, params)."
)
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
            line = (
                f"{row['tenant']}  {row['source']}  {row['name']}  count={row['count']}"
                f"  first={row['first_seen']}  last={row['last_seen']}  params={params}"
            )
            click.echo(printable(line))
    if not rows and not as_json:
        click.echo("(no event definitions yet)", err=True)


commands = [token_command, definitions_command]
