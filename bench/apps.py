"""The apps the benchmark serves with gunicorn, side by side.

- ``bare()``: the ceiling, a Flask route that returns 204 and does nothing
  (with a ``SECRET_KEY``, as the host app has).
- ``bare_cortex()``: diagnostic only (``--diagnose``): a bare route that takes
  Cortex's exchange (reads a JSON POST body, answers Cortex's 200 JSON body) and
  does nothing else: what that HTTP shape costs gunicorn and Flask over a
  bodiless GET answered 204.
- ``naive()``: the peer, a tracking endpoint written by hand the usual way:
  connect per request, one INSERT and COMMIT, default ``synchronous``.
- ``careful()``: the same endpoint written carefully: one connection per
  worker, WAL and ``synchronous=NORMAL``.
- ``eventtrack()``: the example app with flask-eventtrack, store from
  ``FLASK_EVENTTRACK_STORE_URL``.
- ``eventtrack_no_write()``: diagnostic only (``--diagnose``), see its docstring.

With ``BENCH_INSIDE_DIR`` set (``bench/split.py``), every app also adds up, per
worker, the CPU time spent inside it (see :class:`InsideTimer`).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flask import Flask, request

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class InsideTimer:
    """Wraps a WSGI app: adds up the thread CPU time spent in it, per worker process.

    Every ``FLUSH_EVERY`` requests it writes ``<ns> <requests>`` to
    ``<directory>/<pid>``, so that a worker's share of a request (its Flask app)
    can be set against what gunicorn and the kernel cost around it, without a
    file write per request.
    """

    FLUSH_EVERY = 100

    def __init__(self, app: WSGIApp, directory: str) -> None:
        self.app = app
        self.path = os.path.join(directory, str(os.getpid()))
        self.ns = self.requests = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        started = time.thread_time_ns()
        try:
            return self.app(environ, start_response)
        finally:
            self.ns += time.thread_time_ns() - started
            self.requests += 1
            if self.requests % self.FLUSH_EVERY == 0:
                with open(self.path, "w", encoding="ascii") as fh:
                    fh.write(f"{self.ns} {self.requests}")


def _served(factory: Callable[[], Flask]) -> Callable[[], Flask]:
    """An app factory of the suite, timed inside when ``BENCH_INSIDE_DIR`` is set."""

    @functools.wraps(factory)
    def make() -> Flask:
        app = factory()
        directory = os.environ.get("BENCH_INSIDE_DIR")
        if directory:
            app.wsgi_app = InsideTimer(app.wsgi_app, directory)  # type: ignore[method-assign]
        return app

    return make


def _bare_app() -> Flask:
    app = Flask("bare")
    # Like any app with sessions (and like the example app, which needs it to
    # key the user-id hash): Flask then opens a session on every request.
    app.config["SECRET_KEY"] = os.environ.get("FLASK_SECRET_KEY", "bench")

    @app.route("/bare", methods=["GET", "POST"])
    def bare_route() -> tuple[str, int]:
        return "", 204

    return app


@_served
def bare() -> Flask:
    return _bare_app()


@_served
def bare_cortex() -> Flask:
    app = _bare_app()

    @app.post("/cortex")
    def cortex_shaped() -> tuple[bytes, int, dict[str, str]]:
        request.get_data()
        return b'{"status": "received"}', 200, {"Content-Type": "application/json"}

    return app


@_served
def naive() -> Flask:
    app = Flask("naive")
    path = os.environ["BENCH_NAIVE_DB"]
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, user TEXT, type TEXT, props TEXT)"
        )

    @app.post("/naive")
    def naive_route() -> tuple[str, int]:
        event = request.get_json()
        conn = sqlite3.connect(path, timeout=5)
        try:
            conn.execute(
                "INSERT INTO events (user, type, props) VALUES (?, ?, ?)",
                (event["user_id"], event["type"], json.dumps(event)),
            )
            conn.commit()
        finally:
            conn.close()
        return "", 204

    return app


@_served
def careful() -> Flask:
    """The careful hand-written endpoint: one connection per worker, WAL + NORMAL."""
    app = Flask("careful")
    app.config["SECRET_KEY"] = os.environ.get("FLASK_SECRET_KEY", "bench")
    path = os.environ["BENCH_NAIVE_DB"]
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, user TEXT, type TEXT, props TEXT)"
        )
    local = threading.local()  # one connection per worker (per thread under gthread)

    @app.post("/naive")
    def careful_route() -> tuple[str, int]:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = sqlite3.connect(path, timeout=5, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
        event = request.get_json()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO events (user, type, props) VALUES (?, ?, ?)",
            (event["user_id"], event["type"], json.dumps(event)),
        )
        conn.execute("COMMIT")
        return "", 204

    return app


@_served
def eventtrack() -> Flask:
    from example_app import create_app

    return create_app()


@_served
def eventtrack_no_write() -> Flask:
    """Diagnostic only (``python bench/run.py --diagnose``), never a way to run the library.

    The example app with its store's ``write`` replaced by one that commits
    nothing: the difference to ``eventtrack()`` is what the store transaction
    costs; the difference to ``bare()`` is HTTP body, validation, hashing and
    the pipeline.
    """
    from example_app import create_app
    from flask_eventtrack import get_state
    from flask_eventtrack.events import Event, Rejection
    from flask_eventtrack.stores import WriteResult

    app = create_app()

    def write(events: Sequence[Event], rejections: Sequence[Rejection] = ()) -> WriteResult:
        return WriteResult(stored=list(events), rejected=list(rejections))

    get_state(app).store.write = write  # type: ignore[method-assign]
    return app
