"""The SQLite store's schema, versioned as sqlite-utils migrations.

sqlite-utils (and what it imports: dateutil, pluggy, ctypes; ~2.6 MB per
process) is imported only when a migration is pending: a worker starting on an
up-to-date database checks the applied names with plain ``sqlite3``.
Later releases append ``m003_...`` functions to :data:`MIGRATIONS`.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["MIGRATIONS", "migrate"]

#: sqlite-utils' migration set name; its table is ``_sqlite_migrations``.
MIGRATION_SET = "flask_eventtrack"


def m001_initial(db: Database) -> None:
    """Version 1 of the schema. Later releases add ``m002_...`` functions."""
    db.table("events").create(
        {
            "id": str,
            "tenant": str,
            "source": str,
            "type": str,
            "user": str,
            "user_kind": str,
            "item_type": str,
            "item_id": str,
            "occurred_at": str,
            "received_at": str,
            "original_time": str,
            "props": str,
            "dedup_key": str,
            "status": str,
        },
        pk="id",
        not_null={"tenant", "source", "type", "occurred_at", "received_at", "props"},
        if_not_exists=True,
    )
    db.table("events").create_index(["tenant", "type", "occurred_at"], if_not_exists=True)
    db.table("events").create_index(["user", "occurred_at"], if_not_exists=True)
    # Partial unique index: events without a dedup key never conflict.
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS idx_events_dedup"
        " ON events (tenant, source, dedup_key) WHERE dedup_key IS NOT NULL"
    )
    db.table("rejected").create(
        {
            "id": str,
            "tenant": str,
            "source": str,
            "type": str,
            "reason": str,
            "message": str,
            "payload": str,
            "received_at": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db.table("rejected").create_index(["tenant", "source", "received_at"], if_not_exists=True)
    db.table("identity_links").create(
        {"tenant": str, "user": str, "target": str, "created_at": str},
        pk=("tenant", "user", "target"),
        if_not_exists=True,
    )
    db.table("identity_links").create_index(["target"], if_not_exists=True)
    # The catalog part of event definitions; count and last_seen are derived
    # from the events table when read, so the write path touches this table
    # only when a type or a parameter name is new.
    db.table("definitions").create(
        {"tenant": str, "source": str, "name": str, "first_seen": str, "params": str},
        pk=("tenant", "source", "name"),
        if_not_exists=True,
    )
    db.table("api_keys").create(
        {
            "id": str,
            "tenant": str,
            "kind": str,
            "key_hash": str,
            "label": str,
            "created_at": str,
            "revoked_at": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db.table("api_keys").create_index(["key_hash"], unique=True, if_not_exists=True)


def m002_profiles(db: Database) -> None:
    """Profiles of the profile events API: attributes per hashed user key."""
    db.table("profiles").create(
        {
            "tenant": str,
            "user_key": str,
            "email": str,
            "attributes": str,
            "created_at": str,
            "updated_at": str,
        },
        pk=("tenant", "user_key"),
        not_null={"attributes", "created_at", "updated_at"},
        if_not_exists=True,
    )


MIGRATIONS = (m001_initial, m002_profiles)


def migrate(conn: sqlite3.Connection) -> None:
    """Apply pending migrations (none: no sqlite-utils import, one query)."""
    try:
        applied = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = ?", (MIGRATION_SET,)
            )
        }
    except sqlite3.OperationalError:  # a new database: no migrations table yet
        applied = set()
    if applied >= {fn.__name__ for fn in MIGRATIONS}:
        return
    from sqlite_utils import Database, Migrations

    migrations = Migrations(MIGRATION_SET)
    for fn in MIGRATIONS:
        migrations()(fn)
    migrations.apply(Database(conn, execute_plugins=False))
