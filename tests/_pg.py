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
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

ADMIN_URL = os.environ.get("EVENTTRACK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def unavailable(reason: str) -> None:
    """Skip, or fail when PostgreSQL is mandatory (CI)."""
    if os.environ.get("EVENTTRACK_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"EVENTTRACK_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason} (CI sets EVENTTRACK_REQUIRE_POSTGRES=1 to fail instead)")


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
