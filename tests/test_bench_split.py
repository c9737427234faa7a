"""bench/split.py's pieces: the timer inside each served app, the environ it rebuilds from
a raw request, and the bare route that stands for Cortex's HTTP exchange."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import apps
from bench.run import cortex_batch, ibexa_click
from bench.split import environ_of


def test_inside_timer_counts_every_request_and_flushes_every_hundred(tmp_path: Path) -> None:
    calls = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(environ["PATH_INFO"])
        sum(range(2000))  # some CPU time to count
        return [b"ok"]

    timer = apps.InsideTimer(app, str(tmp_path))
    for _ in range(apps.InsideTimer.FLUSH_EVERY):
        assert timer({"PATH_INFO": "/x"}, None) == [b"ok"]
    (written,) = tmp_path.iterdir()
    ns, requests = map(int, written.read_text().split())
    assert requests == apps.InsideTimer.FLUSH_EVERY == len(calls)
    assert ns > 0
    timer({"PATH_INFO": "/x"}, None)  # not flushed until the next hundred
    assert written.read_text() == f"{ns} {requests}"
    assert timer.requests == requests + 1


def test_environ_of_rebuilds_the_raw_request() -> None:
    raw = cortex_batch(1)(0, 7)
    environ = environ_of(raw)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/cortex"
    assert environ["CONTENT_TYPE"] == "application/json"
    assert int(environ["CONTENT_LENGTH"]) == len(body)
    assert environ["wsgi.input"].read() == body
    click = environ_of(ibexa_click(0, 3))
    assert click["REQUEST_METHOD"] == "GET"
    assert click["PATH_INFO"] == "/api/00000/click/user0x3/1/4"
    assert click["QUERY_STRING"] == "categorypath=Shoes%2FChildren"


@pytest.mark.parametrize("served", [False, True])
def test_the_bare_cortex_route_answers_what_the_cortex_endpoint_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: bool
) -> None:
    """The diagnostic stands for Cortex's exchange only if both send the same bytes back."""
    monkeypatch.setenv("FLASK_EVENTTRACK_STORE_URL", f"sqlite:///{tmp_path}/events.db")
    monkeypatch.setenv("FLASK_SECRET_KEY", "test")
    if served:
        monkeypatch.setenv("BENCH_INSIDE_DIR", str(tmp_path))
    body = cortex_batch(1)(0, 1).split(b"\r\n\r\n", 1)[1]
    real = apps.eventtrack().test_client().post("/cortex", data=body, content_type="application/json")
    bare = apps.bare_cortex().test_client().post("/cortex", data=body, content_type="application/json")
    assert real.status_code == bare.status_code == 200
    assert real.data == bare.data
    assert real.headers["Content-Type"] == bare.headers["Content-Type"]
