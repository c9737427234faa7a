"""Ibexa Personalization tracking API: ``GET|POST /api/<customerid>/<event>/...``.

Every parameter is in the URL (path segments and query string), so every error
is about the URL, answered as the vendor does: a plain-text, human-readable body
and the vendor's status code (400 malformed, 401 bad credentials, 404 unknown
customer or event code, 414 URI too long), with the refused request recorded in
the rejected log. Success is 204, sent only after the store committed.

User ids in the rejected log are replaced by their stored key: a refused request
never writes a raw user id to disk either.

Speed: a valid request is checked by :class:`~flask_eventtrack.schemas.ibexa.FastLoader`
(the schema's own field checks without marshmallow's machinery) and its path is
split without re-parsing the URI when nothing in it is percent-encoded; anything
else takes the slower, message-producing way. Both ways accept the same requests.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_to_bytes, urlsplit

from flask import Blueprint, Request, Response, current_app, request
from marshmallow import Schema, ValidationError
from werkzeug.routing import PathConverter

from .. import links
from ..config import MOST, as_list
from ..errors import (
    BadPayload,
    ConfigurationError,
    NotFoundError,
    PayloadTooLarge,
    StoreUnavailable,
    UnauthorizedError,
    URITooLong,
)
from ..events import Event, Rejection
from ..extension import EventTrackState
from ..ibexa_stats import commands as _stats_commands
from ..schemas.ibexa import EVENT_CODES, PATH_PARAMS, FastLoader, make_ibexa_schemas
from ._http import ExactBlueprint, read_body, unavailable_headers

log = logging.getLogger("flask_eventtrack")
NAME = "ibexa"
#: This dialect's settings and their defaults (merged into the app config by ``init_app``).
CONFIG: dict[str, Any] = {
    "EVENTTRACK_IBEXA_URL_PREFIX": "",
    "EVENTTRACK_IBEXA_CUSTOMERS": [],
    "EVENTTRACK_IBEXA_STRING_ITEM_IDS": False,
    "EVENTTRACK_IBEXA_MAX_URI_LENGTH": 2048,
    "EVENTTRACK_IBEXA_CREDENTIALS": {},
}
#: Numeric settings -> (type, least, most), checked by ``init_app``.
NUMBERS = {"EVENTTRACK_IBEXA_MAX_URI_LENGTH": (int, 64, MOST)}
#: ``flask eventtrack scenarios`` and ``flask eventtrack consumption``.
commands = list(_stats_commands)

#: The path segments after ``/api/<customerid>/<event>/``, per event code.
PATH_SHAPES: dict[str, tuple[str, ...]] = {
    "click": ("userid", "itemtypeid", "itemid"),
    "consume": ("userid", "itemtypeid", "itemid"),
    "buy": ("userid", "itemtypeid", "itemid"),
    "login": ("sourceuserid", "targetuserid"),
    "basket": ("userid", "itemtypeid", "itemid"),
    "deletefrombasket": ("userid", "itemtypeid", "itemid"),
    "rate": ("userid", "itemtypeid", "itemid"),
    "blacklist": ("userid", "itemtypeid", "itemid"),
    "rendered": ("userid", "itemtypeid", "itemids"),
    "clickrecommended": ("userid", "itemtypeid", "itemid"),
    "triggeropened": ("userid",),
    "clicktriggered": ("userid", "itemtypeid", "itemid"),
}
_USER_SEGMENTS = frozenset({"userid", "sourceuserid", "targetuserid"})
#: Validated query parameters copied into ``props`` as they are.
_PROPS = ("categorypath", "percentage", "quantity", "rating", "scenario", "triggername")
_MAX_CUSTOMER_LENGTH = 64
_Refusal = (BadPayload, NotFoundError, UnauthorizedError, URITooLong)
_BACKSLASH = "A backslash (\\ or %5C) is not allowed anywhere in the request."
_NOT_UTF8 = "is not valid UTF-8: percent-escapes must encode UTF-8 text (ü is %C3%BC, not %FC)."
#: The app's URL converter for the path after the event code (see ``_RestConverter``).
_REST_CONVERTER = "eventtrack_ibexa_rest"


def _shape_text(code: str) -> str:
    names = "/".join(f"<{'itemid>[,<itemid>...' if n == 'itemids' else n}>" for n in PATH_SHAPES[code])
    return f"/api/<customerid>/{code}/{names}"


@dataclass
class IbexaSettings:
    """This app's Ibexa settings, parsed once by ``create_blueprint``."""

    customers: frozenset[str]
    string_item_ids: bool
    max_uri_length: int
    credentials: dict[str, list[bytes]]
    schemas: dict[str, Schema] = field(repr=False)
    #: ``FastLoader`` per event code, tried before the schema.
    fast: dict[str, FastLoader] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fast = {code: FastLoader(schema) for code, schema in self.schemas.items()}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> IbexaSettings:
        customers = frozenset(as_list(cfg["EVENTTRACK_IBEXA_CUSTOMERS"]))
        for customer in customers:
            if not _valid_customer(customer):
                raise ConfigurationError(
                    f"EVENTTRACK_IBEXA_CUSTOMERS: {customer!r} is not an alphanumeric customer id."
                )
        raw_credentials = cfg["EVENTTRACK_IBEXA_CREDENTIALS"] or {}
        if not isinstance(raw_credentials, Mapping):
            raise ConfigurationError(
                "EVENTTRACK_IBEXA_CREDENTIALS must be a mapping {customerid: secret or [secrets]}."
            )
        credentials: dict[str, list[bytes]] = {}
        for customer, secrets in raw_credentials.items():
            customer = str(customer)
            if customers and customer not in customers:
                raise ConfigurationError(
                    f"EVENTTRACK_IBEXA_CREDENTIALS names customer {customer!r},"
                    " which is not in EVENTTRACK_IBEXA_CUSTOMERS."
                )
            values = [secrets] if isinstance(secrets, str) else list(secrets)
            if not values or not all(isinstance(v, str) and v for v in values):
                raise ConfigurationError(
                    f"EVENTTRACK_IBEXA_CREDENTIALS[{customer!r}] must be a non-empty secret"
                    " or a list of them."
                )
            credentials[customer] = [v.encode("utf-8") for v in values]
        max_uri = int(cfg["EVENTTRACK_IBEXA_MAX_URI_LENGTH"])  # at least 64: NUMBERS
        string_ids = bool(cfg["EVENTTRACK_IBEXA_STRING_ITEM_IDS"])
        schemas = make_ibexa_schemas(
            string_item_ids=string_ids,
            max_length=int(cfg["EVENTTRACK_MAX_STRING_LENGTH"]),
            max_items=int(cfg["EVENTTRACK_MAX_EVENTS_PER_REQUEST"]),
        )
        return cls(customers, string_ids, max_uri, credentials, schemas)


