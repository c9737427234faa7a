"""Group commit: writes from concurrent threads of one process share one COMMIT.

Why: with WAL and ``synchronous=NORMAL`` most of a one-event write is the commit
itself (WAL frames, locks, write calls), whatever the number of rows. Under a
threaded server (gunicorn's gthread, waitress, the WSGI middleware in a threaded
host), a thread that arrives while another one is committing queues its write;
when that commit is over, one of the queued threads becomes the leader and
commits every queued write in one transaction. Nobody waits on a timer: alone,
a thread leads at once and commits as it would without this.

Each write of a group runs in its own SAVEPOINT, so a write that fails is
undone alone and only its own caller gets the error. A COMMIT that fails fails
the whole group: every caller gets the error, and none has its events
acknowledged, as none of them is kept.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")


class _Write(Generic[T]):
    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], T]) -> None:
        self.work = work
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """``group.run(work)``: ``work(conn)`` runs inside a transaction shared with the
    writes queued beside it; returns its result once that transaction is committed.

    ``transaction`` opens one transaction (``BEGIN IMMEDIATE ... COMMIT``) and
    yields its connection; ``unavailable`` turns a SQLite error of one write into
    the error its caller should see.
    """

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
        unavailable: Callable[[Exception], Exception],
    ) -> None:
        self._transaction = transaction
        self._unavailable = unavailable
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Write[Any]] = []
        self._leading = False
        #: Writes in the last group committed (for tests and benchmarks).
        self.last_group = 0

    def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        item: _Write[T] = _Write(work)
        with self._cond:
            self._queue.append(item)
            while self._leading and not item.done:
                self._cond.wait()
            if not item.done:  # lead: take every write queued so far, this one included
                self._leading = True
                group, self._queue = self._queue, []
        if not item.done:
            try:
                self._commit(group)
            finally:
                with self._cond:
                    for write in group:
                        write.done = True
                    self._leading = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]  # set: done without an error

    def _commit(self, group: list[_Write[Any]]) -> None:
        self.last_group = len(group)
        try:
            with self._transaction() as conn:
                if len(group) == 1:  # alone: no savepoint, its error aborts the transaction
                    group[0].result = group[0].work(conn)
                else:
                    for write in group:
                        self._run_alone(conn, write)
        except Exception as exc:
            for write in group:
                write.error, write.result = exc, None  # nothing of the group was kept
        except BaseException:  # KeyboardInterrupt, SystemExit: the leader's own, not the others'
            interrupted = self._unavailable(RuntimeError("the committing thread was interrupted"))
            for write in group:
                write.error, write.result = interrupted, None
            raise

    def _run_alone(self, conn: sqlite3.Connection, write: _Write[Any]) -> None:
        """One write of a group, undone alone if it fails."""
        conn.execute("SAVEPOINT group_write")
        try:
            write.result = write.work(conn)
        except Exception as exc:
            if not conn.in_transaction:  # SQLite rolled back everything (disk full, I/O error)
                raise
            conn.execute("ROLLBACK TO group_write")
            write.error = self._unavailable(exc) if isinstance(exc, sqlite3.Error) else exc
        conn.execute("RELEASE group_write")
