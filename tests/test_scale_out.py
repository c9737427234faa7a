"""Several app servers on one PostgreSQL database.

Two separate gunicorn processes (different ports, same database) serve the
example app; interleaved, concurrent traffic goes to both: Cortex batches,
racing Synerise ``eventSalt`` overwrites, duplicate profile-API ``orderId``s
and e-mail opens inside the 20-minute window. Every acknowledged event must be
stored exactly once, and every rule must hold across the processes.
Everything stays on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _pg import new_schema

from flask_eventtrack import store_from_url
from flask_eventtrack.keys import create_key
from flask_eventtrack.stores import EventQuery, Store

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parent.parent
SECRET = "scale-out-secret"
EMAIL = "buyer@example.com"
RACERS = 12
SALTED = {"action": "dog.bark", "client": {"id": 77}, "label": "bark", "time": "2026-01-05T10:00:00Z"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 15
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode("utf-8", "replace")


class Servers:
    """Two gunicorn processes (one worker, eight threads each) on one database."""

    def __init__(self, database_url: str, schema: str, logs: Path) -> None:
        env = {
            **os.environ,
            "FLASK_SECRET_KEY": SECRET,
            "FLASK_EVENTTRACK_STORE_URL": database_url,
            "FLASK_EVENTTRACK_POSTGRES_SCHEMA": schema,
            "FLASK_EVENTTRACK_POSTGRES_POOL_MAX_SIZE": "8",
        }
        self.urls: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        for n in range(2):
            port = _free_port()
            log = logs / f"server{n}.log"
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "gunicorn",
                            "-w",
                            "1",
                            "-k",
                            "gthread",
                            "--threads",
                            "8",
                            "-b",
                            f"127.0.0.1:{port}",
                            "--timeout",
                            "30",
                            "example_app:create_app()",
                        ],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )  # fmt: skip
                )
            self.urls.append(f"http://127.0.0.1:{port}")
            self.logs.append(log)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for url, proc, log in zip(self.urls, self.procs, self.logs, strict=True):
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"app server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    if request(url + "/", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"app server {url} not ready in {timeout} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def schema() -> str:
    return new_schema()


@pytest.fixture
def store(pg_database: str, schema: str) -> Iterator[Store]:
    store = store_from_url(pg_database, schema=schema)
    yield store
    store.close()


@pytest.fixture
def servers(pg_database: str, schema: str, store: Store, tmp_path: Path) -> Iterator[Servers]:
    store.check()  # the schema exists before the servers race to it
    servers = Servers(pg_database, schema, tmp_path)
    try:
        servers.wait_ready()
        yield servers
    finally:
        servers.stop()


def test_two_app_servers_lose_and_duplicate_nothing(servers: Servers, store: Store) -> None:
    a, b = servers.urls
    api_key = create_key(store, "acme", "api").secret
    status, body = request(a + "/v4/auth/token", {"apiKey": api_key})
    assert status == 200, body
    bearer = {"Authorization": f"Bearer {body['token']}"}
    profile_auth = {"Authorization": api_key}
    status, body = request(b + "/v1/user", {"user": {"email": EMAIL}}, profile_auth)
    assert status == 200, body

    # (kind, server, path, body, headers); every kind goes to both servers, interleaved
    calls: list[tuple[str, str, str, Any, dict[str, str]]] = []
    for n in range(40):
        batch = {"data": [{"user_id": f"u{n}-{i}", "type": "view", "batch": n, "i": i} for i in range(25)]}
        calls.append(("cortex", (a, b)[n % 2], "/cortex", batch, {}))
    for n in range(RACERS):
        salted = {**SALTED, "eventSalt": "s1", "params": {"v": n}}
        calls.append(("salt", (a, b)[n % 2], "/v4/events/custom", salted, bearer))
        order = {"user": {"email": EMAIL}, "event": {"confirmation": {"orderId": "O-1", "total": n}}}
        calls.append(("order", (b, a)[n % 2], "/v1/event/", order, profile_auth))
        opened = {"user": {"email": EMAIL}, "event": {"email_open": {"campaign_id": f"c{n}"}}}
        calls.append(("open", (a, b)[n % 2], "/v1/event/", opened, profile_auth))
    random.Random(7).shuffle(calls)
    # The racing kinds start together (one barrier each), while Cortex batches keep both servers busy.
    barriers = {kind: threading.Barrier(RACERS) for kind in ("salt", "order", "open")}

    def send(call: tuple[str, str, str, Any, dict[str, str]]) -> tuple[str, int, Any, Any]:
        kind, server, path, payload, headers = call
        if kind in barriers:
            barriers[kind].wait(timeout=30)
        status, answer = request(server + path, payload, headers)
        return kind, status, answer, payload

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        answers = list(pool.map(send, calls))

    # every request was acknowledged: nothing was refused, nothing failed
    assert [(k, s, r) for k, s, r, _ in answers if s not in (200, 202)] == []

    # Cortex: each acknowledged event stored exactly once
    kept = Counter((e.props["batch"], e.props["i"]) for e in store.iter_events(EventQuery(source="cortex")))
    assert len(kept) == 40 * 25 and set(kept.values()) == {1}

    # Synerise eventSalt: racing overwrites of one event leave exactly one, holding one of the sent values
    (salted,) = store.iter_events(EventQuery(source="synerise"))
    assert salted.type == "dog.bark" and salted.props["v"] in range(RACERS)
    assert salted.occurred_at is not None and salted.occurred_at.isoformat().startswith("2026-01-05T10:00:00")

    # profile API: one confirmation per orderId and one e-mail open per 20 minutes, whatever server took it
    messages = Counter((k, r["results"]["message"]) for k, s, r, _ in answers if k in ("order", "open"))
    assert messages == {("order", "Event created"): 1, ("order", "Event discarded"): RACERS - 1,
                        ("open", "Event created"): 1, ("open", "Event discarded"): RACERS - 1}  # fmt: skip
    assert store.count_events(EventQuery(source="profile", type="confirmation")) == 1
    assert store.count_events(EventQuery(source="profile", type="email_open")) == 1
    duplicates = Counter(
        r.type for r in store.iter_rejected(EventQuery(source="profile")) if r.reason == "duplicate"
    )
    assert duplicates == {"confirmation": RACERS - 1, "email_open": RACERS - 1}

    # and nothing else slipped in
    assert store.count_events(EventQuery()) == 40 * 25 + 1 + 2
