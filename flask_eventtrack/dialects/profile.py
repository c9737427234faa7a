"""Profile events API: users with attributes, and ``POST /v1/event/``.

Paths (under ``EVENTTRACK_PROFILE_URL_PREFIX``, default none):

- ``POST /v1/user``: create or update a user (``{"user": {...}, "attributes": {...}}``);
- ``GET /v1/user/<email or _id>``: the profile and its events, newest first, paginated;
- ``POST /v1/event/``: ``{"user": {"email" | "_id": ...}, "event": {<kind>: {...}}}``.

``/v1/event`` and ``/v1/event/`` are different paths (the API's convention):
the one without the slash answers 404 in the envelope instead of redirecting.
Every answer uses the vendor's envelopes, ``{"results": {...}}`` and
``{"errors": [{"message", "description"}]}``; every refused event request is
also written to the rejected log (with user ids replaced by their hashes).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from flask import Blueprint, Response, request
from marshmallow import Schema, ValidationError

from ..bots import is_bot
from ..config import MOST
from ..errors import BadPayload, NotFoundError, PayloadTooLarge, StoreUnavailable, UnauthorizedError
from ..events import Event, Rejection, format_time
from ..keys import check_key
from ..schemas.profile import IDENTIFIER_KEYS, KINDS, UserSchema, make_kind_schemas, validate_attributes
from ..stores import EventQuery, Store, unstorable
from ._http import ExactBlueprint, body_read, read_json, request_notes, unavailable_headers
from ._methods import answer_wrong_methods

if TYPE_CHECKING:
    from ..extension import EventTrackState

NAME = "profile"
#: This dialect's settings and their defaults (merged into the app config by ``init_app``).
CONFIG = {
    "EVENTTRACK_PROFILE_URL_PREFIX": "",
    "EVENTTRACK_PROFILE_KEEP_EMAIL": False,
    "EVENTTRACK_PROFILE_BOT_FILTER": True,
    "EVENTTRACK_PROFILE_EMAIL_OPEN_WINDOW": 1200,
    "EVENTTRACK_PROFILE_PAGE_SIZE": 50,
}
MAX_PAGE_SIZE = 200
#: Numeric settings -> (type, least, most), checked by ``init_app``.
NUMBERS = {
    "EVENTTRACK_PROFILE_EMAIL_OPEN_WINDOW": (int, 0, MOST),
    "EVENTTRACK_PROFILE_PAGE_SIZE": (int, 1, MAX_PAGE_SIZE),
}
_CREATED = {"message": "Event created", "email": "Event was created for the specified user"}


class ProfileError(BadPayload):
    """A 400 in the vendor's envelope: ``message`` (short) and ``description``."""

    def __init__(self, message: str, description: str, reason: str = "schema_violation") -> None:
        super().__init__(description, reason=reason)
        self.message = message


def envelope_error(
    status: int, errors: list[tuple[str, str]], headers: dict[str, str] | None = None
) -> Response:
    body = {"errors": [{"message": m, "description": d} for m, d in errors]}
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)


def results(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps({"results": body}), status=status, mimetype="application/json")


