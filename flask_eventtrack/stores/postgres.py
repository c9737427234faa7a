"""The shared store for several app servers: one PostgreSQL database.

psycopg 3 with one :class:`psycopg_pool.ConnectionPool` per process, opened on
first use, so a gunicorn master that preloads the app forks workers that each
open their own connections. Every write is one transaction. The write
directives that can race across processes (dedup keys, once-per windows,
identity links) first take transaction-scoped advisory locks, all of them in
one sorted order, so writers serialize on exactly the keys they share and can
never deadlock each other. Any connection failure (server down, restarted,
pool exhausted) is :class:`StoreUnavailable`, a 503: a 2xx always means committed.

Tables live in their own PostgreSQL schema (``EVENTTRACK_POSTGRES_SCHEMA``,
default ``eventtrack``), created and migrated on first use under an advisory
lock (see :mod:`flask_eventtrack.stores.postgres_schema`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ..errors import ConfigurationError, StoreUnavailable
from ..events import Event, Rejection, format_time, new_event_id, utcnow
from . import EventQuery, Store, WriteResult
from .postgres_schema import migrate

__all__ = ["PostgresStore"]

log = logging.getLogger("flask_eventtrack")

_COLUMNS = (
    'id, tenant, source, type, "user", user_kind, item_type, item_id,'
    " occurred_at, received_at, original_time, props, dedup_key, status"
)
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
_ON_KEY = " ON CONFLICT (tenant, source, dedup_key) WHERE dedup_key IS NOT NULL"
_INSERT_FIRST_WINS = _INSERT + _ON_KEY + " DO NOTHING"
# Replacing keeps the stored id and occurred_at; everything else is the new event's.
_INSERT_REPLACE = (
    _INSERT
    + _ON_KEY
    + " DO UPDATE SET user_kind=excluded.user_kind, item_type=excluded.item_type,"
    " item_id=excluded.item_id, received_at=excluded.received_at,"
    " original_time=excluded.original_time, props=excluded.props, status=excluded.status"
    " RETURNING id"
)
_INSERT_REJECTED = (
    "INSERT INTO rejected (id, tenant, source, type, reason, message, payload, received_at)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
)
_UPSERT_DEFINITION = """
INSERT INTO definitions AS d (tenant, source, name, first_seen, last_seen, count, params)
VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (tenant, source, name) DO UPDATE SET
  last_seen = GREATEST(d.last_seen, excluded.last_seen),
  count = d.count + excluded.count,
  params = (SELECT coalesce(jsonb_agg(v ORDER BY v COLLATE "C"), '[]') FROM (
      SELECT jsonb_array_elements_text(d.params)
      UNION SELECT jsonb_array_elements_text(excluded.params)) AS names(v))
"""
_WITHIN_WINDOW = (
    'SELECT 1 FROM events WHERE "user" = %s AND occurred_at > %s AND occurred_at < %s'
    " AND tenant = %s AND source = %s AND type = %s LIMIT 1"
)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ascii_dumps = json.JSONEncoder(separators=(",", ":")).encode
#: What makes the store unavailable (server down or restarting, connection cut,
#: pool exhausted, disk full, a read-only standby after failover). Other psycopg
#: errors are bugs and stay errors.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TEXT_FIELDS = (
    "tenant", "source", "type", "user", "user_kind", "item_type", "item_id",
    "original_time", "dedup_key", "status", "links_to",
)  # fmt: skip


def _ms(value: datetime) -> datetime:
    """Millisecond precision, as the SQLite store keeps (and compares) times."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