def _valid_customer(customer: str) -> bool:
    return customer.isascii() and customer.isalnum() and len(customer) <= _MAX_CUSTOMER_LENGTH


class IbexaReader:
    """Turns one request into canonical events, or raises a refusal with the vendor's code."""

    def __init__(self, state: EventTrackState) -> None:
        self.settings = IbexaSettings.from_config(state.config)
        self.pipeline = state.pipeline
        self.state = state
        #: Tenants known to authenticate their clients (see :meth:`authenticates`).
        self.authenticating: set[str] = set()
        cfg = state.config
        if "cortex" in state.dialects and str(cfg["EVENTTRACK_CORTEX_SIGNATURE"]).lower() == "required":
            self.authenticating.add(str(cfg["EVENTTRACK_CORTEX_TENANT"]))
        if not self.settings.customers:
            log.warning(
                "flask-eventtrack: EVENTTRACK_IBEXA_CUSTOMERS is empty, so anonymous Ibexa requests may"
                " write into any tenant that has no keys and is not the signed Cortex tenant. List your"
                " Ibexa customer ids (tenants whose clients only use bearer tokens from"
                " 'flask eventtrack token' are not recognised)."
            )

    def authenticates(self, tenant: str) -> bool:
        """Whether ``tenant`` authenticates its clients: it has API or tracker keys
        (revoked ones count), or it is the Cortex tenant and Cortex bodies must be signed.

        With no ``EVENTTRACK_IBEXA_CUSTOMERS`` any alphanumeric id is a customer,
        but not such a tenant: anonymous Ibexa requests would write into its events
        and stitch its identities. Only a yes is remembered, so a key created later
        protects its tenant at once.
        """
        if tenant in self.authenticating:
            return True
        if self.state.store.list_keys(tenant):
            self.authenticating.add(tenant)
            return True
        return False

    # -- the request ---------------------------------------------------------
    def read(self, customerid: str, code: str, rest: str) -> list[Event]:
        s = self.settings
        # One context lookup instead of one per attribute below.
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        uri = self.raw_uri(req)
        if len(uri) > s.max_uri_length:
            raise URITooLong(
                f"The request URI is {len(uri)} characters long; the limit is {s.max_uri_length}."
            )
        if self.has_backslash(req, uri):
            raise BadPayload(_BACKSLASH)
        if not _valid_customer(customerid):
            if s.customers:
                raise NotFoundError(f"The customer id {customerid[:40]!r} was not found.")
            raise BadPayload(f"The customer id must be alphanumeric, not {customerid[:40]!r}.")
        if s.customers and customerid not in s.customers:
            raise NotFoundError(f"The customer id {customerid!r} was not found.")
        if not s.customers and customerid not in s.credentials and self.authenticates(customerid):
            raise NotFoundError(f"The customer id {customerid!r} was not found.")
        if code not in PATH_SHAPES:
            raise NotFoundError(
                f"The event code {code[:40]!r} was not found. Event codes: {', '.join(EVENT_CODES)}."
            )
        if customerid in s.credentials:
            self.check_credentials(customerid)
        segments = self.segments(rest, req)
        shape = PATH_SHAPES[code]
        if len(segments) != len(shape) or not all(segments):
            raise BadPayload(
                f"A {code} event has the form {_shape_text(code)}; this request has"
                f" {len([x for x in segments if x])} non-empty path segments after the event code."
            )
        data = dict(zip(shape, segments, strict=True))
        data.update(self.params(req))
        schema = s.schemas[code]
        loaded = s.fast[code].load(data)
        if loaded is None:  # refused (or unusual): the schema says why
            try:
                loaded = schema.load(data)
            except ValidationError as exc:
                raise BadPayload(_messages(exc.messages), errors=exc.messages) from None
        # A parameter this event code does not define (``percentage`` on a click) is an
        # extra, unchecked: it goes under ``extra`` only, never beside the checked ones.
        known = {key: value for key, value in loaded.items() if key in schema.fields}
        extras = {key: value for key, value in loaded.items() if key not in schema.fields}
        return self.build(customerid, code, known, extras)

    @staticmethod
    def raw_uri(req: Request) -> str:
        """The URI as sent (WSGI servers keep it in ``RAW_URI``/``REQUEST_URI``)."""
        env = req.environ
        raw = env.get("RAW_URI") or env.get("REQUEST_URI")
        if raw:
            return str(raw)
        query = env.get("QUERY_STRING", "")
        return req.full_path if query else req.path

    @staticmethod
    def has_backslash(req: Request, uri: str) -> bool:
        """A backslash in the URI as sent, or in the decoded path or query (in case
        the server's raw URI and its decoded parts disagree).

        The decoded query parameters hold a backslash exactly when the query string
        has one or a ``%5C``, so the query string is checked without parsing it.
        """
        if "\\" in uri or "%5c" in uri.lower():
            return True
        query = req.environ.get("QUERY_STRING", "")
        return "\\" in req.script_root + req.path or "\\" in query or "%5c" in query.lower()

    @staticmethod
    def segments(rest: str, req: Request, strict: bool = True) -> list[str]:
        """Path segments after the event code, decoded one by one from the raw URI,
        so an encoded slash (``%2F``) stays inside its user id.

        Without a ``%`` in the raw path, decoding it segment by segment gives
        ``rest.split("/")``, so the raw URI is only re-parsed when it has one.
        ``strict`` refuses bytes that are not UTF-8: werkzeug decodes them to U+FFFD,
        which would make ``m%FCller`` and ``m%F6ller`` one user. Such bytes always
        leave a U+FFFD in ``rest``, so only paths with one are checked.
        """
        if strict and "\ufffd" in rest:
            _require_utf8_path(req)
        decoded = rest.split("/")
        raw = req.environ.get("RAW_URI") or req.environ.get("REQUEST_URI")
        if not raw or "%" not in str(raw).partition("?")[0]:
            return decoded
        full = req.script_root + req.path
        if not full.endswith(rest):
            return decoded
        head = full[: len(full) - len(rest)]
        parts = [unquote(p, errors="replace") for p in urlsplit(str(raw)).path.split("/")[head.count("/") :]]
        return parts if "/".join(parts) == rest else decoded

    def params(self, req: Request) -> dict[str, str]:
        """Query parameters, plus form fields of a form-encoded POST.

        Both are parsed here rather than by ``req.args``/``req.form``: werkzeug keeps
        an escape that is not UTF-8 as the text ``%FC`` (the same value as ``%25FC``),
        and ``req.form`` would find empty a chunked body ``read_body`` has consumed.
        """
        pairs = _pairs(req.query_string, "The query string") if req.query_string else []
        if req.method == "POST" and req.mimetype == "application/x-www-form-urlencoded":
            form = _pairs(read_body(self.state), "The form body")
            # has_backslash saw only the URI.
            if any("\\" in key or "\\" in value for key, value in form):
                raise BadPayload(_BACKSLASH)
            pairs += form
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:
                raise BadPayload(f"The parameter {key[:40]!r} is given more than once.")
            if key in PATH_PARAMS:
                raise BadPayload(f"{key!r} is part of the URL path; it cannot be a query parameter.")
            params[key] = value
        return params

    def check_credentials(self, customerid: str) -> None:
        """HTTP Basic (user = customer id) or a Bearer token, compared in constant time."""
        auth = request.authorization
        if auth is None:
            raise UnauthorizedError(
                f"Customer {customerid} requires credentials: HTTP Basic auth with the customer id"
                " as user name, or a Bearer token."
            )
        if auth.type == "basic":
            secret = auth.password or ""
            if not hmac.compare_digest((auth.username or "").encode("utf-8"), customerid.encode("utf-8")):
                secret = ""
        elif auth.type == "bearer":
            secret = auth.token or ""
        else:
            raise UnauthorizedError(
                f"Authorization type {auth.type!r} is not supported; use Basic or Bearer."
            )
        given = secret.encode("utf-8")
        matches = [hmac.compare_digest(given, known) for known in self.settings.credentials[customerid]]
        if not secret or not any(matches):
            raise UnauthorizedError(f"The credentials are not valid for customer {customerid}.")

    # -- canonical events ------------------------------------------------------
    @staticmethod
    def build(customerid: str, code: str, data: dict[str, Any], extras: dict[str, Any]) -> list[Event]:
        props: dict[str, Any] = {key: data[key] for key in _PROPS if data.get(key) not in (None, "")}
        if data.get("fullprice"):
            props.update(data["fullprice"])
        if extras:
            props["extra"] = extras
        base: dict[str, Any] = {"tenant": customerid, "source": NAME, "type": code, "user_kind": "userid"}
        if code == "login":
            return [Event(**base, user=data["sourceuserid"], links_to=data["targetuserid"], props=props)]
        if code == "rendered":
            return [
                Event(
                    **base,
                    user=data["userid"],
                    item_type=data["itemtypeid"],
                    item_id=item_id,
                    props=dict(props),
                )
                for item_id in data["itemids"]
            ]
        return [
            Event(
                **base,
                user=data["userid"],
                item_type=data.get("itemtypeid"),
                item_id=data.get("itemid"),
                props=props,
            )
        ]

    # -- refusals ------------------------------------------------------------------
    def rejection(self, customerid: str, code: str, rest: str, error: Any) -> Rejection:
        tenant = customerid if _valid_customer(customerid) else "invalid"
        known = code in PATH_SHAPES
        return Rejection(
            reason=error.reason,
            message=error.description or "refused",
            source=NAME,
            tenant=tenant,
            type=code if known else None,
            payload=self.redacted(customerid, code, rest, error),
        )

    def redacted(self, customerid: str, code: str, rest: str, error: Any) -> str:
        """The request line for the rejected log, with user ids replaced by their stored key.

        When the path does not have the event's shape, where the user id is cannot
        be told (any segment may be one, numbers included): the path is not logged.
        """
        head = f"{request.method} /api/{customerid[:_MAX_CUSTOMER_LENGTH]}/{code[:40]}"
        if isinstance(error, URITooLong) or code not in PATH_SHAPES:
            return f"{head}/... ({len(self.raw_uri(request))} characters)"
        query = self.redacted_query(request.query_string)
        segments = self.segments(rest, request, strict=False)
        shape = PATH_SHAPES[code]
        if len(segments) != len(shape):
            count = len([x for x in segments if x])
            return f"{head}/... ({count} path segment{'' if count == 1 else 's'})" + query
        parts = [
            f"<user:{self.pipeline.user_key(value)}>" if name in _USER_SEGMENTS and value else value
            for name, value in zip(shape, segments, strict=True)
        ]
        return f"{head}/{'/'.join(parts)}" + query

    def redacted_query(self, raw: bytes) -> str:
        """``?query`` as sent, but the value of a parameter named like a path
        parameter (``userid``, ...: refused, yet maybe a user id) hashed."""
        if not raw:
            return ""
        pairs = []
        for pair in raw.split(b"&"):
            name, sep, value = pair.partition(b"=")
            text = name.decode("latin-1")
            if sep and _decoded(name) in PATH_PARAMS:
                pairs.append(f"{text}=<user:{self.pipeline.user_key(_decoded(value))}>")
            else:
                pairs.append(pair.decode("latin-1"))
        return "?" + "&".join(pairs)