class ProfileReader:
    """Validates requests and builds events, per app settings (read once)."""

    def __init__(self, state: EventTrackState) -> None:
        cfg = state.config
        self.state = state
        self.keep_email = bool(cfg["EVENTTRACK_PROFILE_KEEP_EMAIL"])
        self.bot_filter = bool(cfg["EVENTTRACK_PROFILE_BOT_FILTER"])
        self.open_window = timedelta(seconds=int(cfg["EVENTTRACK_PROFILE_EMAIL_OPEN_WINDOW"]))
        self.page_size = int(cfg["EVENTTRACK_PROFILE_PAGE_SIZE"])
        self.max_length = int(cfg["EVENTTRACK_MAX_STRING_LENGTH"])
        self.max_depth = int(cfg["EVENTTRACK_MAX_JSON_DEPTH"])
        self.user_schema = UserSchema()
        self.schemas: dict[str, Schema] = make_kind_schemas(self.max_length, self.max_depth)

    # -- pieces of a request ----------------------------------------------
    def tenant(self) -> str:
        """The tenant of the ``Authorization: <api key>`` header (no scheme word)."""
        secret = request.headers.get("Authorization")
        if secret and " " in secret.strip():
            raise UnauthorizedError(
                'Send the API key alone, with no scheme word: "Authorization: <api key>".'
            )
        return check_key(self.state.store, secret and secret.strip(), ("api",))

    def document(self) -> dict[str, Any]:
        document = read_json(self.state)
        if not isinstance(document, dict):
            raise ProfileError("Invalid request", "The body must be a JSON object.")
        return document

    def user(self, document: dict[str, Any]) -> tuple[str, str]:
        """``(raw id, kind)`` of the request's user; ``email`` wins over ``_id``."""
        value = document.get("user")
        if value is None:
            raise ProfileError(
                "Missing user information", 'Please send a "user" object with "email" or "_id".'
            )
        if not isinstance(value, dict):
            raise ProfileError("Invalid user information", '"user" must be an object with "email" or "_id".')
        try:
            data = self.user_schema.load(value)
        except ValidationError as exc:
            raise ProfileError("Invalid user information", _describe(exc.messages, "user")) from None
        if "email" in data:
            return data["email"], "email"
        return data["_id"], "_id"

    def event(self, document: dict[str, Any]) -> tuple[str, Any]:
        """``(kind, validated data)`` of the request's event."""
        value = document.get("event")
        if value is None:
            raise ProfileError("Missing event information", "Please send event information along with user")
        if not isinstance(value, dict) or len(value) != 1:
            raise ProfileError(
                "Invalid event information",
                '"event" must be an object with exactly one key naming the event kind,'
                ' e.g. {"update": {"firstname": "..."}}.',
            )
        ((kind, data),) = value.items()
        schema = self.schemas.get(kind)
        if schema is None:
            raise ProfileError(
                "Unknown event kind", f"{kind[:100]!r} is not an event kind; known kinds: {', '.join(KINDS)}."
            )
        if not isinstance(data, dict):
            raise ProfileError("Invalid event data", f'"event.{kind}" must be an object.')
        try:
            return kind, schema.load(data)
        except ValidationError as exc:
            raise ProfileError("Invalid event data", _describe(exc.messages, f"event.{kind}")) from None

    def attributes(self, value: Any) -> dict[str, Any]:
        try:
            attrs = validate_attributes(
                value, max_length=self.max_length, max_depth=self.max_depth, where="attributes"
            )
        except ValidationError as exc:
            raise ProfileError("Invalid attributes", _describe(exc.messages, "attributes")) from None
        return _without_identifiers(attrs)

    def build(self, tenant: str, raw_user: str, user_kind: str, kind: str, data: dict[str, Any]) -> Event:
        """The canonical event for a validated ``kind``; raw user ids only in ``user``/``links_to``."""
        event = Event(tenant=tenant, source=NAME, type=kind, user=raw_user, user_kind=user_kind)
        if kind in ("update", "login"):
            event.props = _without_identifiers(data)
            email = data.get("email")
            if kind == "login" and isinstance(email, str) and email and email != raw_user:
                event.links_to = email  # the pipeline hashes it: identity stitching
        elif kind == "generic":
            attrs = dict(data["generic"])
            event.type = attrs.pop("event_name")
            event.props = _without_identifiers(attrs)
        else:
            event.props = dict(data)
            if "product_id" in data:
                event.item_type, event.item_id = "product", event.props.pop("product_id")
            if kind == "confirmation":
                event.dedup_key = f"order:{data['orderId']}"
            elif kind == "email_open":
                event.once_per = self.open_window
        return event

    # -- rejected log -------------------------------------------------------
    def rejection(self, tenant: str, reason: str, message: str, type: str | None = None) -> Rejection:
        """A rejection of the current request; its payload has user ids hashed."""
        payload: str | None = None
        raw = body_read()  # None when never read, or over the size limit
        try:
            document = json.loads(raw) if raw is not None else None
            if document is not None:
                payload = json.dumps(self.redact(document), ensure_ascii=False)
        except (ValueError, RecursionError):
            payload = None  # unreadable or too deep: keep no payload rather than raw ids
        return Rejection(reason, message, NAME, tenant=tenant, type=type, payload=payload)

    def redact(self, document: Any, hashing: bool = False) -> Any:
        """``document`` with every scalar under an ``email``/``_id``/``user`` key
        replaced by ``hash:<its user key>``, whatever the container (a refused
        body is refused because its shape is unexpected: a list, an object or
        a bare string there can hold raw ids all the same). Object keys there
        are hashed too, except the identifier names themselves."""
        if isinstance(document, dict):
            return {
                self._hash(k) if hashing and k not in IDENTIFIER_KEYS else k: self.redact(
                    v, hashing or k in IDENTIFIER_KEYS or k == "user"
                )
                for k, v in document.items()
            }
        if isinstance(document, list):
            return [self.redact(v, hashing) for v in document]
        if hashing and document is not None:
            return self._hash(document)
        return document

    def _hash(self, value: Any) -> str:
        return "hash:" + self.state.pipeline.user_key(str(value))


