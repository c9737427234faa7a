"""SQL text and row conversion of the PostgreSQL store (see ``postgres.py``).

Statements mirror the SQLite store's, one for one, so both stores keep the
same semantics; values are always parameters, never spliced into the SQL.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from ..events import Event, format_time
from . import MAX_DEFINITION_PARAMS

COLUMNS = (
    'id, tenant, source, type, "user", user_kind, item_type, item_id,'
    " occurred_at, received_at, original_time, props, dedup_key, status"
)
INSERT = f"INSERT INTO events ({COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
ON_KEY = " ON CONFLICT (tenant, source, dedup_key) WHERE dedup_key IS NOT NULL"
INSERT_FIRST_WINS = INSERT + ON_KEY + " DO NOTHING"
# Replacing keeps the stored id and occurred_at; everything else is the new event's.
INSERT_REPLACE = (
    INSERT + ON_KEY + " DO UPDATE SET user_kind=excluded.user_kind, item_type=excluded.item_type,"
    " item_id=excluded.item_id, received_at=excluded.received_at,"
    " original_time=excluded.original_time, props=excluded.props, status=excluded.status"
    " RETURNING id, occurred_at"
)
INSERT_REJECTED = (
    "INSERT INTO rejected (id, tenant, source, type, reason, message, payload, received_at)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
)
# Only when a type or a parameter name is new; count and last_seen are derived
# from the events when read (as in the SQLite store), so a hot event type
# never makes app servers queue on its catalog row. The cap holds in the row
# itself, whatever each worker remembers: stored names stay, and new ones fill
# the room left, smallest first (the same in every worker). A full row is left
# alone (the WHERE runs before SET, so LIMIT is never negative).
UPSERT_DEFINITION = f"""
INSERT INTO definitions AS d (tenant, source, name, first_seen, params)
VALUES (%s, %s, %s, %s, %s::jsonb)
ON CONFLICT (tenant, source, name) DO UPDATE SET
  params = (SELECT coalesce(jsonb_agg(v ORDER BY v COLLATE "C"), '[]') FROM (
      SELECT jsonb_array_elements_text(d.params)
      UNION (SELECT v FROM jsonb_array_elements_text(excluded.params) AS new(v) WHERE NOT d.params ? v
             ORDER BY v COLLATE "C" LIMIT {MAX_DEFINITION_PARAMS} - jsonb_array_length(d.params))
  ) AS names(v))
WHERE NOT d.params @> excluded.params AND jsonb_array_length(d.params) < {MAX_DEFINITION_PARAMS}
"""
# {only}: an optional tenant filter of the events counted (the tenant index serves it).
DEFINITIONS = """
SELECT d.tenant, d.source, d.name, d.first_seen, e.last_seen, coalesce(e.count, 0) AS count, d.params
FROM definitions d LEFT JOIN (
  SELECT tenant, source, type, max(received_at) AS last_seen, count(*) AS count
  FROM events{only} GROUP BY tenant, source, type
) e ON e.tenant = d.tenant AND e.source = d.source AND e.type = d.name
"""
WITHIN_WINDOW = (
    'SELECT 1 FROM events WHERE "user" = %s AND occurred_at > %s AND occurred_at < %s'
    " AND tenant = %s AND source = %s AND type = %s LIMIT 1"
)


def to_ms(value: datetime) -> datetime:
    """Millisecond precision, as the SQLite store keeps (and compares) times."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def as_text(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def lock_key(*parts: str | None) -> int:
    """A stable signed 64-bit advisory-lock key, the same in every process."""
    data = "\x1f".join("\x00" if p is None else p for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def event_row(event: Event, props: str) -> tuple[Any, ...]:
    return event.to_row(time=to_ms, props=props)
