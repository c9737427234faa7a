"""The embedded default store: one SQLite file, WAL mode, shared by worker processes.

Schema is created and versioned with sqlite-utils migrations (``sqlite_schema``). Each thread of
each process keeps one connection (opened lazily, reopened after a fork), and
every write is one ``BEGIN IMMEDIATE`` transaction: writers queue on SQLite's
lock for up to the busy timeout, and a write that still cannot get it raises
:class:`StoreUnavailable` (a 503), never a silent loss. Reads that fail (a file
that cannot be opened, a disk I/O error) are 503s as well.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from .._json import dumps as _dumps
from ..errors import ConfigurationError, StoreUnavailable
from ..events import Event, Rejection, format_time, parse_time, utcnow
from . import MAX_DEFINITION_PARAMS, STATS_SQL, EventQuery, Store, WriteResult, _by_tenant, merge_attributes
from .sqlite_schema import migrate

log = logging.getLogger("flask_eventtrack")

_COLUMNS = (
    "id, tenant, source, type, user, user_kind, item_type, item_id,"
    " occurred_at, received_at, original_time, props, dedup_key, status"
)
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_ON_KEY = " ON CONFLICT (tenant, source, dedup_key) WHERE dedup_key IS NOT NULL"
_INSERT_FIRST_WINS = _INSERT + _ON_KEY + " DO NOTHING"
# Replacing keeps the stored id and occurred_at; everything else is the new event's.
_INSERT_REPLACE = (
    _INSERT + _ON_KEY + " DO UPDATE SET user_kind=excluded.user_kind, item_type=excluded.item_type,"
    " item_id=excluded.item_id, received_at=excluded.received_at,"
    " original_time=excluded.original_time, props=excluded.props, status=excluded.status"
    " RETURNING id, occurred_at"
)
_INSERT_REJECTED = (
    "INSERT INTO rejected (id, tenant, source, type, reason, message, payload, received_at)"
    " VALUES (?,?,?,?,?,?,?,?)"
)
# The cap holds in the row itself, whatever each worker remembers: stored names
# stay, and new ones fill the room left, smallest first (the same in every worker);
# a full row is left alone.
_UPSERT_DEFINITION = f"""
INSERT INTO definitions (tenant, source, name, first_seen, params) VALUES (?,?,?,?,?)
ON CONFLICT (tenant, source, name) DO UPDATE SET
  params = (SELECT json_group_array(value) FROM (
      SELECT value FROM json_each(definitions.params)
      UNION SELECT value FROM (
          SELECT value, row_number() OVER (ORDER BY value) AS n FROM json_each(excluded.params)
          WHERE value NOT IN (SELECT value FROM json_each(definitions.params)))
        WHERE n <= {MAX_DEFINITION_PARAMS} - json_array_length(definitions.params)
      ORDER BY value))