def _text(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _unstorable(text: str) -> bool:
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


def _clean(text: str | None) -> str | None:
    """Rejected-log text is kept even when it cannot be stored as sent."""
    if text is None or not _unstorable(text):
        return text
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _lock_key(*parts: str | None) -> int:
    """A stable signed 64-bit advisory-lock key, the same in every process."""
    data = "\x1f".join("\x00" if p is None else p for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def _event_row(event: Event, props: str) -> tuple[Any, ...]:
    return (
        event.id,
        event.tenant,
        event.source,
        event.type,
        event.user,
        event.user_kind,
        event.item_type,
        event.item_id,
        _ms(event.occurred_at),  # type: ignore[arg-type]
        _ms(event.received_at),  # type: ignore[arg-type]
        event.original_time,
        props,
        event.dedup_key,
        event.status,
    )


def _row_event(row: dict[str, Any]) -> Event:
    return Event(
        id=row["id"],
        tenant=row["tenant"],
        source=row["source"],
        type=row["type"],
        user=row["user"],
        user_kind=row["user_kind"],
        item_type=row["item_type"],
        item_id=row["item_id"],
        occurred_at=_utc(row["occurred_at"]),
        received_at=_utc(row["received_at"]),
        original_time=row["original_time"],
        props=row["props"],
        dedup_key=row["dedup_key"],
        status=row["status"],
    )


class PostgresStore(Store):
    """``postgresql://user:password@host:5432/dbname`` (any libpq URL; ``postgres://`` too)."""

    schemes = ("postgresql", "postgres")

    def __init__(
        self,
        url: str,
        *,
        payload_limit: int = 4096,
        retry_after: int = 5,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        connect_timeout: float = 5.0,
        schema: str = "eventtrack",
        **options: Any,
    ) -> None:
        super().__init__(url, payload_limit=payload_limit)
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise ConfigurationError(f"PostgreSQL store URL {url!r} is not a URL.")
        # SQLAlchemy-style "postgresql+psycopg://" means the same to libpq.
        self.conninfo = scheme.split("+", 1)[0] + "://" + rest
        if not _SCHEMA_NAME.match(str(schema)):
            raise ConfigurationError(
                f"EVENTTRACK_POSTGRES_SCHEMA must be a plain identifier (letters, digits, _), not {schema!r}."
            )
        self.schema = str(schema)
        self.min_size, self.max_size = int(pool_min_size), int(pool_max_size)
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1:
            raise ConfigurationError(
                "EVENTTRACK_POSTGRES_POOL_MIN_SIZE must be >= 0 and <= EVENTTRACK_POSTGRES_POOL_MAX_SIZE"
                f" (>= 1); got {self.min_size} and {self.max_size}."
            )
        self.connect_timeout = float(connect_timeout)
        if self.connect_timeout <= 0:
            raise ConfigurationError("EVENTTRACK_POSTGRES_CONNECT_TIMEOUT must be a positive number of seconds.")
        self.retry_after = int(retry_after)
        self._pool_obj: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_pid = 0
        self._lock = threading.Lock()

    # -- connections -----------------------------------------------------
    def _connect_kwargs(self) -> dict[str, Any]:
        # libpq's connect_timeout is whole seconds, at least 2.
        return {"connect_timeout": max(2, int(self.connect_timeout + 0.999))}

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Every connection works in our schema and in UTC."""
        path = sql.Identifier(self.schema).as_string(conn)
        conn.execute("SELECT set_config('search_path', %s, false), set_config('TimeZone', 'UTC', false)", (path,))
        conn.commit()

    def _pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """This process's pool, opened (and the schema migrated) on first use."""
        pid = os.getpid()
        if self._pool_pid != pid:
            # A forked child never touches the parent's pool: its sockets are
            # the parent's (psycopg does not close them from another pid).
            self._pool_obj, self._pool_pid, self._lock = None, pid, threading.Lock()
        pool = self._pool_obj
        if pool is None:
            with self._lock:
                pool = self._pool_obj
                if pool is None:
                    try:
                        with psycopg.connect(self.conninfo, **self._connect_kwargs()) as conn:
                            migrate(conn, self.schema)
                    except _UNAVAILABLE as exc:
                        raise self._unavailable(exc) from exc
                    pool = ConnectionPool(
                        self.conninfo,
                        kwargs=self._connect_kwargs(),
                        min_size=self.min_size,
                        max_size=self.max_size,
                        open=False,
                        configure=self._configure,
                        check=ConnectionPool.check_connection,
                        timeout=self.connect_timeout,
                        name="flask-eventtrack",
                    )
                    pool.open(wait=False)
                    self._pool_obj = pool
        return pool

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        log.error("PostgreSQL store could not commit or read: %s", exc)
        message = "The event store is unavailable; nothing was stored. Retry later."
        return StoreUnavailable(message, retry_after=self.retry_after)

    def _rows(self, query: str | sql.Composed, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            with self._pool().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query, args)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    # -- writing ---------------------------------------------------------
    def write(self, events: Sequence[Event], rejections: Sequence[Rejection] = ()) -> WriteResult:
        rejected = list(rejections)
        storable: list[tuple[Event, str]] = []
        for event in events:
            props = _dumps(event.props)
            if _unstorable(props) or any(
                isinstance(v, str) and _unstorable(v) for v in (getattr(event, f) for f in _TEXT_FIELDS)
            ):
                rejected.append(self._reject(event, "schema_violation", "a text value contains a NUL"
                                             " character or an unpaired surrogate, which cannot be stored"))
                continue
            storable.append((event, props))
        result = WriteResult()
        try:
            with self._pool().connection() as conn, conn.cursor() as cur:
                self._write(cur, storable, result, rejected)
                if rejected:
                    cur.executemany(_INSERT_REJECTED, [self._rejection_row(r) for r in rejected])
                if result.stored:
                    self._update_definitions(cur, result.stored)
            # leaving the pool's context manager committed the transaction
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        result.rejected = rejected
        return result

    def _write(
        self,
        cur: psycopg.Cursor[Any],
        storable: list[tuple[Event, str]],
        result: WriteResult,
        rejected: list[Rejection],
    ) -> None:
        plain = [(e, p) for e, p in storable if not (e.dedup_key or e.once_per or e.links_to)]
        directed = [(e, p) for e, p in storable if e.dedup_key or e.once_per or e.links_to]
        locks: set[int] = set()
        for e, _ in directed:
            if e.dedup_key:
                locks.add(_lock_key("dedup", e.tenant, e.source, e.dedup_key))
            if e.once_per is not None:
                locks.add(_lock_key("window", e.tenant, e.source, e.type, e.user))
            if e.links_to:
                locks.add(_lock_key("link", e.tenant, e.user, e.links_to))
        if locks:
            # Held until commit; one sorted order in every process: no deadlocks.
            cur.executemany("SELECT pg_advisory_xact_lock(%s)", [(k,) for k in sorted(locks)])
        if plain:
            with cur.copy(f"COPY events ({_COLUMNS}) FROM STDIN") as copy:
                for e, p in plain:
                    copy.write_row(_event_row(e, p))
            result.stored.extend(e for e, _ in plain)
        for event, props in directed:
            self._write_directed(cur, event, props, result, rejected)

    def _write_directed(
        self,
        cur: psycopg.Cursor[Any],
        event: Event,
        props: str,
        result: WriteResult,
        rejected: list[Rejection],
    ) -> None:
        """Write one event that carries a dedup key, a window or a link."""
        row = _event_row(event, props)
        if event.once_per is not None:
            at = _ms(event.occurred_at or utcnow())
            cur.execute(
                _WITHIN_WINDOW,
                (event.user, at - event.once_per, at + event.once_per, event.tenant, event.source, event.type),
            )
            if cur.fetchone():
                minutes = event.once_per.total_seconds() / 60
                message = f"a {event.type!r} event for this user was already recorded within {minutes:g} minutes"
                rejected.append(self._reject(event, "duplicate", message))
                return
        if event.dedup_key and event.replace:
            cur.execute(_INSERT_REPLACE, row)
            (kept_id,) = cur.fetchone()  # type: ignore[misc]
            if kept_id != event.id:
                event.id = kept_id
                result.replaced.append(event)
        elif event.dedup_key:
            cur.execute(_INSERT_FIRST_WINS, row)
            if cur.rowcount == 0:
                message = f"an event with key {event.dedup_key!r} was already recorded"
                rejected.append(self._reject(event, "duplicate", message))
                return
        else:
            cur.execute(_INSERT, row)
        if event.links_to:
            cur.execute(
                'INSERT INTO identity_links (tenant, "user", target, created_at) VALUES (%s,%s,%s,%s)'
                " ON CONFLICT DO NOTHING",
                (event.tenant, event.user, event.links_to, row[9]),
            )
        result.stored.append(event)

    @staticmethod
    def _reject(event: Event, reason: str, message: str) -> Rejection:
        return Rejection(
            reason=reason,
            message=message,
            source=event.source,
            tenant=event.tenant,
            type=event.type,
            payload=(_ascii_dumps if reason != "duplicate" else _dumps)(event.to_dict()),
            received_at=event.received_at,
            id=new_event_id(),
        )

    def _rejection_row(self, r: Rejection) -> tuple[Any, ...]:
        return (
            r.id or new_event_id(),
            _clean(r.tenant),
            _clean(r.source),
            _clean(r.type),
            _clean(r.reason),
            _clean(r.message),
            _clean(self.cap_payload(r.payload)),
            _ms(r.received_at or utcnow()),
        )

    @staticmethod
    def _update_definitions(cur: psycopg.Cursor[Any], events: Sequence[Event]) -> None:
        groups: dict[tuple[str, str, str], list[Any]] = {}
        for e in events:
            seen = _ms(e.received_at)  # type: ignore[arg-type]
            group = groups.get((e.tenant, e.source, e.type))
            if group is None:
                groups[(e.tenant, e.source, e.type)] = [seen, seen, 1, set(e.props)]
            else:
                group[1] = max(group[1], seen)
                group[2] += 1
                group[3].update(e.props)
        # Sorted: concurrent writers lock catalog rows in one order.
        cur.executemany(
            _UPSERT_DEFINITION,
            [
                (t, s, n, first, last, count, _dumps(sorted(params)))
                for (t, s, n), (first, last, count, params) in sorted(groups.items())
            ],
        )

    # -- reading ---------------------------------------------------------
    @staticmethod
    def _where(query: EventQuery, *, rejected: bool = False) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        time_column = "received_at" if rejected else "occurred_at"
        for column in ("tenant", "source", "type"):
            value = getattr(query, column)
            if value is not None:
                clauses.append(f"{column} = %s")
                args.append(value)
        if not rejected:
            if query.users is not None:
                clauses.append('"user" = ANY(%s)')
                args.append(list(query.users))
            for column in ("item_type", "item_id"):
                value = getattr(query, column)
                if value is not None:
                    clauses.append(f"{column} = %s")
                    args.append(value)
        if query.since is not None:
            clauses.append(f"{time_column} >= %s")
            args.append(_ms(query.since))
        if query.until is not None:
            clauses.append(f"{time_column} < %s")
            args.append(_ms(query.until))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def _select(self, table: str, query: EventQuery, order: str) -> Iterator[dict[str, Any]]:
        where, args = self._where(query, rejected=table == "rejected")
        statement = f"SELECT * FROM {table}{where} ORDER BY {order} LIMIT %s OFFSET %s"
        args += [query.limit, query.offset]
        try:
            # A server-side cursor: a long export streams instead of loading everything.
            with self._pool().connection() as conn, conn.cursor(
                f"eventtrack_{table}", row_factory=dict_row
            ) as cur:
                cur.itersize = 500
                cur.execute(statement, args)
                yield from cur
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def iter_events(self, query: EventQuery) -> Iterator[Event]:
        direction = "DESC" if query.newest_first else "ASC"
        for row in self._select("events", query, f"occurred_at {direction}, id {direction}"):
            yield _row_event(row)

    def count_events(self, query: EventQuery) -> int:
        where, args = self._where(query)
        return int(self._rows(f"SELECT count(*) AS n FROM events{where}", args)[0]["n"])

    def iter_rejected(self, query: EventQuery) -> Iterator[Rejection]:
        for row in self._select("rejected", query, "received_at, id"):
            yield Rejection(
                id=row["id"],
                tenant=row["tenant"],
                source=row["source"],
                type=row["type"],
                reason=row["reason"],
                message=row["message"],
                payload=row["payload"],
                received_at=_utc(row["received_at"]),
            )

    def linked_users(self, user: str) -> list[str]:
        rows = self._rows(
            "WITH RECURSIVE linked(u) AS (SELECT %s::text COLLATE \"C\" UNION"
            ' SELECT l."user" FROM identity_links l JOIN linked ON l.target = linked.u)'
            " SELECT u FROM linked",
            (user,),
        )
        return [row["u"] for row in rows]

    def stats(self) -> list[dict[str, Any]]:
        rows = self._rows(
            """
            SELECT tenant, source, type, sum(accepted) AS accepted, sum(rejected) AS rejected
            FROM (
              SELECT tenant, source, type, count(*) AS accepted, 0 AS rejected
              FROM events GROUP BY tenant, source, type
              UNION ALL
              SELECT tenant, source, coalesce(type, ''), 0, count(*)
              FROM rejected GROUP BY tenant, source, type
            ) AS counts GROUP BY tenant, source, type ORDER BY tenant, source, type
            """
        )
        return [{**row, "accepted": int(row["accepted"]), "rejected": int(row["rejected"])} for row in rows]

    def definitions(self, tenant: str | None = None) -> list[dict[str, Any]]:
        where = " WHERE tenant = %s" if tenant is not None else ""
        rows = self._rows(
            f"SELECT * FROM definitions{where} ORDER BY tenant, source, name",
            [tenant] if tenant is not None else [],
        )
        return [
            {**row, "first_seen": _text(row["first_seen"]), "last_seen": _text(row["last_seen"]),
             "count": int(row["count"])}
            for row in rows
        ]  # fmt: skip

    # -- keys ------------------------------------------------------------
    def add_key(self, key_id: str, tenant: str, kind: str, key_hash: str, label: str) -> None:
        self._rows(
            "INSERT INTO api_keys (id, tenant, kind, key_hash, label, created_at) VALUES (%s,%s,%s,%s,%s,%s)",
            (key_id, tenant, kind, key_hash, label, utcnow()),
        )

    @staticmethod
    def _key_row(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "created_at": _text(row["created_at"]), "revoked_at": _text(row["revoked_at"])}

    def find_key(self, key_hash: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM api_keys WHERE key_hash = %s", (key_hash,))
        return self._key_row(rows[0]) if rows else None

    def list_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        where = " WHERE tenant = %s" if tenant is not None else ""
        rows = self._rows(
            f"SELECT id, tenant, kind, label, created_at, revoked_at FROM api_keys{where} ORDER BY created_at",
            [tenant] if tenant is not None else [],
        )
        return [self._key_row(row) for row in rows]

    def revoke_key(self, key_id: str) -> bool:
        rows = self._rows(
            "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL RETURNING id",
            (utcnow(), key_id),
        )
        return bool(rows)

    # -- life cycle --------------------------------------------------------
    def check(self) -> None:
        self._rows("SELECT 1 FROM events LIMIT 1")

    def close(self) -> None:
        pool = self._pool_obj
        if pool is not None and self._pool_pid == os.getpid():
            pool.close()
        self._pool_obj = None

    # -- profiles (profile events API) -------------------------------------
    def upsert_profile(
        self,
        tenant: str,
        user_key: str,
        attributes: dict[str, Any],
        email: str | None = None,
        *,
        create: bool = True,
    ) -> dict[str, Any] | None:
        now = utcnow()
        try:
            with self._pool().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                # The user's lock, held to commit: concurrent merges never lose keys.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("profile", tenant, user_key),))
                cur.execute("SELECT * FROM profiles WHERE tenant = %s AND user_key = %s", (tenant, user_key))
                row = cur.fetchone()
                if row is None and not create:
                    return None
                merged: dict[str, Any] = {} if row is None else row["attributes"]
                for key, value in attributes.items():
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                if row is None:
                    cur.execute(
                        "INSERT INTO profiles (tenant, user_key, email, attributes, created_at, updated_at)"
                        " VALUES (%s,%s,%s,%s,%s,%s)",
                        (tenant, user_key, email, _dumps(merged), now, now),
                    )
                    profile = {"tenant": tenant, "user_key": user_key, "email": email, "created_at": now}
                else:
                    email = email if email is not None else row["email"]
                    cur.execute(
                        "UPDATE profiles SET email = %s, attributes = %s, updated_at = %s"
                        " WHERE tenant = %s AND user_key = %s",
                        (email, _dumps(merged), now, tenant, user_key),
                    )
                    profile = {**row, "email": email}
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        return {
            **profile,
            "created_at": _text(profile["created_at"]),
            "attributes": merged,
            "updated_at": _text(now),
            "created": row is None,
        }

    def get_profile(self, tenant: str, user_key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM profiles WHERE tenant = %s AND user_key = %s", (tenant, user_key))
        if not rows:
            return None
        row = rows[0]
        return {**row, "created_at": _text(row["created_at"]), "updated_at": _text(row["updated_at"])}
