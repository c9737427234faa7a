"""The benchmark suite: ``python bench/run.py`` (see bench/README.md).

Starts each app under gunicorn (2 sync workers, pinned to CPU 0), drives it from
this process (pinned to CPU 1) over 127.0.0.1 only, and measures side by side:
the bare-route ceiling, a naive and a careful hand-written peer, and flask-eventtrack's
endpoints. Every figure is the median of ``--runs`` runs. After every run the
stored events are counted: a run that stored a different number of events than
it got 2xx answers for fails the suite (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import http_request, run_load  # noqa: E402

SERVER_CPU, CLIENT_CPU = 0, 1
PORT = 18731
SECRET = "bench-secret"


@dataclass
class Scenario:
    name: str
    app: str  # bench.apps factory
    events_per_request: int
    make_request: Callable[[int, int], bytes]
    connections: int = 8
    stores: bool = True  # False: a diagnostic app that commits nothing (its stored count must be 0)
    prefilled: bool = False  # True: starts on a copy of the --prefill store instead of an empty one


def cortex_body(size: int, worker: int, n: int | str) -> bytes:
    """A Cortex batch of ``size`` events for up to 50 users, new ones for every ``(worker, n)``."""
    data = [
        {
            "user_id": f"user-{worker}-{n}-{i % 50}",
            "type": "click",
            "item_id": f"item-{i}",
            "timestamp": 1700000000,
            "device": "mobile",
            "price": 9.99,
        }
        for i in range(size)
    ]
    return json.dumps({"data": data}).encode()


def cortex_batch(size: int) -> Callable[[int, int], bytes]:
    """Requests of :func:`cortex_body`: a batch of 1 has one user."""

    # Each worker's body is built once and only its request number changes: the load
    # generator must not be the bottleneck, and the users must not repeat (until
    # 2026-12-07 every batch carried the same 50 users, so the per-user index took
    # them in the same few leaf pages).
    templates: dict[int, bytes] = {}

    def make(worker: int, n: int) -> bytes:
        template = templates.get(worker)
        if template is None:
            template = templates[worker] = cortex_body(size, worker, "%N%")
        data = template.replace(b"%N%", str(n).encode())
        return http_request("POST", "/cortex", data, {"Content-Type": "application/json"})

    return make


def bare_request(worker: int, n: int) -> bytes:
    return http_request("GET", "/bare")


def naive_request(worker: int, n: int) -> bytes:
    body = json.dumps({"user_id": f"user-{worker}-{n}", "type": "click", "item_id": "item-1"}).encode()
    return http_request("POST", "/naive", body, {"Content-Type": "application/json"})


def ibexa_click(worker: int, n: int) -> bytes:
    return http_request(
        "GET", f"/api/00000/click/user{worker}x{n}/1/{n % 1000 + 1}?categorypath=Shoes%2FChildren"
    )


def synerise_custom(token: str) -> Callable[[int, int], bytes]:
    def make(worker: int, n: int) -> bytes:
        body = json.dumps(
            {
                "action": "dog.bark",
                "label": "bark",
                "client": {"id": worker * 1_000_000 + n},
                "params": {"loudness": 3, "mood": "happy"},
            }
        ).encode()
        return http_request(
            "POST",
            "/v4/events/custom",
            body,
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}", "Api-Version": "4.4"},
        )

    return make


def short_count(n: int) -> str:
    """2000000 -> '2M', 250000 -> '250k'."""
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k" if n >= 1000 else str(n)


def cortex_pair(kind: str, setting: str, app: str, **options: bool) -> list[Scenario]:
    """Cortex batches of 1 and of 1000 in another ``setting`` (the end of their names)."""
    return [
        Scenario(
            f"{kind}: Cortex batch of {size}, {setting}",
            app,
            size,
            cortex_batch(size),
            connections=connections,
            **options,
        )
        for size, connections in ((1, 8), (1000, 4))
    ]


def scenarios(token: str | None, diagnose: bool = False, prefill: int = 0) -> list[Scenario]:
    found = [
        Scenario("ceiling: bare Flask route (204)", "bare", 0, bare_request),
        Scenario("peer: naive insert+commit per request", "naive", 1, naive_request),
        Scenario("peer: careful (connection per worker, WAL)", "careful", 1, naive_request),
    ]
    dialects = {p.stem for p in (ROOT / "flask_eventtrack" / "dialects").glob("[a-z]*.py")}
    if "ibexa" in dialects:
        found.append(Scenario("eventtrack: Ibexa click (GET)", "eventtrack", 1, ibexa_click))
    if token:
        found.append(
            Scenario("eventtrack: Synerise /v4/events/custom", "eventtrack", 1, synerise_custom(token))
        )
    found += [
        Scenario("eventtrack: Cortex batch of 1", "eventtrack", 1, cortex_batch(1)),
        Scenario("eventtrack: Cortex batch of 100", "eventtrack", 100, cortex_batch(100), connections=4),
        Scenario("eventtrack: Cortex batch of 1000", "eventtrack", 1000, cortex_batch(1000), connections=4),
    ]
    if prefill:  # the same requests on a table that is not empty
        found += cortex_pair("eventtrack", f"{short_count(prefill)} stored", "eventtrack", prefilled=True)
    if diagnose:  # what the request costs without the store's transaction (nothing is stored)
        found += cortex_pair("diagnostic", "no write", "eventtrack_no_write", stores=False)
        # what Cortex's HTTP exchange alone costs (JSON POST in, 200 JSON out), nothing else
        found.append(
            Scenario(
                "diagnostic: bare route, Cortex exchange", "bare_cortex", 0, cortex_batch(1), stores=False
            )
        )
    return found


# -- the server -------------------------------------------------------------------------


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pg_database(name: str, *, drop: bool = False) -> str:
    """Create (or drop) a throwaway PostgreSQL database for one run; returns its URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def server_env(workdir: Path, synchronous: str, store_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.update(
        FLASK_SECRET_KEY=SECRET,
        FLASK_EVENTTRACK_STORE_URL=store_url or f"sqlite:///{workdir}/events.db",
        FLASK_EVENTTRACK_SQLITE_SYNCHRONOUS=json.dumps(synchronous),
        BENCH_NAIVE_DB=str(workdir / "naive.db"),
        PYTHONPATH=str(ROOT),
    )
    return env


def port_is_free() -> None:
    """Refuse to start when something already listens on PORT: the load would go to
    that server (another benchmark, a test run beside it) and its events would be
    counted against this run's store, or this run's against its."""
    with socket.socket() as probe:
        # As gunicorn binds: connections of a previous run left in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", PORT))
        except OSError as exc:
            raise RuntimeError(
                f"127.0.0.1:{PORT} is in use ({exc.strerror}): is another benchmark or its test running?"
            ) from None


def start_server(
    app: str, env: dict[str, str], workers: int = 2, threads: int = 1
) -> subprocess.Popen[bytes]:
    cmd = [
        "taskset",
        "-c",
        str(SERVER_CPU),
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        str(workers),
        *(["-k", "sync"] if threads == 1 else ["-k", "gthread", "--threads", str(threads)]),
        "-b",
        f"127.0.0.1:{PORT}",
        "--backlog",
        "2048",
        "--log-level",
        "warning",
        f"bench.apps:{app}()",
    ]
    port_is_free()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn ({app}) exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
            time.sleep(0.5)  # let both workers boot
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gunicorn ({app}) did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def worker_rss_mb(master: int) -> float:
    """Mean resident memory of the gunicorn workers (children of the master)."""
    rss = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(master) and "gunicorn" in (entry / "cmdline").read_text(
            errors="ignore"
        ):
            rss.append(int(fields["VmRSS"].split()[0]) / 1024)
    return statistics.mean(rss) if rss else float("nan")


def worker_cpu_seconds(master: int) -> float:
    """User + system CPU time used so far by the gunicorn workers of ``master``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(master):  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def gunicorn_master(proc: subprocess.Popen[bytes]) -> int:
    """taskset execs python, so the Popen pid is the gunicorn master."""
    return proc.pid


def stored_events(workdir: Path, app: str, store_url: str | None = None) -> int:
    path = workdir / ("naive.db" if app in ("naive", "careful") else "events.db")
    if app.startswith("bare"):
        return 0
    if app.startswith("eventtrack") and store_url:
        import psycopg

        with psycopg.connect(store_url) as pg:
            (count,) = pg.execute("SELECT count(*) FROM eventtrack.events").fetchone()  # type: ignore[misc]
        return int(count)
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    return int(count)


def prefilled_database(rows_count: int, workdir: Path) -> Path:
    """A SQLite store already holding ``rows_count`` events, made once per suite run and
    copied into each flask-eventtrack run: how ingest holds up on a table that is not
    empty. The rows are shaped as the store writes them (``bench.indexes.rows``), with
    ids older than the benchmark's, as earlier traffic would have left them."""
    from bench.indexes import BATCH, rows

    path = workdir / "prefilled.db"
    migrate_store(server_env(workdir, "NORMAL", f"sqlite:///{path}"))
    data = rows(rows_count)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        insert = f"INSERT INTO events VALUES ({','.join('?' * len(data[0]))})"
        for i in range(0, len(data), BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, data[i : i + BATCH])
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # one self-contained file to copy
    finally:
        conn.close()
    return path


def migrate_store(env: dict[str, str]) -> None:
    """Create the tables before the workers start, as a deployment does with
    ``flask eventtrack migrate``: workers that migrate themselves keep
    sqlite-utils in memory (~2.5 MB each), which is not what serving costs."""
    command = [sys.executable, "-m", "flask", "--app", "example_app", "eventtrack", "migrate"]
    subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=True)