def _without_identifiers(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k not in IDENTIFIER_KEYS}


def _describe(messages: Any, where: str) -> str:
    """Marshmallow messages as one sentence: ``user.email: Not a valid ...``."""
    if isinstance(messages, list):
        return " ".join(str(m) if ":" in str(m) else f"{where}: {m}" for m in messages)
    parts = []
    for key, value in messages.items():
        path = where if key == "_schema" else f"{where}.{key}"
        parts.append(_describe(value, path))
    return " ".join(parts)


def profile_json(profile: dict[str, Any], keep_email: bool) -> dict[str, Any]:
    body = {
        "user_key": profile["user_key"],
        "attributes": profile["attributes"],
        "created_at": profile["created_at"],
        "updated_at": profile["updated_at"],
    }
    if keep_email:
        body["email"] = profile["email"]
    return body


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "occurred_at": format_time(event.occurred_at) if event.occurred_at else None,
        "item_type": event.item_type,
        "item_id": event.item_id,
        "props": event.props,
    }


def create_blueprint(state: EventTrackState) -> Blueprint:
    reader = ProfileReader(state)
    pipeline = state.pipeline
    store = state.store
    bp = ExactBlueprint("eventtrack_profile", __name__)

    def refuse(tenant: str, reason: str, error: ProfileError, type: str | None = None) -> NoReturn:
        """Log the refused request, then raise the 400 (a 503 if the log is down)."""
        pipeline.submit([], [reader.rejection(tenant, reason, f"{error.message}: {error.description}", type)])
        raise error

    def authorized_tenant() -> str:
        """The key's tenant; a refused key is logged (``auth_failure``), then 401.

        Without its body: reading it would let an unauthenticated client make the
        server buffer and parse a body of any size (the limit is checked later).
        """
        try:
            tenant = reader.tenant()
        except UnauthorizedError as exc:
            pipeline.submit([], [Rejection("auth_failure", exc.description or "", NAME)])
            raise
        request_notes()["tenant"] = tenant  # for a refusal raised later (a 413)
        return tenant

    @bp.post("/v1/event/")
    def track() -> Response:
        tenant = authorized_tenant()
        try:
            document = reader.document()
            raw_user, user_kind = reader.user(document)
            kind, data = reader.event(document)
        except ProfileError as exc:
            refuse(tenant, exc.reason, exc)
        except BadPayload as exc:
            refuse(tenant, exc.reason, ProfileError("Invalid request", exc.description or "", exc.reason))
        user_key = pipeline.user_key(raw_user)
        if store.get_profile(tenant, user_key) is None:
            refuse(
                tenant,
                "unknown_user",
                ProfileError(
                    "User not found",
                    f"No user with this {user_kind} exists; create it first with POST /v1/user.",
                ),
                kind,
            )
        event = reader.build(tenant, raw_user, user_kind, kind, data)
        if kind in ("update", "login"):
            # The attribute change commits with the event, or neither does: a
            # 503 never leaves a stored event behind for the retry to duplicate.
            email = raw_user if user_kind == "email" else data.get("email")
            email = email if reader.keep_email and isinstance(email, str) else None
            event.merge_profile = (_without_identifiers(data), email)
        user_agent = request.headers.get("User-Agent")
        if reader.bot_filter and is_bot(user_agent):
            message = f"User-Agent looks like a bot: {(user_agent or '')[:200]}"
            pipeline.submit([], [reader.rejection(tenant, "bot", message, event.type)])
            return results(dict(_CREATED))  # bots are not told (CHOICE, see docs/profile.md)
        result = pipeline.submit([event])
        if not result.stored:
            refused = result.rejected[-1] if result.rejected else None
            return results(
                {
                    "message": "Event discarded",
                    "reason": refused.reason if refused else "dropped",
                    "description": refused.message if refused else "The event was not kept.",
                }
            )
        return results(dict(_CREATED))

    @bp.route("/v1/event", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def track_without_slash() -> Response:
        return envelope_error(
            404, [("Not found", "The events endpoint is /v1/event/ (with the trailing slash).")]
        )

    @bp.post("/v1/user")
    def save_user() -> Response:
        tenant = authorized_tenant()
        try:
            document = reader.document()
            raw_user, user_kind = reader.user(document)
            attributes = reader.attributes(document.get("attributes", {}))
        except ProfileError as exc:
            refuse(tenant, exc.reason, exc)
        except BadPayload as exc:
            refuse(tenant, exc.reason, ProfileError("Invalid request", exc.description or "", exc.reason))
        email = raw_user if reader.keep_email and user_kind == "email" else None
        profile = store.upsert_profile(tenant, pipeline.user_key(raw_user), attributes, email)
        if profile is None:  # cannot happen with create=True; keep the type checker honest
            raise StoreUnavailable("The profile could not be saved.")
        message = "User created" if profile["created"] else "User updated"
        return results({"message": message, "user": profile_json(profile, reader.keep_email)})

    # strict_slashes=False: a GET of /v1/user gets this answer, not a redirect here.
    @bp.route("/v1/user/", methods=["GET", "POST"], strict_slashes=False)
    def user_without_id() -> Response:
        return envelope_error(
            404,
            [("Not found", "Create users with POST /v1/user; read one with GET /v1/user/<email or _id>.")],
        )

    @bp.get("/v1/user/<path:identifier>")
    def show_user(identifier: str) -> Response:
        tenant = reader.tenant()
        if unstorable(identifier):  # no store can compare it (PostgreSQL refuses NUL)
            raise ProfileError(
                "Invalid user information",
                "The email or _id must not contain a NUL character or an unpaired surrogate.",
            )
        page, per_page = _page_args(reader.page_size)
        user_key = pipeline.user_key(identifier)
        users = store.linked_users(user_key, tenant)
        profile = store.get_profile(tenant, user_key) or _linked_profile(store, tenant, users)
        if profile is None:
            raise NotFoundError("No user with this email or _id exists.")
        query = EventQuery(
            tenant=tenant,
            users=users,
            newest_first=True,
            limit=per_page,
            offset=(page - 1) * per_page,
        )
        events = [event_json(e) for e in store.iter_events(query)]
        total = store.count_events(EventQuery(tenant=tenant, users=query.users))
        return results(
            {
                "user": profile_json(profile, reader.keep_email),
                "events": events,
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "total": total,
                    "pages": (total + per_page - 1) // per_page,
                },
            }
        )

    @bp.errorhandler(ProfileError)
    def bad_request(error: ProfileError) -> Response:
        return envelope_error(400, [(error.message, error.description or "")])

    @bp.errorhandler(BadPayload)
    def bad_payload(error: BadPayload) -> Response:
        return envelope_error(400, [("Invalid request", error.description or "")])

    @bp.errorhandler(UnauthorizedError)
    def unauthorized(error: UnauthorizedError) -> Response:
        # HTTP requires a challenge on every 401; the key is sent bare, so the scheme is ours.
        headers = {"WWW-Authenticate": 'ApiKey realm="profile"'}
        return envelope_error(401, [("Unauthorized", error.description or "")], headers)

    @bp.errorhandler(NotFoundError)
    def not_found(error: NotFoundError) -> Response:
        return envelope_error(404, [("User not found", error.description or "")])

    @bp.errorhandler(PayloadTooLarge)
    def too_large(error: PayloadTooLarge) -> Response:
        description = error.description or "The body is too large."
        # The body is not read, so there is no payload to log; the key was checked first.
        tenant = request_notes().get("tenant", "default")
        try:
            pipeline.submit([], [Rejection("size_violation", description, NAME, tenant=tenant)])
        except StoreUnavailable as exc:
            return unavailable(exc)
        return envelope_error(413, [("Request too large", description)])

    @bp.errorhandler(StoreUnavailable)
    def unavailable(error: StoreUnavailable) -> Response:
        description = error.description or "The store is unavailable."
        return envelope_error(503, [("Service unavailable", description)], unavailable_headers(error))

    answer_wrong_methods(bp, lambda message: envelope_error(405, [("Method not allowed", message)]))
    return bp


def _linked_profile(store: Store, tenant: str, users: list[str]) -> dict[str, Any] | None:
    """The most recently updated profile among ``users`` (an id known only as a
    login's target, such as the e-mail an ``_id`` user logged in with, reads as
    the profile that logged in with it)."""
    profiles = [p for p in (store.get_profile(tenant, u) for u in users) if p is not None]
    return max(profiles, key=lambda p: (p["updated_at"], p["user_key"]), default=None)


def _page_args(default_size: int) -> tuple[int, int]:
    """``?page=`` (from 1) and ``?per_page=`` (1 to :data:`MAX_PAGE_SIZE`)."""
    values = []
    for name, default, high in (("page", 1, 10**9), ("per_page", default_size, MAX_PAGE_SIZE)):
        raw = request.args.get(name)
        if raw is None:
            values.append(default)
            continue
        # isascii: "²" and "٣" are isdigit() but int() refuses or misreads them
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or not 1 <= int(raw) <= high:
            raise ProfileError("Invalid pagination", f"{name} must be a whole number from 1 to {high}.")
        values.append(int(raw))
    return values[0], values[1]
