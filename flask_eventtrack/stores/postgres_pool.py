"""Connections of the PostgreSQL store: one pool per process, and transactions that
survive pooled connections which died while idle.

The pool is opened on first use in each process, never at import or in
``init_app``: a gunicorn master that preloads the app forks workers that each open
their own, and a child never touches its parent's sockets. Every failure to reach
the server becomes :class:`StoreUnavailable` (a 503 with ``Retry-After``), within
the connect timeout: requests that arrive while another thread is opening the pool
wait for it at most that long, and share its failure instead of each trying again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ..errors import StoreUnavailable
from .postgres_schema import migrate

__all__ = ["UNAVAILABLE", "Connections"]

log = logging.getLogger("flask_eventtrack")
T = TypeVar("T")

#: What makes the store unavailable (server down or restarting, connection cut,
#: pool exhausted, disk full, a read-only standby after failover, a role without
#: the privileges it needs: the operator's to fix, a 503 and the reason in the log
#: until then). Other psycopg errors are bugs and stay errors.
UNAVAILABLE = (
    psycopg.OperationalError,
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg.errors.InsufficientPrivilege,
)


class Connections:
    """This process's connections to one database and schema."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        *,
        min_size: int,
        max_size: int,
        connect_timeout: float,
        retry_after: int,
    ) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.min_size, self.max_size = min_size, max_size
        self.connect_timeout = connect_timeout
        self.retry_after = retry_after
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._forget_pool()
        _every.add(self)

    def _forget_pool(self) -> None:
        """No pool yet (also in a forked child: the parent's pool and its sockets
        are not ours, and a lock held by a parent's thread would never be released)."""
        self._pool = None
        self._lock = threading.Lock()  # held while this process opens its pool
        self._failed_attempts = 0  # how many attempts to open it failed ...
        self._last_failure = ""  # ... and why the last one did

    def _connect_kwargs(self) -> dict[str, Any]:
        # libpq's connect_timeout is whole seconds, at least 2.
        return {"connect_timeout": max(2, int(self.connect_timeout + 0.999))}

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Every connection works in our schema and in UTC."""
        path = sql.Identifier(self.schema).as_string(conn)
        conn.execute(
            "SELECT set_config('search_path', %s, false), set_config('TimeZone', 'UTC', false)", (path,)
        )
        conn.commit()

    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """This process's pool, opened (and the schema migrated) on first use.

        One thread at a time tries to open it. The others wait for that attempt
        at most the connect timeout and, if it failed, answer
        :class:`StoreUnavailable` at once: with a server that accepts connections
        but never answers, each attempt lasts the whole connect timeout, and N
        threads taking turns would wait N times that.
        """
        pool = self._pool
        if pool is not None:
            return pool
        lock, failed_attempts = self._lock, self._failed_attempts
        if not lock.acquire(timeout=self.connect_timeout):
            raise self.unavailable(
                psycopg.OperationalError(
                    f"no connection within {self.connect_timeout:g} s"
                    " (another request's connection attempt is still running)"
                )
            )
        try:
            pool = self._pool
            if pool is not None:
                return pool
            if self._failed_attempts != failed_attempts:  # the attempt we waited for failed
                raise self.unavailable(psycopg.OperationalError(self._last_failure))
            try:
                with psycopg.connect(self.conninfo, **self._connect_kwargs()) as conn:
                    migrate(conn, self.schema)
            except UNAVAILABLE as exc:
                self._failed_attempts += 1
                self._last_failure = str(exc)
                raise self.unavailable(exc) from exc
            pool = ConnectionPool(
                self.conninfo,
                kwargs=self._connect_kwargs(),
                min_size=self.min_size,
                max_size=self.max_size,
                open=False,
                configure=self._configure,
                timeout=self.connect_timeout,
                name="flask-eventtrack",
            )
            pool.open(wait=False)
            self._pool = pool
            return pool
        finally:
            lock.release()

    def unavailable(self, exc: Exception) -> StoreUnavailable:
        log.error("PostgreSQL store could not commit or read: %s", exc)
        message = "The event store is unavailable; nothing was stored. Retry later."
        return StoreUnavailable(message, retry_after=self.retry_after)

    def transact(
        self, work: Callable[[psycopg.Cursor[Any]], T], *, dict_rows: bool = False, pipeline: bool = False
    ) -> T:
        """Run ``work`` in one transaction and commit it.

        A pooled connection can be dead without the pool knowing (the server
        restarted, the network dropped it). When one fails before COMMIT was
        sent, nothing was committed, so ``work`` runs again on another
        connection, until the connect timeout; then, or when COMMIT itself
        fails, :class:`StoreUnavailable`.
        """
        pool = self.pool()
        deadline = time.monotonic() + self.connect_timeout
        while True:
            conn = self._getconn(pool, deadline)
            try:
                try:
                    with conn.cursor(row_factory=dict_row) if dict_rows else conn.cursor() as cur:
                        if pipeline:  # statements go out together; errors still surface before COMMIT
                            with conn.pipeline():
                                out = work(cur)
                        else:
                            out = work(cur)
                except UNAVAILABLE as exc:
                    if conn.broken and time.monotonic() < deadline:
                        log.info("PostgreSQL connection was lost before COMMIT (%s); retrying", exc)
                        continue
                    if not conn.broken:  # e.g. a deadlock or a full disk: the connection is fine
                        with contextlib.suppress(psycopg.Error):
                            conn.rollback()
                    raise self.unavailable(exc) from exc
                except BaseException:
                    if not conn.broken:
                        conn.rollback()
                    raise
                try:
                    conn.commit()
                except UNAVAILABLE as exc:
                    raise self.unavailable(exc) from exc
                return out
            finally:
                pool.putconn(conn)  # a broken connection is discarded and replaced

    def rows(self, query: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one statement in its own transaction; its rows, if any."""

        def work(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else []

        return self.transact(work, dict_rows=True)

    def stream(self, name: str, query: str, args: Sequence[Any]) -> Iterator[dict[str, Any]]:
        """Rows of ``query`` from a server-side cursor: a long export streams
        instead of loading everything, holding one pooled connection meanwhile."""
        pool = self.pool()
        conn = self._live_connection(pool)
        try:
            with conn.cursor(name, row_factory=dict_row) as cur:
                cur.itersize = 500
                cur.execute(query, args)
                yield from cur
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        finally:
            if not conn.broken:
                conn.rollback()
            pool.putconn(conn)

    def _getconn(
        self, pool: ConnectionPool[psycopg.Connection[Any]], deadline: float
    ) -> psycopg.Connection[Any]:
        """A pooled connection, or :class:`StoreUnavailable` once ``deadline`` passed."""
        try:
            return pool.getconn(timeout=max(deadline - time.monotonic(), 0.01))
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    def _live_connection(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
        """A pooled connection that answered a ping (for reads that hold one a while)."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            conn = self._getconn(pool, deadline)
            try:
                ConnectionPool.check_connection(conn)
                return conn
            except UNAVAILABLE as exc:
                pool.putconn(conn)
                if time.monotonic() >= deadline:
                    raise self.unavailable(exc) from exc

    def close(self) -> None:
        """Close this process's pool (a parent's inherited pool is left alone)."""
        pool = self._pool
        if pool is not None:
            pool.close()
        self._pool = None


#: Every :class:`Connections` of this process, to forget their pools in a forked child.
_every: weakref.WeakSet[Connections] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Runs in the child before any other thread exists, so no request can see a
    # half-reset state or keep using the parent's pool.
    for connections in list(_every):
        connections._forget_pool()


os.register_at_fork(after_in_child=_after_fork_in_child)