WHERE json_array_length(definitions.params) < {MAX_DEFINITION_PARAMS}
"""
_WITHIN_WINDOW = (
    "SELECT 1 FROM events WHERE user = ? AND occurred_at > ? AND occurred_at < ?"
    " AND tenant = ? AND source = ? AND type = ? LIMIT 1"
)


def _users_filter(users: Sequence[str]) -> tuple[str, list[Any]]:
    """One user (the common case) reads its index in time order; more are one JSON
    array, not a variable each: a user can have more linked ids than SQLite binds."""
    if len(users) == 1:
        return "user = ?", list(users)
    return "user IN (SELECT value FROM json_each(?))", [_dumps(list(users))]


#: SQLite errors no retry can mend (``sqlite_errorname`` prefixes): the file is not
#: a database, is damaged, or cannot be opened or written at all.
_HOPELESS = (
    "SQLITE_NOTADB",
    "SQLITE_CORRUPT",
    "SQLITE_CANTOPEN",
    "SQLITE_PERM",
    "SQLITE_READONLY",
    "SQLITE_IOERR",
)


# This process's id, kept current across fork() without a getpid() system call
# on every connection lookup: a forked worker must open its own connections.
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


class SQLiteStore(Store):
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""

    schemes = ("sqlite",)

    def __init__(
        self,
        url: str,
        *,
        payload_limit: int = 4096,
        synchronous: str = "NORMAL",
        busy_timeout: int = 5000,
        wal_autocheckpoint: int = 10000,
        retry_after: int = 5,
        **options: Any,
    ) -> None:
        super().__init__(url, payload_limit=payload_limit)
        self.wal_autocheckpoint = int(wal_autocheckpoint)
        self._lock, self._lock_pid = threading.RLock(), _pid
        # Everything after the authority is the path: urlsplit would cut it at a "#" or
        # a "?" (an instance folder "run#2") and open another file without a word.
        path = "/" + url.partition("://")[2].partition("/")[2] if "://" in url else ""
        if not path.startswith("/") or path == "/":
            raise ConfigurationError(f"SQLite store URL {url!r} has no file path.")
        if path[1:] == ":memory:":
            raise ConfigurationError(
                "An in-memory SQLite database would be private to each connection (and lost);"
                " use a file, e.g. sqlite:////tmp/eventtrack.db."
            )
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigurationError(
                f"EVENTTRACK_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}."
            )
        # sqlite:///rel.db -> rel.db, resolved now: the store keeps the file it opened
        # at start even if the process changes directory; sqlite:////abs.db -> /abs.db.
        self.path = os.path.abspath(path[1:])
        self.synchronous = synchronous.upper()
        self.busy_timeout = int(busy_timeout)
        self.retry_after = retry_after
        self._local = threading.local()
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"The SQLite store's directory {directory} cannot be created: {exc.strerror}."
            ) from exc
        self._migrate()

    # -- connections -----------------------------------------------------
    def _connect(self, *, create: bool = False) -> sqlite3.Connection:
        """Only the migration creates the file: a missing one is an error, not a new empty database."""
        mode = "rwc" if create else "rw"
        conn = sqlite3.connect(
            f"file:{quote(self.path)}?mode={mode}",
            uri=True,
            timeout=self.busy_timeout / 1000,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,
            cached_statements=256,
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={self.busy_timeout}")
            # Checkpoint every N pages instead of SQLite's 1000: hot pages (the
            # tail of the table and indexes) are copied back once instead of many
            # times, which cuts the cost of a small commit by a third. The WAL is
            # truncated back to 64 MiB after each checkpoint.
            conn.execute(f"PRAGMA wal_autocheckpoint={self.wal_autocheckpoint}")
            conn.execute("PRAGMA journal_size_limit=67108864")
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection; a forked child opens its own."""
        local = self._local
        if getattr(local, "pid", None) != _pid:
            with self._guard():
                # Before connecting: a file swapped in between fails the write check, never passes it.
                st = os.stat(self.path)
                local.conn = self._connect()
            local.file_id, local.pid = (st.st_dev, st.st_ino), _pid
        conn: sqlite3.Connection = local.conn
        return conn

    def _check_file(self) -> None:
        """Before a commit: a connection whose file was removed or replaced would write
        into an unlinked inode, a 2xx for an event that is in no file."""
        local = self._local
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == local.file_id:
                return
        except OSError:
            pass
        local.conn.close()  # also rolls back the caller's BEGIN
        local.pid = None  # the next use opens the file at self.path again, or gets a 503
        raise sqlite3.OperationalError(f"{self.path} was removed or replaced while open")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Reads and connecting fail like writes: a 503 with Retry-After, not a 500."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _migrate(self) -> None:
        # Several workers may start at once: the loser of a race sees an IntegrityError,
        # a lock or a table "already exists", and retries to find nothing pending.
        # A file that cannot be one (not a database, corrupt, no permission) fails at once,
        # in a sentence; anything else may be that race, and is retried.
        for attempt in range(20):
            try:
                conn = self._connect(create=True)
                try:
                    migrate(conn)
                finally:
                    conn.close()
                return
            except sqlite3.Error as exc:
                hopeless = getattr(exc, "sqlite_errorname", "").startswith(_HOPELESS)
                if attempt == 19 or hopeless:
                    message = f"The SQLite store {self.path} cannot be opened: {exc}."
                    raise ConfigurationError(message) from exc
                time.sleep(0.05 * (attempt + 1))

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        log.error("SQLite store %s is unavailable: %s", self.path, exc)
        message = "The event store is busy or unavailable; nothing was stored. Retry later."
        return StoreUnavailable(message, retry_after=self.retry_after)

    # -- writing ---------------------------------------------------------
    def write(self, events: Sequence[Event], rejections: Sequence[Rejection] = ()) -> WriteResult:
        result = WriteResult()
        storable, unstorable_events = self.encode(events)
        rejected = [*rejections, *unstorable_events]
        with self._transaction() as conn:
            plain = [(e, p) for e, p in storable if not e.has_directives]
            if plain:
                conn.executemany(_INSERT, [e.to_row(time=format_time, props=p) for e, p in plain])
                result.stored.extend(e for e, _ in plain)
            for event, props in storable:
                if event.has_directives:
                    self._write_directed(conn, event, props, result, rejected)
            new_definitions = self._update_definitions(conn, result.stored) if result.stored else ()
            if rejected:
                conn.executemany(_INSERT_REJECTED, [self._rejection_row(r) for r in rejected])
        self.remember_definitions(new_definitions)  # committed: remember them
        result.rejected = rejected
        return result

    def _write_directed(
        self,
        conn: sqlite3.Connection,
        event: Event,
        props: str,
        result: WriteResult,
        rejected: list[Rejection],
    ) -> None:
        """Write one event that carries a dedup key, a window, a link or a profile merge."""
        if event.once_per is not None:
            at = event.occurred_at or utcnow()
            hit = conn.execute(
                _WITHIN_WINDOW,
                (
                    event.user,
                    format_time(at - event.once_per),
                    format_time(at + event.once_per),
                    event.tenant,
                    event.source,
                    event.type,
                ),
            ).fetchone()
            if hit:
                minutes = event.once_per.total_seconds() / 60
                message = (
                    f"a {event.type!r} event for this user was already recorded within {minutes:g} minutes"
                )
                rejected.append(self.reject_event(event, "duplicate", message))
                return
        row = event.to_row(time=format_time, props=props)
        if event.dedup_key and event.replace:
            kept_id, kept_at = conn.execute(_INSERT_REPLACE, row).fetchone()
            if kept_id != event.id:  # replaced: hooks see the stored identity and time
                event.id, event.occurred_at = kept_id, parse_time(kept_at)
                result.replaced.append(event)
        elif event.dedup_key:
            if conn.execute(_INSERT_FIRST_WINS, row).rowcount == 0:
                message = f"an event with key {event.dedup_key!r} was already recorded"
                rejected.append(self.reject_event(event, "duplicate", message))
                return
        else:
            conn.execute(_INSERT, row)
        if event.links_to:
            conn.execute(
                "INSERT OR IGNORE INTO identity_links (tenant, user, target, created_at) VALUES (?,?,?,?)",
                (event.tenant, event.user, event.links_to, row[9]),
            )
        if event.merge_profile and event.user:
            attributes, email = event.merge_profile
            self._merge_profile(conn, event.tenant, event.user, attributes, email, create=False)
        result.stored.append(event)

    def _rejection_row(self, r: Rejection) -> tuple[Any, ...]:
        return self.rejection_row(r, format_time)

    def _update_definitions(self, conn: sqlite3.Connection, events: Sequence[Event]) -> list[Any]:
        """Record new types and parameter names; returns what to remember after COMMIT."""
        new = self.new_definitions(events)
        if new:
            seen = format_time(events[0].received_at)  # type: ignore[arg-type]  # set by the pipeline
            conn.executemany(
                _UPSERT_DEFINITION,
                [(*group, seen, _dumps(sorted(params))) for group, params in new],
            )
        return new

    # -- reading ---------------------------------------------------------
    @classmethod
    def _where(cls, query: EventQuery, *, rejected: bool = False) -> tuple[str, list[Any]]:
        return cls.where_clause(
            query,
            rejected=rejected,
            param="?",
            users=_users_filter,
            time_value=format_time,
        )

    @staticmethod
    def _from(table: str, query: EventQuery) -> str:
        """Without statistics SQLite reads a tenant's events by the tenant index and
        filters on user; a user's events are the far smaller set, so use its index."""
        if table == "events" and query.users is not None:
            return "events INDEXED BY idx_events_user_occurred_at"
        return table

    def _select(self, table: str, query: EventQuery, order: str) -> Iterator[sqlite3.Row]:
        where, args = self._where(query, rejected=table == "rejected")
        sql = f"SELECT * FROM {self._from(table, query)}{where} ORDER BY {order}"
        if query.limit is not None or query.offset:
            sql += " LIMIT ? OFFSET ?"
            args += [-1 if query.limit is None else query.limit, query.offset]
        # A separate connection: a long export must not hold this thread's
        # connection (and its read snapshot) away from writes.
        with self._guard():
            conn = self._connect()
            try:
                cursor = conn.execute(sql, args)
                while rows := cursor.fetchmany(500):
                    yield from rows
            finally:
                conn.close()

    def iter_events(self, query: EventQuery) -> Iterator[Event]:
        direction = "DESC" if query.newest_first else "ASC"
        for row in self._select("events", query, f"occurred_at {direction}, id {direction}"):
            yield Event.from_row(row, time=parse_time, props=json.loads)

    def count_events(self, query: EventQuery) -> int:
        where, args = self._where(query)
        sql = f"SELECT count(*) FROM {self._from('events', query)}{where}"
        with self._guard():
            (count,) = self.conn.execute(sql, args).fetchone()
        return int(count)

    def iter_rejected(self, query: EventQuery) -> Iterator[Rejection]:
        for row in self._select("rejected", query, "received_at, id"):
            yield Rejection.from_row(row, time=parse_time)

    def linked_users(self, user: str, tenant: str | None = None) -> list[str]:
        with self._guard():
            rows = self.conn.execute(
                "WITH RECURSIVE linked(u) AS (SELECT ? UNION"
                " SELECT l.user FROM identity_links l JOIN linked ON l.target = linked.u"
                " WHERE ? IS NULL OR l.tenant = ?)"
                " SELECT u FROM linked",
                (user, tenant, tenant),
            ).fetchall()
        return [row[0] for row in rows]

    def linked_users_by_tenant(self, user: str) -> dict[str, set[str]]:
        with self._guard():
            rows = self.conn.execute(
                "WITH RECURSIVE linked(tenant, u) AS ("
                " SELECT tenant, ? FROM identity_links WHERE target = ?"
                " UNION SELECT l.tenant, l.user FROM identity_links l"
                " JOIN linked ON l.target = linked.u AND l.tenant = linked.tenant)"
                " SELECT tenant, u FROM linked",
                (user, user),
            ).fetchall()
        return _by_tenant(rows)

    def stats(self) -> list[dict[str, Any]]:
        with self._guard():
            rows = self.conn.execute(STATS_SQL).fetchall()
        return [dict(row) for row in rows]

    def definitions(self, tenant: str | None = None) -> list[dict[str, Any]]:
        only = " WHERE tenant = ?" if tenant is not None else ""
        sql = (
            "SELECT d.tenant, d.source, d.name, d.first_seen, e.last_seen, coalesce(e.count, 0) AS count,"
            " d.params FROM definitions d LEFT JOIN ("
            "  SELECT tenant, source, type, max(received_at) AS last_seen, count(*) AS count"
            f"  FROM events{only}"
            "  GROUP BY tenant, source, type"
            ") e ON e.tenant = d.tenant AND e.source = d.source AND e.type = d.name"
        )
        args: list[Any] = []
        if tenant is not None:
            sql += " WHERE d.tenant = ?"
            args += [tenant, tenant]
        with self._guard():
            rows = self.conn.execute(sql + " ORDER BY d.tenant, d.source, d.name", args).fetchall()
        return [{**dict(row), "params": json.loads(row["params"])} for row in rows]

    # -- keys ------------------------------------------------------------
    def add_key(self, key_id: str, tenant: str, kind: str, key_hash: str, label: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, tenant, kind, key_hash, label, created_at) VALUES (?,?,?,?,?,?)",
                (key_id, tenant, kind, key_hash, label, format_time(utcnow())),
            )

    def find_key(self, key_hash: str) -> dict[str, Any] | None:
        with self._guard():
            row = self.conn.execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        return dict(row) if row else None

    def get_key(self, key_id: str) -> dict[str, Any] | None:
        with self._guard():
            row = self.conn.execute(
                "SELECT id, tenant, kind, label, created_at, revoked_at FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
        return dict(row) if row else None

    def list_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, tenant, kind, label, created_at, revoked_at FROM api_keys"
        args = [tenant] if tenant is not None else []
        if tenant is not None:
            sql += " WHERE tenant = ?"
        with self._guard():
            return [dict(r) for r in self.conn.execute(sql + " ORDER BY created_at", args)]

    def revoke_key(self, key_id: str) -> bool:
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (format_time(utcnow()), key_id),
            )
        return cursor.rowcount > 0

    # -- helpers -----------------------------------------------------------
    def _write_lock(self) -> threading.RLock:
        """This process's writer mutex (a forked child makes its own: a lock
        held by another thread at fork time would never be released there)."""
        if self._lock_pid != _pid:
            self._lock, self._lock_pid = threading.RLock(), _pid
        return self._lock

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def check(self) -> None:
        with self._guard():
            self.conn.execute("SELECT 1 FROM events LIMIT 1").fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == _pid:
            conn.close()
        self._local = threading.local()

    def upsert_profile(
        self,
        tenant: str,
        user_key: str,
        attributes: dict[str, Any],
        email: str | None = None,
        *,
        create: bool = True,
    ) -> dict[str, Any] | None:
        # BEGIN IMMEDIATE holds the write lock from the read to the write, so
        # concurrent merges (threads or processes) never lose each other's keys.
        with self._transaction() as conn:
            return self._merge_profile(conn, tenant, user_key, attributes, email, create=create)

    @staticmethod
    def _merge_profile(
        conn: sqlite3.Connection,
        tenant: str,
        user_key: str,
        attributes: dict[str, Any],
        email: str | None,
        *,
        create: bool,
    ) -> dict[str, Any] | None:
        """Merge attributes (``None`` removes a key) inside the caller's transaction."""
        now = format_time(utcnow())
        row = conn.execute(
            "SELECT * FROM profiles WHERE tenant = ? AND user_key = ?", (tenant, user_key)
        ).fetchone()
        if row is None and not create:
            return None
        merged = merge_attributes({} if row is None else json.loads(row["attributes"]), attributes)
        if row is None:
            conn.execute(
                "INSERT INTO profiles (tenant, user_key, email, attributes, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?)",
                (tenant, user_key, email, _dumps(merged), now, now),
            )
            profile = {"tenant": tenant, "user_key": user_key, "email": email, "created_at": now}
        else:
            email = email if email is not None else row["email"]
            conn.execute(
                "UPDATE profiles SET email = ?, attributes = ?, updated_at = ?"
                " WHERE tenant = ? AND user_key = ?",
                (email, _dumps(merged), now, tenant, user_key),
            )
            profile = {**dict(row), "email": email}
        return {**profile, "attributes": merged, "updated_at": now, "created": row is None}

    def get_profile(self, tenant: str, user_key: str) -> dict[str, Any] | None:
        with self._guard():
            row = self.conn.execute(
                "SELECT * FROM profiles WHERE tenant = ? AND user_key = ?", (tenant, user_key)
            ).fetchone()
        if row is None:
            return None
        return {**dict(row), "attributes": json.loads(row["attributes"])}


class _Transaction:
    """``with store._transaction() as conn``: BEGIN IMMEDIATE ... COMMIT, 503 on failure."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        # Threads of one process queue on a mutex: SQLite's own busy handler
        # would make them sleep (1 ms, 2 ms, 5 ms, ...) and poll for the lock.
        lock = self.store._write_lock()
        if not lock.acquire(timeout=self.store.busy_timeout / 1000):
            raise self.store._unavailable(sqlite3.OperationalError("write lock timeout"))
        try:
            self.store.conn.execute("BEGIN IMMEDIATE")
            self.store._check_file()  # one stat: is this connection's file still the store?
        except sqlite3.Error as exc:
            lock.release()
            raise self.store._unavailable(exc) from exc
        except BaseException:
            lock.release()
            raise
        self.lock = lock
        return self.store.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._finish(exc_type, exc)
        finally:
            self.lock.release()

    def _finish(self, exc_type: Any, exc: Any) -> None:
        conn = self.store.conn
        if exc_type is not None:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self.store._unavailable(exc) from exc
            return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self.store._unavailable(err) from err
