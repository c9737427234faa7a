"""What each B-tree of the events table costs a batch: ``python bench/indexes.py``.

Raw ``sqlite3`` ``executemany`` in batches of 1000 rows shaped as the store writes
them (uuid7-style ids in order, 32-hex user hashes of 50 users per batch, ISO
times, a small ``props``), into our schema and into the same schema with one
index dropped at a time, then into the bare table. No HTTP, no validation: the
rows/s here bound what a batch endpoint can reach with that schema. Run it under
``taskset -c 0``; rounds are interleaved, the median is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_eventtrack.stores.sqlite_schema import migrate  # noqa: E402

BATCH = 1000
_COLUMNS = (
    "id TEXT, tenant TEXT, source TEXT, type TEXT, user TEXT, user_kind TEXT, item_type TEXT,"
    " item_id TEXT, occurred_at TEXT, received_at TEXT, original_time TEXT, props TEXT,"
    " dedup_key TEXT, status TEXT"
)
VARIANTS: dict[str, tuple[str, ...] | str] = {
    "our schema (4 B-trees)": (),
    "without the (user, occurred_at) index": ("idx_events_user_occurred_at",),
    "without the (tenant, type, occurred_at) index": ("idx_events_tenant_type_occurred_at",),
    "without the partial dedup index": ("idx_events_dedup",),
    "the table and its id key only": f"CREATE TABLE events (id TEXT PRIMARY KEY{_COLUMNS[7:]})",
    "the table only (rowid)": f"CREATE TABLE events ({_COLUMNS})",
}


def rows(count: int) -> list[tuple[object, ...]]:
    return [
        (
            str(uuid.UUID(int=(0x01A24E4809CF7000 << 64) + i)),
            "default",
            "cortex",
            "click",
            hashlib.md5(f"user-{i % 50}-{i // BATCH}".encode()).hexdigest(),
            "user_id",
            None,
            f"item-{i}",
            "2023-11-14T22:13:20.000Z",
            "2026-12-07T02:14:33.678Z",
            None,
            '{"device":"mobile","price":9.99}',
            None,
            "accepted",
        )
        for i in range(count)
    ]


def rows_per_second(
    variant: tuple[str, ...] | str,
    data: list[tuple[object, ...]],
    *,
    wal_autocheckpoint: int | None = 10000,
    report_every: int | None = None,
) -> float:
    """Rows/s of ``data`` into a new table: ``variant`` is its DDL, or the indexes to
    drop from our schema. Also the suite's reference (``bench/run.py``). With
    ``report_every``, also prints the rate of every that many rows, as the table grows."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "indexes.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if wal_autocheckpoint is not None:  # as the store sets it
            conn.execute(f"PRAGMA wal_autocheckpoint={wal_autocheckpoint}")
        if isinstance(variant, str):
            conn.execute(variant)
        else:
            migrate(conn)
            for index in variant:
                conn.execute(f"DROP INDEX {index}")
        insert = f"INSERT INTO events VALUES ({','.join('?' * len(data[0]))})"
        start = segment_start = time.perf_counter()
        for i in range(0, len(data), BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, data[i : i + BATCH])
            conn.execute("COMMIT")
            if report_every and (i + BATCH) % report_every == 0:
                now = time.perf_counter()
                rate = report_every / (now - segment_start)
                print(f"  rows {i + BATCH - report_every:>9} to {i + BATCH:<9} {rate:9.0f} rows/s")
                segment_start = now
        elapsed = time.perf_counter() - start
        conn.close()
    return len(data) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="rows per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median printed)")
    parser.add_argument(
        "--growth", action="store_true", help="instead: our schema once, the rate of every tenth of --rows"
    )
    args = parser.parse_args()
    data = rows(args.rows)
    if args.growth:
        print(f"raw executemany into our schema, batches of {BATCH}, as the table grows to {args.rows} rows:")
        rows_per_second((), data, report_every=max(BATCH, args.rows // 10 // BATCH * BATCH))
        return
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, variant in VARIANTS.items():
            results[name].append(rows_per_second(variant, data))
    print(f"raw executemany, batches of {BATCH}, {args.rows} rows, median of {args.rounds}:")
    for name, values in results.items():
        print(f"  {name:48s} {statistics.median(values):9.0f} rows/s")


if __name__ == "__main__":
    main()
