"""PostgreSQL for the tests: one throwaway database per test session.

The server is ``EVENTTRACK_TEST_POSTGRES_URL`` (default: the local one,
``postgresql://postgres@127.0.0.1:5432/postgres``). ``pg_database`` creates a
database with a random name, yields its URL, and drops it at the end of the
session. When the server cannot be reached the PostgreSQL tests are skipped,
with the reason in pytest's summary; with ``EVENTTRACK_REQUIRE_POSTGRES=1`` (CI)
they fail instead, so a CI run can never pass without them.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

ADMIN_URL = os.environ.get("EVENTTRACK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def unavailable(reason: str, *, module_level: bool = False) -> None:
    """Skip, or fail when PostgreSQL is mandatory (CI)."""
    if os.environ.get("EVENTTRACK_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"EVENTTRACK_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(
        f"PostgreSQL tests skipped: {reason} (CI sets EVENTTRACK_REQUIRE_POSTGRES=1 to fail instead)",
        allow_module_level=module_level,
    )


def require_driver() -> None:
    """For test modules that import psycopg: skip (or fail in CI) without the postgres extra."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        unavailable(
            f"the postgres extra is not installed ({exc}); pip install -e '.[test]'", module_level=True
        )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a fresh database on the test server, dropped after the session."""
    try:
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        unavailable(f"the postgres extra is not installed ({exc}); pip install -e '.[test]'")
        raise  # unreachable: unavailable() always raises
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        unavailable(f"PostgreSQL is not reachable at {ADMIN_URL} ({first_line})")
        raise
    name = f"eventtrack_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield with_database(ADMIN_URL, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_schema() -> str:
    """A schema name of its own for one test: tests share the database, not tables."""
    return f"t_{secrets.token_hex(6)}"


class TcpProxy:
    """A throwaway TCP proxy on 127.0.0.1 in front of the test server.

    ``cut()`` drops every open connection (as a network failure or a server
    restart does); ``stop()`` also stops listening (the server is down) and
    ``start()`` listens again on the same port (it is back).
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def url(self, database_url: str) -> str:
        parts = urlsplit(database_url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            for a, b in ((client, server), (server, client)):
                thread = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(target)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            self._close(sock)

    def stop(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        self.cut()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = [t for t in self._threads if t.is_alive()]


# -- CI: no PostgreSQL test may be skipped (hooks, imported by conftest.py) ------
_skipped_postgres: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "postgres" in report.keywords:
        _skipped_postgres.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``EVENTTRACK_REQUIRE_POSTGRES=1`` a skipped PostgreSQL test fails the run."""
    if _skipped_postgres and os.environ.get("EVENTTRACK_REQUIRE_POSTGRES") == "1":
        names = ", ".join(_skipped_postgres[:5]) + (" ..." if len(_skipped_postgres) > 5 else "")
        message = f"EVENTTRACK_REQUIRE_POSTGRES=1 but {len(_skipped_postgres)} PostgreSQL tests were skipped"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"{message}: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(name="config", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def config_on_every_store(config: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """The app config on SQLite, then on PostgreSQL (a fresh schema per test).

    A test module runs all its app tests on every store with
    ``from _pg import config_on_every_store``.
    """
    return on_store(request.param, config, request)


def on_store(store: str, config: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """``config`` on ``store``: ``"sqlite"`` as it is, ``"postgresql"`` in a fresh
    schema of the session's database."""
    if store == "postgresql":
        config["EVENTTRACK_STORE_URL"] = request.getfixturevalue("pg_database")
        config["EVENTTRACK_POSTGRES_SCHEMA"] = new_schema()
    return config