def _pairs(raw: bytes, what: str) -> list[tuple[str, str]]:
    """``name=value`` pairs of a query string or form body, refused unless UTF-8."""
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadPayload(f"{what} {_NOT_UTF8}") from None


def _require_utf8_path(req: Request) -> None:
    """Refuse a path that is not UTF-8 as sent (the raw URI's escapes) or as the
    server decoded it (``PATH_INFO``, bytes as latin-1 text per PEP 3333)."""
    env = req.environ
    raw = str(env.get("RAW_URI") or env.get("REQUEST_URI") or "")
    try:
        str(env.get("PATH_INFO", "")).encode("latin-1").decode("utf-8")
        unquote_to_bytes(urlsplit(raw).path).decode("utf-8")
    except UnicodeError:
        raise BadPayload(f"The URL path {_NOT_UTF8}") from None


class _RestConverter(PathConverter):
    """The path after the event code, empty segments included: werkzeug's ``path``
    cannot start with a slash, so ``click//1/2`` (no user id) would be a 404, not
    the dialect's 400 with a rejected-log entry."""

    regex = ".*?"
    part_isolating = False  # werkzeug infers True from a regex without a "/"


def _decoded(part: bytes) -> str:
    """One query-string name or value as the application sees it."""
    return unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8", "replace")


