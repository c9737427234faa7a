"""The benchmark suite's prefilled runs: a store that already holds events, and a loss
check that counts only the events of the run itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.run import Scenario, cortex_batch, measure, prefilled_database, short_count


def test_prefilled_database_is_a_migrated_store_holding_the_rows(tmp_path: Path) -> None:
    path = prefilled_database(2500, tmp_path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (2500,)
        assert conn.execute("SELECT count(DISTINCT id) FROM events").fetchone() == (2500,)
        migrations = conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
    assert migrations >= 2
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def test_a_prefilled_run_counts_only_its_own_events(tmp_path: Path) -> None:
    """Under gunicorn, for half a second: the events acknowledged with a 2xx are the
    events added to the copy, not all the events in it."""
    template = prefilled_database(1000, tmp_path)
    scenario = Scenario("Cortex batch of 1, prefilled", "eventtrack", 1, cortex_batch(1), prefilled=True)
    run = measure(scenario, 0.5, "NORMAL", None, "sqlite", workers=1, prefilled=(template, 1000))
    assert run["acknowledged"] > 0
    assert run["stored"] == run["acknowledged"]
    assert run["lossless"] == 1.0
    with sqlite3.connect(template) as conn:  # each run writes into its own copy
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1000,)


def test_short_count() -> None:
    assert [short_count(n) for n in (2_000_000, 1_500_000, 250_000, 999)] == ["2M", "1.5M", "250k", "999"]


def test_a_server_does_not_start_on_a_port_another_one_holds(tmp_path: Path) -> None:
    """The load of a run must reach its own server: with another one listening on the
    port (a second benchmark), it would be measured and its events miscounted."""
    import socket

    import pytest

    from bench.run import PORT, server_env, start_server

    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", PORT))
        other.listen()
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{PORT} is in use"):
            start_server("bare", server_env(tmp_path, "NORMAL"))
