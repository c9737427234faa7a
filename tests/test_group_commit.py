"""Group commit: concurrent writes of one process share a COMMIT, and fail alone."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flask_eventtrack import StoreUnavailable
from flask_eventtrack.events import Event, new_event_id, utcnow
from flask_eventtrack.stores import EventQuery
from flask_eventtrack.stores.group_commit import GroupCommit
from flask_eventtrack.stores.sqlite import SQLiteStore


class Table:
    """A table and a transaction that waits at a gate: writes queue behind it."""

    def __init__(self, path: Any) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)")
        self.gate = threading.Event()
        self.transactions = 0
        self.fail_commit = False
        self.group = GroupCommit(self.transaction, lambda exc: StoreUnavailable(f"unavailable: {exc}"))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.gate.wait(5)
        self.transactions += 1
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        if self.fail_commit:
            self.conn.execute("ROLLBACK")
            raise StoreUnavailable("commit failed")
        self.conn.execute("COMMIT")

    def values(self) -> list[int]:
        return [v for (v,) in self.conn.execute("SELECT v FROM t ORDER BY v")]


def insert(value: int) -> Callable[[sqlite3.Connection], int]:
    def work(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return value

    return work


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def run_grouped(group: GroupCommit, gate: threading.Event, works: list[Callable[..., Any]]) -> list[Any]:
    """The first work leads and waits at the gate while the others queue behind it;
    returns each work's result or the exception its caller got."""
    outcomes: list[Any] = [None] * len(works)

    def call(i: int) -> None:
        try:
            outcomes[i] = group.run(works[i])
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    threads[0].start()
    wait_until(lambda: group._leading)
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: len(group._queue) == len(works) - 1)
    gate.set()
    for thread in threads:
        thread.join(5)
    return outcomes


def test_writes_queued_behind_a_commit_share_the_next_one(tmp_path: Any) -> None:
    table = Table(tmp_path / "g.db")
    outcomes = run_grouped(table.group, table.gate, [insert(i) for i in range(6)])
    assert outcomes == list(range(6))
    assert table.values() == list(range(6))
    assert table.transactions == 2  # the leader alone, then the five that queued behind it
    assert table.group.last_group == 5


def test_a_write_that_fails_is_undone_alone_and_only_its_caller_sees_it(tmp_path: Any) -> None:
    table = Table(tmp_path / "g.db")

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (10)")
        raise ValueError("bad write")

    def duplicate(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (11)")
        conn.execute("INSERT INTO t (v) VALUES (1)")  # already written by the group: IntegrityError

    outcomes = run_grouped(
        table.group, table.gate, [insert(0), insert(1), half_then_fail, duplicate, insert(2)]
    )
    assert outcomes[:2] == [0, 1] and outcomes[4] == 2
    assert isinstance(outcomes[2], ValueError)
    assert isinstance(outcomes[3], StoreUnavailable)  # a SQLite error is a 503, as without a group
    assert "UNIQUE" in outcomes[3].description
    assert table.values() == [0, 1, 2]  # 10 and 11 were rolled back with their writes


def test_a_failed_commit_fails_every_write_of_its_group(tmp_path: Any) -> None:
    table = Table(tmp_path / "g.db")
    table.fail_commit = True
    outcomes = run_grouped(table.group, table.gate, [insert(i) for i in range(4)])
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert table.values() == []
    table.fail_commit = False
    assert table.group.run(insert(7)) == 7  # the group recovers: the next write leads
    assert table.values() == [7]


def test_an_interrupted_leader_fails_the_others_with_a_503_not_its_interrupt(tmp_path: Any) -> None:
    table = Table(tmp_path / "g.db")

    def interrupted(conn: sqlite3.Connection) -> None:
        raise KeyboardInterrupt

    # The second work leads the group of three that queued behind the first.
    outcomes = run_grouped(table.group, table.gate, [insert(0), interrupted, insert(1), insert(2)])
    assert outcomes[0] == 0
    kinds = sorted(type(o).__name__ for o in outcomes[1:])
    assert kinds.count("StoreUnavailable") >= 2  # the writes that did not lead
    assert all(isinstance(o, (KeyboardInterrupt, StoreUnavailable)) for o in outcomes[1:])
    assert table.values() == [0]


def _event(i: int) -> Event:
    now = utcnow()
    return Event(
        tenant="t", source="s", type="x", user=f"u{i}", id=new_event_id(), occurred_at=now, received_at=now
    )


def test_the_sqlite_store_commits_concurrent_writes_together(tmp_path: Any) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        store.write([_event(-1)])  # connections and catalog are warm
        group = store._group_commit()
        lock = store._write_lock()
        lock.acquire()  # the first writer leads and waits for the lock; the others queue
        results: list[Any] = [None] * 5

        def write(i: int) -> None:
            try:
                results[i] = store.write([_event(i), _event(i + 100)])
            except BaseException as exc:
                results[i] = exc

        threads = [threading.Thread(target=write, args=(i,)) for i in range(5)]
        threads[0].start()
        wait_until(lambda: group._leading)
        for thread in threads[1:]:
            thread.start()
        wait_until(lambda: len(group._queue) == 4)
        lock.release()
        for thread in threads:
            thread.join(5)
        assert [len(r.stored) for r in results] == [2] * 5
        assert group.last_group == 4
        assert store.count_events(EventQuery()) == 11
    finally:
        store.close()


@pytest.mark.parametrize("threads", [8])
def test_many_threads_writing_at_once_lose_nothing(tmp_path: Any, threads: int) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'events.db'}")
    acknowledged = []

    def writer(n: int) -> None:
        for i in range(50):
            result = store.write([_event(n * 1000 + i)])
            acknowledged.extend(e.id for e in result.stored)

    try:
        pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(30)
        stored = {e.id for e in store.iter_events(EventQuery())}
        assert len(acknowledged) == threads * 50
        assert stored == set(acknowledged)
    finally:
        store.close()
