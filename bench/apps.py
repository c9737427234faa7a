"""The apps the benchmark serves with gunicorn, side by side.

- ``bare()``: the ceiling, a Flask route that returns 204 and does nothing
  (with a ``SECRET_KEY``, as the host app has).
- ``naive()``: the peer, a tracking endpoint written by hand the usual way:
  connect per request, one INSERT and COMMIT, default ``synchronous``.
- ``careful()``: the same endpoint written carefully: one connection per
  worker, WAL and ``synchronous=NORMAL``.
- ``eventtrack()``: the example app with flask-eventtrack, store from
  ``FLASK_EVENTTRACK_STORE_URL``.
- ``eventtrack_no_write()``: diagnostic only (``--diagnose``), see its docstring.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence

from flask import Flask, request


def bare() -> Flask:
    app = Flask("bare")
    # Like any app with sessions (and like the example app, which needs it to
    # key the user-id hash): Flask then opens a session on every request.
    app.config["SECRET_KEY"] = os.environ.get("FLASK_SECRET_KEY", "bench")

    @app.route("/bare", methods=["GET", "POST"])
    def bare_route() -> tuple[str, int]:
        return "", 204

    return app


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


def eventtrack() -> Flask:
    from example_app import create_app

    return create_app()


def eventtrack_no_write() -> Flask:
    """Diagnostic only (``python bench/run.py --diagnose``), never a way to run the library.

    The example app with its store's ``write`` replaced by one that commits
    nothing: the difference to ``eventtrack()`` is what the store transaction
    costs; the difference to ``bare()`` is HTTP body, validation, hashing and
    the pipeline.
    """
    from flask_eventtrack import get_state
    from flask_eventtrack.events import Event, Rejection
    from flask_eventtrack.stores import WriteResult

    app = eventtrack()

    def write(events: Sequence[Event], rejections: Sequence[Rejection] = ()) -> WriteResult:
        return WriteResult(stored=list(events), rejected=list(rejections))

    get_state(app).store.write = write  # type: ignore[method-assign]
    return app