def make_token(workdir: Path, env: dict[str, str]) -> str | None:
    """A Synerise bearer token for tenant 'bench', minted like a client would get one."""
    code = (
        "import sys\n"
        "from example_app import create_app\n"
        "from flask_eventtrack import get_state\n"
        "from flask_eventtrack.keys import create_key\n"
        "from flask_eventtrack.tokens import Tokens, app_secret_keys\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    store = get_state().store\n"
        "    key = create_key(store, 'bench', 'api', 'bench')\n"
        "    print(Tokens(app_secret_keys(app), 3600, store).issue('bench', key.id))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else None


# -- measurements -------------------------------------------------------------------------


def measure(
    scenario: Scenario,
    seconds: float,
    synchronous: str,
    token_env: dict[str, str] | None,
    store: str,
    workers: int = 2,
    threads: int = 1,
    prefilled: tuple[Path, int] | None = None,
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="etbench-") as tmp:
        workdir = Path(tmp)
        pg_name = f"etbench_{os.getpid()}"
        store_url = (
            pg_database(pg_name) if store == "postgresql" and scenario.app.startswith("eventtrack") else None
        )
        env = server_env(workdir, synchronous, store_url)
        already = 0  # events in the database before the run
        if scenario.prefilled and prefilled is not None:
            shutil.copyfile(prefilled[0], workdir / "events.db")
            already = prefilled[1]
        if token_env is not None and "Synerise" in scenario.name:
            # the token's key must be in this run's database
            token = make_token(workdir, env)
            if token is None:
                raise RuntimeError("could not mint a Synerise token")
            scenario = Scenario(scenario.name, scenario.app, 1, synerise_custom(token))
        if scenario.app.startswith("eventtrack"):
            migrate_store(env)
        proc = start_server(scenario.app, env, workers, threads)
        try:
            # the warm-up's clients count from another worker number, so its users do not come back
            warm_up = scenario.connections

            def warm_request(worker: int, n: int) -> bytes:
                return scenario.make_request(worker + warm_up, n)

            warm = run_load(PORT, warm_request, connections=scenario.connections, seconds=1.0)
            cpu_before = worker_cpu_seconds(gunicorn_master(proc))
            result = run_load(PORT, scenario.make_request, connections=scenario.connections, seconds=seconds)
            cpu = worker_cpu_seconds(gunicorn_master(proc)) - cpu_before
            rss = worker_rss_mb(gunicorn_master(proc))
        finally:
            stop_server(proc)
        acknowledged = (warm.ok + result.ok) * scenario.events_per_request if scenario.stores else 0
        stored = stored_events(workdir, scenario.app, store_url) - already
        if store_url:
            pg_database(pg_name, drop=True)
    rps = result.ok / result.seconds
    return {
        "rps": rps,
        "eps": rps * scenario.events_per_request,
        "cpu_us": cpu / max(result.ok, 1) * 1e6,
        "p50_ms": result.percentile(50) * 1000,
        "p99_ms": result.percentile(99) * 1000,
        "rss_mb": rss,
        "non_2xx": result.failed + result.errors + warm.failed + warm.errors,
        "acknowledged": acknowledged,
        "stored": stored,
        "lossless": float(stored == acknowledged),
    }


def raw_executemany(count: int = 200_000) -> dict[str, float]:
    """Raw sqlite3 executemany in batches of 1000 on the server CPU (the reference for batches),
    of rows shaped as the store writes them (``bench.indexes.rows``): into a minimal table of
    five of their columns, and into our schema with its indexes."""
    code = f"""
import json
from bench.indexes import rows, rows_per_second
minimal = "CREATE TABLE events (id TEXT PRIMARY KEY, user TEXT, type TEXT, occurred_at TEXT, props TEXT)"
our_rows = rows({count})
minimal_rows = [(r[0], r[4], r[3], r[8], r[11]) for r in our_rows]
print(json.dumps({{
    "minimal": rows_per_second(minimal, minimal_rows, wal_autocheckpoint=None),
    "eventtrack_schema": rows_per_second((), our_rows),
}}))
"""
    out = subprocess.run(
        ["taskset", "-c", str(SERVER_CPU), sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    measured: dict[str, float] = json.loads(out.stdout)
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (median reported)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--synchronous", default="NORMAL", help="EVENTTRACK_SQLITE_SYNCHRONOUS for the runs")
    parser.add_argument("--only", help="run only scenarios whose name contains this text ('a|b': either)")
    parser.add_argument(
        "--store",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="flask-eventtrack's store (postgresql: a throwaway database per run on 127.0.0.1:5432)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (all pinned to one CPU)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per worker: 1 runs sync workers, more runs gthread workers (every app alike)",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also run the example app with its store write skipped (where the time goes)",
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        metavar="ROWS",
        help="also run Cortex batches of 1 and 1000 on a SQLite store already holding ROWS events",
    )
    args = parser.parse_args()
    if args.prefill and args.store != "sqlite":
        parser.error("--prefill is for the SQLite store")
    os.sched_setaffinity(0, {CLIENT_CPU})

    has_synerise = (ROOT / "flask_eventtrack" / "tokens.py").exists() and (
        ROOT / "flask_eventtrack" / "dialects" / "synerise.py"
    ).exists()
    chosen = scenarios("placeholder" if has_synerise else None, args.diagnose, args.prefill)
    if args.only:
        chosen = [
            s for s in chosen if any(part in s.name for part in args.only.split("|")) or s.app == "bare"
        ]
    # Rounds outside, scenarios inside: slow drift of a shared machine hits every
    # scenario alike instead of whichever happened to run last.
    all_runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in chosen}
    # A with block: a run that raises (a busy port, a server that does not start) leaves no
    # copy of a big prefilled store in /tmp.
    with tempfile.TemporaryDirectory(prefix="etbench-prefill-") as prefill_dir:
        prefilled = None
        if any(s.prefilled for s in chosen):
            print(f"filling a store with {args.prefill} events ...", file=sys.stderr)
            prefilled = (prefilled_database(args.prefill, Path(prefill_dir)), args.prefill)
        for round_ in range(args.runs):
            for scenario in chosen:
                run = measure(
                    scenario,
                    args.seconds,
                    args.synchronous,
                    {} if has_synerise else None,
                    args.store,
                    args.workers,
                    args.threads,
                    prefilled,
                )
                all_runs[scenario.name].append(run)
                print(
                    f"round {round_ + 1}: {scenario.name}: {run['rps']:.0f} req/s, "
                    f"{run['cpu_us']:.0f} us CPU/request, stored==2xx: {bool(run['lossless'])}",
                    file=sys.stderr,
                )
    table = []
    ok = True
    for scenario in chosen:
        runs = all_runs[scenario.name]
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        lossless = all(r["lossless"] for r in runs)
        ok &= lossless
        table.append(
            {
                "scenario": scenario.name,
                **median,
                "lossless": lossless,
                "runs": runs,
                "events_per_request": scenario.events_per_request,
            }
        )
    raw = raw_executemany()
    ceiling = table[0]
    print_table(table, ceiling, raw, args)
    save(table, raw, args)
    return 0 if ok else 1


def print_table(
    table: list[dict[str, Any]], ceiling: dict[str, Any], raw: dict[str, float], args: argparse.Namespace
) -> None:
    print(
        f"\nflask-eventtrack benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"gunicorn {args.workers} {worker_kind(args.threads)} on CPU {SERVER_CPU}, load on CPU {CLIENT_CPU}, "
        f"median of {args.runs} x {args.seconds:g}s, store {args.store}"
        + (
            f" (WAL, synchronous={args.synchronous})"
            if args.store == "sqlite"
            else " (default synchronous_commit=on: every commit is flushed to the WAL on disk)"
        )
        + "\n"
    )
    header = (
        f"{'scenario':44} {'req/s':>8} {'events/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'CPU us':>7} "
        f"{'RSS MB':>7} {'x ceil':>7} {'xRSS':>5}  stored==2xx"
    )
    print(header)
    print("-" * len(header))
    for row in table:
        print(
            f"{row['scenario']:44} {row['rps']:8.0f} {row['eps']:10.0f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
            f"{row['cpu_us']:7.0f} {row['rss_mb']:7.1f} {row['rps'] / ceiling['rps']:7.2f} {row['rss_mb'] / ceiling['rss_mb']:5.2f}  "
            f"{'yes' if row['lossless'] else 'NO: LOST OR EXTRA EVENTS'}"
        )
    print(
        "\nCPU us = worker CPU time per 2xx request (user + system), less noisy than req/s on a shared machine;"
        " x ceil = req/s / ceiling req/s; xRSS = RSS per worker / ceiling's"
    )
    print(
        f"\nraw sqlite3 executemany, batches of 1000, CPU {SERVER_CPU}: "
        f"{raw['minimal']:.0f} rows/s (minimal table), {raw['eventtrack_schema']:.0f} rows/s (our schema and indexes)"
    )
    big = next((r for r in table if r["scenario"].endswith("batch of 1000")), None)
    if big:
        print(
            f"Cortex batches of 1000 vs raw executemany: {big['eps'] / raw['minimal']:.2f}x (minimal table), "
            f"{big['eps'] / raw['eventtrack_schema']:.2f}x (same schema)"
        )


def worker_kind(threads: int) -> str:
    return "sync workers" if threads == 1 else f"gthread workers x {threads} threads"


def save(table: list[dict[str, Any]], raw: dict[str, float], args: argparse.Namespace) -> None:
    out = ROOT / "bench" / "results" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "raw_executemany": raw,
                "scenarios": table,
                "cpu": os.cpu_count(),
                "python": sys.version,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
