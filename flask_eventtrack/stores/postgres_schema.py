"""The PostgreSQL store's schema, versioned: one function per version.

``migrate`` runs on the first use of a store in each process. It takes a
transaction-scoped advisory lock first, so when several app servers start at
once one of them migrates and the others wait, then find nothing to do. DDL is
transactional in PostgreSQL: a migration that fails leaves no half-made schema.
A later release adds ``_m002_...`` to :data:`MIGRATIONS`.

Text columns use the ``"C"`` collation, so ordering (ids, stats, catalog
params) is byte order, exactly as in the SQLite store. ``props`` is ``json``,
not ``jsonb``: ``json`` keeps the text as written, so key order and number
spelling read back exactly as the SQLite store returns them (``jsonb`` would
reorder keys and turn ``1e+16`` into an integer), and exports are identical.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

log = logging.getLogger("flask_eventtrack")

#: Advisory-lock key of schema migrations (any fixed 64-bit number).
MIGRATION_LOCK = 0x6576_656E_7474_726B  # "eventtrk"


def _m001_initial(conn: psycopg.Connection[Any]) -> None:
    """Version 1: the tables of the SQLite store's ``m001_initial``."""
    conn.execute(
        """
        CREATE TABLE events (
          id text COLLATE "C" PRIMARY KEY,
          tenant text COLLATE "C" NOT NULL,
          source text COLLATE "C" NOT NULL,
          type text COLLATE "C" NOT NULL,
          "user" text COLLATE "C",
          user_kind text COLLATE "C",
          item_type text COLLATE "C",
          item_id text COLLATE "C",
          occurred_at timestamptz NOT NULL,
          received_at timestamptz NOT NULL,
          original_time text,
          props json NOT NULL,
          dedup_key text COLLATE "C",
          status text COLLATE "C"
        );
        CREATE INDEX events_tenant_type_time ON events (tenant, type, occurred_at);
        CREATE INDEX events_user_time ON events ("user", occurred_at);
        -- Partial unique index: events without a dedup key never conflict.
        CREATE UNIQUE INDEX events_dedup ON events (tenant, source, dedup_key)
          WHERE dedup_key IS NOT NULL;

        CREATE TABLE rejected (
          id text COLLATE "C" PRIMARY KEY,
          tenant text COLLATE "C",
          source text COLLATE "C",
          type text COLLATE "C",
          reason text COLLATE "C",
          message text,
          payload text,
          received_at timestamptz NOT NULL
        );
        CREATE INDEX rejected_tenant_source_time ON rejected (tenant, source, received_at);

        CREATE TABLE identity_links (
          tenant text COLLATE "C" NOT NULL,
          "user" text COLLATE "C" NOT NULL,
          target text COLLATE "C" NOT NULL,
          created_at timestamptz NOT NULL,
          PRIMARY KEY (tenant, "user", target)
        );
        CREATE INDEX identity_links_target ON identity_links (target);

        -- The catalog part of event definitions: count and last_seen are derived
        -- from the events when read.
        CREATE TABLE definitions (
          tenant text COLLATE "C" NOT NULL,
          source text COLLATE "C" NOT NULL,
          name text COLLATE "C" NOT NULL,
          first_seen timestamptz NOT NULL,
          params jsonb NOT NULL,
          PRIMARY KEY (tenant, source, name)
        );

        CREATE TABLE api_keys (
          id text COLLATE "C" PRIMARY KEY,
          tenant text COLLATE "C" NOT NULL,
          kind text COLLATE "C" NOT NULL,
          key_hash text COLLATE "C" NOT NULL UNIQUE,
          label text,
          created_at timestamptz NOT NULL,
          revoked_at timestamptz
        );
        """
    )


def _m002_profiles(conn: psycopg.Connection[Any]) -> None:
    """Version 2: profiles of the profile events API (the SQLite store's ``m002_profiles``)."""
    conn.execute(
        """
        CREATE TABLE profiles (
          tenant text COLLATE "C" NOT NULL,
          user_key text COLLATE "C" NOT NULL,
          email text,
          attributes json NOT NULL,
          created_at timestamptz NOT NULL,
          updated_at timestamptz NOT NULL,
          PRIMARY KEY (tenant, user_key)
        );
        """
    )


#: version -> migration; applied in order, each once, recorded in ``schema_version``.
MIGRATIONS: dict[int, Callable[[psycopg.Connection[Any]], None]] = {
    1: _m001_initial,
    2: _m002_profiles,
}
SCHEMA_VERSION = max(MIGRATIONS)


def migrate(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    """Create ``schema`` and apply every pending migration; returns the versions applied."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        # Only what is missing is created: PostgreSQL checks the privilege of a CREATE
        # ... IF NOT EXISTS before it looks, so an app role without CREATE on the
        # database could not even start on a schema made for it beforehand.
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        elif conn.execute("SELECT has_schema_privilege(%s, 'USAGE')", (schema,)).fetchone() != (True,):
            # Else search_path would skip it in silence, and the tables "not exist".
            raise psycopg.errors.InsufficientPrivilege(
                f"permission denied for schema {schema}: the role needs USAGE on it"
                " (and SELECT, INSERT, UPDATE on its tables)"
            )
        conn.execute(
            "SELECT set_config('search_path', %s, true), set_config('TimeZone', 'UTC', true)",
            (sql.Identifier(schema).as_string(conn),),
        )
        if conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,):
            conn.execute(
                "CREATE TABLE schema_version ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
        if done and max(done) > SCHEMA_VERSION:
            log.warning(
                "The PostgreSQL schema %r is at version %s, newer than this release knows (%s);"
                " upgrade flask-eventtrack on every app server.",
                schema,
                max(done),
                SCHEMA_VERSION,
            )
        for version in sorted(MIGRATIONS):
            if version in done:
                continue
            MIGRATIONS[version](conn)
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                (version, MIGRATIONS[version].__name__.lstrip("_")),
            )
            applied.append(version)
    return applied