def _messages(messages: Any) -> str:
    """Flatten marshmallow's messages into lines of plain text."""
    if isinstance(messages, dict):
        lines = []
        for key, value in messages.items():
            text = _messages(value)
            lines.append(text if key in ("_schema", "itemids") or key in text else f"{key}: {text}")
        return "\n".join(lines)
    if isinstance(messages, list):
        return "\n".join(_messages(m) for m in messages)
    return str(messages)


def _text(body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body + "\n", status=status, mimetype="text/plain", headers=headers)


def create_blueprint(state: EventTrackState) -> Blueprint:
    reader = IbexaReader(state)
    pipeline = state.pipeline
    # Exact: werkzeug would answer an empty segment with a redirect to a path whose
    # segments have shifted.
    bp = ExactBlueprint("eventtrack_ibexa", __name__)
    # Registered before the routes that use it (deferred functions run in order).
    bp.record_once(lambda setup: setup.app.url_map.converters.__setitem__(_REST_CONVERTER, _RestConverter))
    route: dict[str, Any] = {"methods": ["GET", "POST"], "endpoint": "track"}

    # No defaults={"rest": ""}: werkzeug would redirect ``click/`` to ``click``.
    @bp.route("/api/<customerid>/<event>", **route)
    @bp.route(f"/api/<customerid>/<event>/<{_REST_CONVERTER}:rest>", **route)
    def track(customerid: str, event: str, rest: str = "") -> Response:
        code = event.lower()
        # HEAD is a safe method (link checkers, prefetchers): it is answered as a
        # GET would be, but records nothing.
        record = request.method != "HEAD"
        try:
            events = reader.read(customerid, code, rest)
        except _Refusal as error:
            if record:
                pipeline.submit([], [reader.rejection(customerid, code, rest, error)])
            headers = (
                {"WWW-Authenticate": 'Basic realm="ibexa"'} if isinstance(error, UnauthorizedError) else None
            )
            return _text(error.description or "refused", error.code or 400, headers)
        if record:
            pipeline.submit(events)
        return Response(status=204)

    # Ours, and the host app's MAX_CONTENT_LENGTH (read_body raises it as ours).
    @bp.errorhandler(PayloadTooLarge)
    def too_large(error: PayloadTooLarge) -> Response:
        args = request.view_args or {}
        customerid, code = str(args.get("customerid", "")), str(args.get("event", "")).lower()
        rejection = reader.rejection(customerid, code, str(args.get("rest", "")), error)
        try:
            pipeline.submit([], [rejection])
        except StoreUnavailable as exc:
            return unavailable(exc)
        return _text(error.description or "body too large", 413)

    @bp.errorhandler(StoreUnavailable)
    def unavailable(error: StoreUnavailable) -> Response:
        current_app.logger.warning("ibexa: %s", error.description)
        return _text(error.description or "unavailable", 503, unavailable_headers(error))

    bp.record_once(lambda setup: setup.app.extensions.__setitem__("eventtrack_ibexa", reader.settings))
    for name, function in links.JINJA_GLOBALS.items():
        bp.add_app_template_global(function, name)
    return bp
