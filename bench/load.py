"""A small, exact HTTP/1.1 load generator for loopback benchmarks.

Why not wrk: wrk stops mid-request, so events committed for requests it never
counted would make "stored == acknowledged" impossible to check. Here every
connection finishes the request it is on before the run ends, so each 2xx is
counted exactly once. One thread per connection; gunicorn's sync workers close
the connection after each response, so each request opens its own.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"


@dataclass
class LoadResult:
    seconds: float = 0.0
    ok: int = 0  # 2xx responses
    failed: int = 0  # other statuses
    errors: int = 0  # connection errors
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _one_request(port: int, payload: bytes, timeout: float) -> int:
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            data = b"".join(chunks)
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = _body_length(head)
                if length is not None and len(body) >= length:
                    break
    status_line = b"".join(chunks).split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


def _body_length(head: bytes) -> int | None:
    """The body's length, or None when the response only ends when the server closes.
    A 204 or 304 has none, whatever its headers (RFC 9112 6.3); no 1xx comes, as we
    never send "Expect: 100-continue"."""
    if head.split(b" ", 2)[1] in (b"204", b"304"):
        return 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def run_load(
    port: int,
    make_request: Callable[[int, int], bytes],
    *,
    connections: int = 8,
    seconds: float = 5.0,
    timeout: float = 30.0,
) -> LoadResult:
    """Drive ``port`` with ``connections`` concurrent clients for ``seconds``.

    ``make_request(worker, n)`` returns the raw request bytes of the n-th request
    of a client. The run is bounded: it stops starting requests at the deadline.
    """
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(worker: int) -> None:
        local_lat: list[float] = []
        statuses: dict[int, int] = {}
        errors = 0
        n = 0
        while time.perf_counter() < deadline:
            payload = make_request(worker, n)
            n += 1
            started = time.perf_counter()
            try:
                status = _one_request(port, payload, timeout)
            except OSError:
                errors += 1
                time.sleep(0.01)
                continue
            local_lat.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
        with lock:
            result.latencies.extend(local_lat)
            result.errors += errors
            for status, count in statuses.items():
                result.statuses[status] = result.statuses.get(status, 0) + count

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + timeout + 5)
    result.seconds = time.perf_counter() - started
    result.ok = sum(c for s, c in result.statuses.items() if 200 <= s < 300)
    result.failed = sum(c for s, c in result.statuses.items() if not 200 <= s < 300)
    return result


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {LOOPBACK}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
