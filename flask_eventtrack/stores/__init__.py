"""The store contract, and the registry that picks a store by URL scheme.

A store keeps canonical events, the rejected log, identity links, event
definitions and API keys. ``write`` is the only way in for events and it is
atomic: when it returns, everything it was given is committed (or it raised
:class:`~flask_eventtrack.errors.StoreUnavailable` and nothing was).
"""

from __future__ import annotations

import abc
import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .._json import dumps, escapes_nul
from ..errors import ConfigurationError
from ..events import Event, Rejection, new_event_id, utcnow

__all__ = ["EventQuery", "Store", "WriteResult", "clean", "merge_attributes", "store_from_url", "unstorable"]

#: scheme -> "module:Class"; imported only when a URL asks for it.
SCHEMES: dict[str, str] = {
    "sqlite": "flask_eventtrack.stores.sqlite:SQLiteStore",
    "postgresql": "flask_eventtrack.stores.postgres:PostgresStore",
    "postgres": "flask_eventtrack.stores.postgres:PostgresStore",
}


def unstorable(text: str) -> bool:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold a lone surrogate."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def merge_attributes(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Profile attributes ``stored`` with ``changes`` applied: shallow, and a key set
    to None is removed (the profile events API's merge rule, for every store)."""
    merged = dict(stored)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def clean(text: str | None) -> str | None:
    """Rejected-log text is kept even when it cannot be stored as sent."""
    if text is None or not unstorable(text):
        return text
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


#: Accepted and rejected counts by tenant, source and type (``Store.stats``), in both SQL stores.
STATS_SQL = """
    SELECT tenant, source, type, sum(accepted) AS accepted, sum(rejected) AS rejected
    FROM (
      SELECT tenant, source, type, count(*) AS accepted, 0 AS rejected
      FROM events GROUP BY tenant, source, type
      UNION ALL
      SELECT tenant, source, coalesce(type, ''), 0, count(*)
      FROM rejected GROUP BY tenant, source, type
    ) AS counts GROUP BY tenant, source, type ORDER BY tenant, source, type
"""

#: Parameter names kept per event definition: a client sending ever new keys
#: must not grow one catalog row (and each worker's memory) without bound.
MAX_DEFINITION_PARAMS = 256
#: Names (event types and their parameter names) each process remembers having
#: put in the catalog: ~1.5 MB for names of ordinary length. Past this many (a
#: client inventing types or keys) it forgets them all and starts over; the
#: catalog's upsert merges, so forgetting costs only a redundant write.
MAX_KNOWN_NAMES = 16384


def ceil_ms(value: datetime) -> datetime | None:
    """``value`` rounded up to the millisecond, the precision of stored times, so
    ``>= since`` and ``< until`` stay exact (truncating would move the bound);
    None when that is past the last time a datetime holds. Aware times are rounded
    in UTC: local-clock arithmetic would move a bound by an hour around DST."""
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # before year 1 or after 9999 once in UTC
            return None if value.year > 1 else datetime.min.replace(tzinfo=UTC)  # before any stored time
    extra = value.microsecond % 1000
    if not extra:
        return value
    try:
        return value + timedelta(microseconds=1000 - extra)
    except OverflowError:
        return None


def _by_tenant(rows: Iterable[Sequence[str]]) -> dict[str, set[str]]:
    """``{tenant: users}`` from ``(tenant, user)`` rows."""
    found: dict[str, set[str]] = {}
    for tenant, user in rows:
        found.setdefault(tenant, set()).add(user)
    return found


def across_tenants(store: Store, user: str) -> tuple[list[str], Callable[[Event], bool]]:
    """For reading ``user``'s events in every tenant: the ids to query (those any
    tenant's logins link to ``user``) and whether an event is the user's through its
    *own* tenant's links. One read, before the events are streamed: a nested read
    would wait for the connection the stream holds (a pool may have only one)."""
    linked = store.linked_users_by_tenant(user)
    users = sorted({user}.union(*linked.values()))
    return users, lambda event: event.user in linked.get(event.tenant, (user,))


@dataclass
class EventQuery:
    """Filters for reading events back; every field is optional."""

    tenant: str | None = None
    source: str | None = None
    type: str | None = None
    #: hashed user keys (as stored); see :meth:`Store.linked_users`
    users: Sequence[str] | None = None
    item_type: str | None = None
    item_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: newest first instead of oldest first
    newest_first: bool = False
    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            _check_bound(name, getattr(self, name))


def _check_bound(name: str, value: Any) -> None:
    """As emit() refuses them: a naive bound would be local time to SQLite and UTC to
    PostgreSQL, so the same query would read different events."""
    if value is None:
        return
    if not isinstance(value, datetime):
        raise TypeError(f"EventQuery.{name} must be a datetime, not {type(value).__name__}.")
    if value.utcoffset() is None:
        raise ValueError(f"EventQuery.{name} must be an aware datetime (with a tzinfo), not {value}.")


@dataclass
class WriteResult:
    """What a write kept: stored events, and rejections (given or found)."""

    stored: list[Event] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: events that replaced an earlier one (``Event.replace``)
    replaced: list[Event] = field(default_factory=list)


class Store(abc.ABC):
    """Base class of every store. Subclasses are thread-safe and fork-safe."""

    schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, url: str, *, payload_limit: int = 4096, **options: Any) -> None:
        self.url = url
        self.payload_limit = payload_limit
        #: (tenant, source, type) -> parameter names this process already put in
        #: the definitions catalog; see :meth:`new_definitions`.
        self._known: dict[tuple[str, str, str], frozenset[str]] = {}
        self._known_names = 0  # types and parameter names in _known

    # -- helpers shared by the SQL stores ------------------------------------
    def encode(self, events: Sequence[Event]) -> tuple[list[tuple[Event, str]], list[Rejection]]:
        """Each event with its ``props`` as JSON text, and a rejection for each event
        no store can keep as it is: ``props`` that are not JSON (NaN, a ``Decimal``,
        a ``datetime``), or text with a NUL character or an unpaired surrogate.

        The dialects refuse such input before; this catches what a host hook or
        ``emit`` put there, the same way in every store, instead of a 500.
        """
        storable: list[tuple[Event, str]] = []
        rejected: list[Rejection] = []
        for event in events:
            try:
                props = dumps(event.props)
            except (ValueError, TypeError, RecursionError) as exc:
                message = f"props cannot be stored as JSON: {exc}"
                rejected.append(self.reject_event(event, "schema_violation", message))
                continue
            if escapes_nul(props) or unstorable(
                f"{event.tenant}{event.source}{event.type}{event.user}{event.user_kind}{event.item_type}"
                f"{event.item_id}{event.original_time}{event.dedup_key}{event.status}{event.links_to}{props}"
            ):
                message = (
                    "a text value contains a NUL character or an unpaired surrogate, which cannot be stored"
                )
                rejected.append(self.reject_event(event, "schema_violation", message))
                continue
            storable.append((event, props))
        return storable, rejected

    @staticmethod
    def reject_event(event: Event, reason: str, message: str) -> Rejection:
        """A rejected-log entry for ``event``, refused by the store itself."""
        # ASCII with str() for what JSON has no form of: any event can be logged.
        payload = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
        return Rejection(
            reason=reason,
            message=message,
            source=event.source,
            tenant=event.tenant,
            type=event.type,
            payload=payload,
            received_at=event.received_at,
            id=new_event_id(),
        )

    def new_definitions(self, events: Sequence[Event]) -> list[tuple[tuple[str, str, str], frozenset[str]]]:
        """The (type, parameter names) of ``events`` the catalog may not have yet.

        The common case, a known type with known parameters, returns nothing, so
        the write path touches the catalog only when something is new. Sorted,
        so concurrent writers lock catalog rows in one order.
        """
        groups: dict[tuple[str, str, str], set[str]] = {}
        for e in events:
            group = (e.tenant, e.source, e.type)
            params = groups.get(group)
            if params is None:
                groups[group] = set(e.props)
            elif e.props:
                params.update(e.props)
        known = self._known
        new = []
        for group, params in groups.items():
            have = known.get(group)
            if have is None or not params <= have:
                room = MAX_DEFINITION_PARAMS - len(have or ())
                if have is not None and room <= 0:
                    continue  # the catalog keeps the first names only
                extra = sorted(params - (have or frozenset()))[: max(room, 0)]
                new.append((group, frozenset(extra)))
        return sorted(new)

    def remember_definitions(self, new: Sequence[tuple[tuple[str, str, str], frozenset[str]]]) -> None:
        """Call after COMMIT with what :meth:`new_definitions` returned."""
        known = self._known
        for group, params in new:
            if self._known_names + len(params) + 1 > MAX_KNOWN_NAMES:
                known.clear()
                self._known_names = 0
            have = known.get(group)
            known[group] = params if have is None else have | params
            self._known_names += len(params) + (have is None)

    @staticmethod
    def where_clause(
        query: EventQuery,
        *,
        rejected: bool,
        param: str,
        users: Callable[[Sequence[str]], tuple[str, list[Any]]],
        time_value: Callable[[datetime], Any],
    ) -> tuple[str, list[Any]]:
        """`` WHERE ...`` and its arguments for ``query``; column names are fixed,
        only values are parameters. ``param`` is the driver's placeholder and
        ``users`` renders the user filter (``IN (...)`` or ``= ANY(...)``)."""
        clauses: list[str] = []
        args: list[Any] = []
        for column in ("tenant", "source", "type"):
            value = getattr(query, column)
            if value is not None:
                clauses.append(f"{column} = {param}")
                args.append(value)
        if not rejected:
            if query.users is not None:
                clause, values = users(query.users)
                clauses.append(clause)
                args.extend(values)
            for column in ("item_type", "item_id"):
                value = getattr(query, column)
                if value is not None:
                    clauses.append(f"{column} = {param}")
                    args.append(value)
        time_column = "received_at" if rejected else "occurred_at"
        for name, bound, operator in (("since", query.since, ">="), ("until", query.until, "<")):
            _check_bound(name, bound)  # again: a field set after the query was made
            if bound is None:
                continue
            at = ceil_ms(bound)
            if at is None:  # later than any storable time: all of them are before it
                if operator == ">=":
                    clauses.append("1 = 0")
                continue
            clauses.append(f"{time_column} {operator} {param}")
            args.append(time_value(at))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    # -- writing ---------------------------------------------------------
    @abc.abstractmethod
    def write(self, events: Sequence[Event], rejections: Sequence[Rejection] = ()) -> WriteResult:
        """Commit events and rejections in one transaction, applying each
        event's write directives (``dedup_key``/``replace``, ``once_per``,
        ``links_to``); a discarded event becomes a ``duplicate`` rejection."""

    # -- reading ---------------------------------------------------------
    @abc.abstractmethod
    def iter_events(self, query: EventQuery) -> Iterator[Event]:
        """Events matching ``query``, oldest first unless ``newest_first``."""

    @abc.abstractmethod
    def count_events(self, query: EventQuery) -> int:
        """How many events match ``query`` (ignores limit/offset)."""

    @abc.abstractmethod
    def iter_rejected(self, query: EventQuery) -> Iterator[Rejection]:
        """The rejected log; ``users``/``item_*`` filters do not apply."""

    @abc.abstractmethod
    def linked_users(self, user: str, tenant: str | None = None) -> list[str]:
        """``user`` and every user that was linked to it, directly or through a
        chain of links (identity stitching). With ``tenant``, only that tenant's
        links are followed: a tenant never stitches another tenant's users.
        ``None`` follows every tenant's links (operator tools only)."""

    @abc.abstractmethod
    def linked_users_by_tenant(self, user: str) -> dict[str, set[str]]:
        """:meth:`linked_users` of ``user`` for each tenant whose own links reach it,
        in one read: a caller that filters a stream of events per tenant must not
        read again while the stream holds a connection (a pool may have only one).
        A tenant that is not listed links nothing to ``user``: ``{user}``."""

    @abc.abstractmethod
    def stats(self) -> list[dict[str, Any]]:
        """Rows of ``tenant, source, type, accepted, rejected``."""

    @abc.abstractmethod
    def definitions(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The event-definition catalog: ``tenant, source, name, first_seen,
        last_seen, count, params`` (parameter names seen)."""

    # -- API keys (stored hashed) ------------------------------------------
    @abc.abstractmethod
    def add_key(self, key_id: str, tenant: str, kind: str, key_hash: str, label: str) -> None:
        """Remember a key by its hash."""

    @abc.abstractmethod
    def find_key(self, key_hash: str) -> dict[str, Any] | None:
        """The key row for a hash, revoked or not."""

    @abc.abstractmethod
    def get_key(self, key_id: str) -> dict[str, Any] | None:
        """The key row with this id (without its hash), revoked or not: an
        indexed lookup, cheap enough for every request (token revocation)."""

    @abc.abstractmethod
    def list_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Key rows (never the secret)."""

    @abc.abstractmethod
    def revoke_key(self, key_id: str) -> bool:
        """Mark a key revoked; False when there is no such key."""

    # -- life cycle ------------------------------------------------------
    @abc.abstractmethod
    def check(self) -> None:
        """Raise :class:`StoreUnavailable` if the store cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional: a store may hold nothing to release
        """Release connections held by this process."""

    def rejection_row(self, r: Rejection, time_value: Callable[[datetime], Any]) -> tuple[Any, ...]:
        """The rejected-log row of ``r``: text made storable, payload capped."""
        return (
            r.id or new_event_id(),
            clean(r.tenant),
            clean(r.source),
            clean(r.type),
            clean(r.reason),
            clean(r.message),
            clean(self.cap_payload(r.payload)),
            time_value(r.received_at or utcnow()),
        )

    def cap_payload(self, payload: str | None) -> str | None:
        """Rejected payloads are kept, but only up to ``payload_limit`` chars."""
        if payload is not None and len(payload) > self.payload_limit:
            return payload[: self.payload_limit] + "...[truncated]"
        return payload

    # -- profiles (profile events API) -------------------------------------
    # A profile row: ``tenant``, ``user_key`` (hashed, as events store it),
    # ``email`` (raw e-mail or None: only kept when the host app allows it),
    # ``attributes`` (dict), ``created_at``/``updated_at`` (ISO 8601 UTC text).
    @abc.abstractmethod
    def upsert_profile(
        self,
        tenant: str,
        user_key: str,
        attributes: dict[str, Any],
        email: str | None = None,
        *,
        create: bool = True,
    ) -> dict[str, Any] | None:
        """Create the profile or merge ``attributes`` into it, atomically.

        Merge is shallow: each key replaces the stored value, a key whose
        value is None is removed, other stored keys stay. ``email`` replaces
        the stored e-mail when not None. Concurrent calls for one user must
        not lose each other's keys. With ``create=False`` a missing profile is
        not created and None is returned; otherwise the profile row after
        the write, plus ``created`` (True when this call made it).
        """

    @abc.abstractmethod
    def get_profile(self, tenant: str, user_key: str) -> dict[str, Any] | None:
        """The profile row of ``user_key`` in ``tenant``, or None."""


def store_from_url(url: str, **options: Any) -> Store:
    """Build the store for ``url``.

    :raises ConfigurationError: unknown scheme, or its driver is not installed.
    """
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    target = SCHEMES.get(scheme)
    if target is None:
        raise ConfigurationError(
            f"Unknown store URL scheme {scheme!r} in {url!r}. Known schemes: {', '.join(sorted(SCHEMES))}."
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"The {scheme!r} store needs an optional dependency: {exc}."
            " Install it with: pip install 'flask-eventtrack[postgres]'"
        ) from exc
    cls: type[Store] = getattr(module, class_name)
    return cls(url, **options)
