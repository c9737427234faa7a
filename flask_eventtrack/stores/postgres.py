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
lock (see :mod:`flask_eventtrack.stores.postgres_schema`). Connections and
retries: :mod:`flask_eventtrack.stores.postgres_pool`; SQL text:
:mod:`flask_eventtrack.stores.postgres_sql`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .._json import dumps
from ..errors import ConfigurationError
from ..events import Event, Rejection, utcnow
from . import STATS_SQL, EventQuery, Store, WriteResult, _by_tenant, merge_attributes
from .postgres_pool import Connections
from .postgres_sql import (
    COLUMNS,
    DEFINITIONS,
    INSERT,
    INSERT_FIRST_WINS,
    INSERT_REJECTED,
    INSERT_REPLACE,
    UPSERT_DEFINITION,
    WITHIN_WINDOW,
    as_text,
    as_utc,
    event_row,
    lock_key,
    to_ms,
)

__all__ = ["PostgresStore"]

#: Plain batches larger than this go in with COPY (which cannot be pipelined).
_COPY_FROM = 100
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


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
        try:
            conninfo_to_dict(self.conninfo)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"EVENTTRACK_STORE_URL is not a valid PostgreSQL URL: {exc}") from None
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
            raise ConfigurationError(
                "EVENTTRACK_POSTGRES_CONNECT_TIMEOUT must be a positive number of seconds."
            )
        self.retry_after = int(retry_after)
        self._db = Connections(
            self.conninfo,
            self.schema,
            min_size=self.min_size,
            max_size=self.max_size,
            connect_timeout=self.connect_timeout,
            retry_after=self.retry_after,
        )

    def _rows(self, query: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._db.rows(query, args)

    # -- writing ---------------------------------------------------------
    def write(self, events: Sequence[Event], rejections: Sequence[Rejection] = ()) -> WriteResult:
        storable, unstorable_events = self.encode(events)
        rejections_in = [*rejections, *unstorable_events]
        ids = [event.id for event, _ in storable]

        def work(cur: psycopg.Cursor[Any]) -> tuple[WriteResult, list[Rejection], list[Any]]:
            for (event, _), event_id in zip(storable, ids, strict=True):
                event.id = event_id  # a retry starts over: undo what a replace changed
            result, rejected = WriteResult(), list(rejections_in)
            self._write(cur, storable, result, rejected)
            if rejected:
                cur.executemany(INSERT_REJECTED, [self._rejection_row(r) for r in rejected])
            return result, rejected, self._update_definitions(cur, result.stored) if result.stored else []

        # A small batch without directives (which read results as they go) is sent
        # in one pipelined round trip before COMMIT; large ones go in with COPY.
        pipeline = len(storable) <= _COPY_FROM and not any(e.has_directives for e, _ in storable)
        result, rejected, new_definitions = self._db.transact(work, pipeline=pipeline)
        self.remember_definitions(new_definitions)  # committed: remember them
        result.rejected = rejected
        return result

    def _write(
        self,
        cur: psycopg.Cursor[Any],
        storable: list[tuple[Event, str]],
        result: WriteResult,
        rejected: list[Rejection],
    ) -> None:
        plain = [(e, p) for e, p in storable if not e.has_directives]
        directed = [(e, p) for e, p in storable if e.has_directives]
        locks: set[int] = set()
        for e, _ in directed:
            if e.dedup_key:
                locks.add(lock_key("dedup", e.tenant, e.source, e.dedup_key))
            if e.once_per is not None:
                locks.add(lock_key("window", e.tenant, e.source, e.type, e.user))
            if e.links_to:
                locks.add(lock_key("link", e.tenant, e.user, e.links_to))
            if e.merge_profile:
                locks.add(lock_key("profile", e.tenant, e.user))
        if locks:
            # Held until commit; one sorted order in every process: no deadlocks.
            cur.executemany("SELECT pg_advisory_xact_lock(%s)", [(k,) for k in sorted(locks)])
        if len(plain) > _COPY_FROM:
            with cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
                for e, p in plain:
                    copy.write_row(event_row(e, p))
        elif plain:
            cur.executemany(INSERT, [event_row(e, p) for e, p in plain])
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
        """Write one event that carries a dedup key, a window, a link or a profile merge."""
        row = event_row(event, props)
        if event.once_per is not None:
            at = to_ms(event.occurred_at or utcnow())
            cur.execute(
                WITHIN_WINDOW,
                (
                    event.user,
                    at - event.once_per,
                    at + event.once_per,
                    event.tenant,
                    event.source,
                    event.type,
                ),
            )
            if cur.fetchone():
                minutes = event.once_per.total_seconds() / 60
                message = (
                    f"a {event.type!r} event for this user was already recorded within {minutes:g} minutes"
                )
                rejected.append(self.reject_event(event, "duplicate", message))
                return
        if event.dedup_key and event.replace:
            cur.execute(INSERT_REPLACE, row)
            kept_id, kept_at = cur.fetchone()  # type: ignore[misc]
            if kept_id != event.id:  # replaced: hooks see the stored identity and time
                event.id, event.occurred_at = kept_id, as_utc(kept_at)
                result.replaced.append(event)
        elif event.dedup_key:
            cur.execute(INSERT_FIRST_WINS, row)
            if cur.rowcount == 0:
                message = f"an event with key {event.dedup_key!r} was already recorded"
                rejected.append(self.reject_event(event, "duplicate", message))
                return
        else:
            cur.execute(INSERT, row)
        if event.links_to:
            cur.execute(
                'INSERT INTO identity_links (tenant, "user", target, created_at) VALUES (%s,%s,%s,%s)'
                " ON CONFLICT DO NOTHING",
                (event.tenant, event.user, event.links_to, row[9]),
            )
        if event.merge_profile and event.user:
            attributes, email = event.merge_profile
            self._merge_profile(cur, event.tenant, event.user, attributes, email, create=False)
        result.stored.append(event)

    def _rejection_row(self, r: Rejection) -> tuple[Any, ...]:
        return self.rejection_row(r, to_ms)

    def _update_definitions(self, cur: psycopg.Cursor[Any], events: Sequence[Event]) -> list[Any]:
        """Record new types and parameter names; returns what to remember after COMMIT."""
        new = self.new_definitions(events)
        if new:
            seen = to_ms(events[0].received_at)  # type: ignore[arg-type]
            cur.executemany(
                UPSERT_DEFINITION, [(*group, seen, dumps(sorted(params))) for group, params in new]
            )
        return new

    # -- reading ---------------------------------------------------------
    @classmethod
    def _where(cls, query: EventQuery, *, rejected: bool = False) -> tuple[str, list[Any]]:
        return cls.where_clause(
            query,
            rejected=rejected,
            param="%s",
            users=lambda users: ('"user" = ANY(%s)', [list(users)]),
            time_value=to_ms,
        )

    def _select(self, table: str, query: EventQuery, order: str) -> Iterator[dict[str, Any]]:
        where, args = self._where(query, rejected=table == "rejected")
        statement = f"SELECT * FROM {table}{where} ORDER BY {order} LIMIT %s OFFSET %s"
        args += [query.limit, query.offset]
        return self._db.stream(f"eventtrack_{table}", statement, args)

    def iter_events(self, query: EventQuery) -> Iterator[Event]:
        direction = "DESC" if query.newest_first else "ASC"
        for row in self._select("events", query, f"occurred_at {direction}, id {direction}"):
            yield Event.from_row(row, time=as_utc, props=lambda value: value)

    def count_events(self, query: EventQuery) -> int:
        where, args = self._where(query)
        return int(self._rows(f"SELECT count(*) AS n FROM events{where}", args)[0]["n"])

    def iter_rejected(self, query: EventQuery) -> Iterator[Rejection]:
        for row in self._select("rejected", query, "received_at, id"):
            yield Rejection.from_row(row, time=as_utc)

    def linked_users(self, user: str, tenant: str | None = None) -> list[str]:
        rows = self._rows(
            'WITH RECURSIVE linked(u) AS (SELECT %s::text COLLATE "C" UNION'
            ' SELECT l."user" FROM identity_links l JOIN linked ON l.target = linked.u'
            " WHERE %s::text IS NULL OR l.tenant = %s)"
            " SELECT u FROM linked",
            (user, tenant, tenant),
        )
        return [row["u"] for row in rows]

    def linked_users_by_tenant(self, user: str) -> dict[str, set[str]]:
        rows = self._rows(
            "WITH RECURSIVE linked(tenant, u) AS ("
            ' SELECT tenant, %s::text COLLATE "C" FROM identity_links WHERE target = %s'
            ' UNION SELECT l.tenant, l."user" FROM identity_links l'
            " JOIN linked ON l.target = linked.u AND l.tenant = linked.tenant)"
            " SELECT tenant, u FROM linked",
            (user, user),
        )
        return _by_tenant((row["tenant"], row["u"]) for row in rows)

    def stats(self) -> list[dict[str, Any]]:
        rows = self._rows(STATS_SQL)
        return [{**row, "accepted": int(row["accepted"]), "rejected": int(row["rejected"])} for row in rows]

    def definitions(self, tenant: str | None = None) -> list[dict[str, Any]]:
        if tenant is None:
            statement, args = DEFINITIONS.format(only=""), []
        else:
            statement, args = (
                DEFINITIONS.format(only=" WHERE tenant = %s") + " WHERE d.tenant = %s",
                [tenant] * 2,
            )
        rows = self._rows(statement + " ORDER BY d.tenant, d.source, d.name", args)
        return [
            {**row, "first_seen": as_text(row["first_seen"]), "last_seen": as_text(row["last_seen"]),
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
        return {**row, "created_at": as_text(row["created_at"]), "revoked_at": as_text(row["revoked_at"])}

    def find_key(self, key_hash: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM api_keys WHERE key_hash = %s", (key_hash,))
        return self._key_row(rows[0]) if rows else None

    def get_key(self, key_id: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT id, tenant, kind, label, created_at, revoked_at FROM api_keys WHERE id = %s", (key_id,)
        )
        return self._key_row(rows[0]) if rows else None

    def list_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        where = " WHERE tenant = %s" if tenant is not None else ""
        rows = self._rows(
            f"SELECT id, tenant, kind, label, created_at, revoked_at FROM api_keys{where}"
            " ORDER BY created_at",
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
        self._db.close()

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
        def work(cur: psycopg.Cursor[Any]) -> dict[str, Any] | None:
            # The user's lock, held to commit: concurrent merges never lose keys.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("profile", tenant, user_key),))
            return self._merge_profile(cur, tenant, user_key, attributes, email, create=create)

        return self._db.transact(work)

    @staticmethod
    def _merge_profile(
        cur: psycopg.Cursor[Any],
        tenant: str,
        user_key: str,
        attributes: dict[str, Any],
        email: str | None,
        *,
        create: bool,
    ) -> dict[str, Any] | None:
        """Merge attributes (``None`` removes a key) inside the caller's transaction,
        which holds the user's profile lock."""
        now = utcnow()
        cur.execute(
            "SELECT email, attributes, created_at FROM profiles WHERE tenant = %s AND user_key = %s",
            (tenant, user_key),
        )
        row = cur.fetchone()
        if row is None and not create:
            return None
        merged = merge_attributes({} if row is None else row[1], attributes)
        if row is None:
            cur.execute(
                "INSERT INTO profiles (tenant, user_key, email, attributes, created_at, updated_at)"
                " VALUES (%s,%s,%s,%s,%s,%s)",
                (tenant, user_key, email, dumps(merged), now, now),
            )
            created_at = now
        else:
            email = row[0] if email is None else email
            cur.execute(
                "UPDATE profiles SET email = %s, attributes = %s, updated_at = %s"
                " WHERE tenant = %s AND user_key = %s",
                (email, dumps(merged), now, tenant, user_key),
            )
            created_at = row[2]
        return {
            "tenant": tenant,
            "user_key": user_key,
            "email": email,
            "attributes": merged,
            "created_at": as_text(created_at),
            "updated_at": as_text(now),
            "created": row is None,
        }

    def get_profile(self, tenant: str, user_key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM profiles WHERE tenant = %s AND user_key = %s", (tenant, user_key))
        if not rows:
            return None
        row = rows[0]
        return {**row, "created_at": as_text(row["created_at"]), "updated_at": as_text(row["updated_at"])}
