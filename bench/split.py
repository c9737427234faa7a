"""Where a request's worker CPU goes under gunicorn: ``python bench/split.py``.

For the ceiling, a bare route taking Cortex's exchange (JSON POST in, 200 JSON out,
nothing else), the careful peer, Ibexa ``click``, a Cortex batch of 1 and the same
without the store's write (the suite's apps and requests, 2 sync workers on CPU 0,
load from CPU 1), it splits the worker CPU per request into the part spent inside
the Flask app (``bench/apps.py:InsideTimer``) and the part around it (gunicorn:
accept, parse, write, close; and the kernel), and sets the inside part against
the same request called in a warm loop in one process (WSGI, no server) on the
same CPU. ``inside / in-process`` is how much dearer the same code runs in a
worker that takes turns with another worker and the network stack.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (  # noqa: E402
    CLIENT_CPU,
    ROOT,
    SERVER_CPU,
    Scenario,
    bare_request,
    cortex_batch,
    ibexa_click,
    measure,
    migrate_store,
    naive_request,
    server_env,
)

SCENARIOS = {
    "ceiling": Scenario("ceiling: bare Flask route (204)", "bare", 0, bare_request, stores=False),
    "bare-cortex": Scenario(
        "diagnostic: bare route, Cortex exchange", "bare_cortex", 0, cortex_batch(1), stores=False
    ),
    "careful": Scenario("peer: careful", "careful", 1, naive_request),
    "ibexa": Scenario("eventtrack: Ibexa click (GET)", "eventtrack", 1, ibexa_click),
    "cortex": Scenario("eventtrack: Cortex batch of 1", "eventtrack", 1, cortex_batch(1)),
    "no-write": Scenario(
        "diagnostic: Cortex batch of 1, no write", "eventtrack_no_write", 1, cortex_batch(1), stores=False
    ),
}


def environ_of(raw: bytes) -> dict[str, Any]:
    """The WSGI environ of one raw HTTP/1.1 request, as a server would build it."""
    from werkzeug.test import EnvironBuilder

    head, body = raw.split(b"\r\n\r\n", 1)
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ")
    headers = [(name, value) for name, value in (line.split(": ", 1) for line in header_lines)]
    builder = EnvironBuilder(path=target, method=method, headers=headers, data=body or None)
    try:
        return builder.get_environ()
    finally:
        builder.close()


def in_process_us(make_request: Callable[[int, int], bytes], app_name: str, count: int) -> float:
    """Median of 3 loops of ``count`` requests straight into the app's WSGI callable."""
    from bench import apps

    app = getattr(apps, app_name)()

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    statuses: list[str] = []
    n = 0
    loops = []
    for _ in range(4):  # the first warms up
        environs = [environ_of(make_request(0, n + i)) for i in range(count)]
        n += count
        started = time.perf_counter()
        for environ in environs:
            b"".join(app.wsgi_app(environ, start_response))
        loops.append((time.perf_counter() - started) / count * 1e6)
    if not all(status.startswith("2") for status in statuses):
        raise RuntimeError(f"{app_name}: in-process requests failed: {sorted(set(statuses))}")
    return statistics.median(loops[1:])


def inside_us(directory: Path) -> float:
    """Mean CPU us inside the app per request, over the workers' last flushes."""
    ns = requests = 0
    for entry in directory.iterdir():
        a, b = entry.read_text().split()
        ns, requests = ns + int(a), requests + int(b)
    if not requests:
        raise RuntimeError("no worker flushed its inside timings (fewer than 100 requests?)")
    return ns / requests / 1000


def run_in_process(name: str, count: int) -> float:
    """:func:`in_process_us` in a new interpreter on the server's CPU, with a server's environment."""
    scenario = SCENARIOS[name]
    with tempfile.TemporaryDirectory(prefix="etsplit-") as tmp:
        env = server_env(Path(tmp), "NORMAL")
        if scenario.app.startswith("eventtrack"):
            migrate_store(env)
        out = subprocess.run(
            ["taskset", "-c", str(SERVER_CPU), sys.executable, __file__, "--in-process", name]
            + ["--count", str(count)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["us"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=3000, help="requests per in-process loop")
    parser.add_argument("--only", default="", help="scenarios whose key contains this (plus the ceiling)")
    parser.add_argument("--in-process", help=argparse.SUPPRESS)  # the child of run_in_process
    args = parser.parse_args()
    if args.in_process:
        scenario = SCENARIOS[args.in_process]
        print(json.dumps({"us": in_process_us(scenario.make_request, scenario.app, args.count)}))
        return 0

    os.sched_setaffinity(0, {CLIENT_CPU})
    names = [n for n in SCENARIOS if n == "ceiling" or (args.only and args.only in n) or not args.only]
    rows: dict[str, dict[str, list[float]]] = {n: {"cpu": [], "inside": [], "loop": []} for n in names}
    lossless = True
    for round_ in range(1, args.runs + 1):
        for name in names:
            with tempfile.TemporaryDirectory(prefix="etinside-") as inside_dir:
                os.environ["BENCH_INSIDE_DIR"] = inside_dir
                try:
                    run = measure(SCENARIOS[name], args.seconds, "NORMAL", None, "sqlite")
                finally:
                    del os.environ["BENCH_INSIDE_DIR"]
                inside = inside_us(Path(inside_dir))
            lossless = lossless and run["stored"] == run["acknowledged"]
            loop = run_in_process(name, args.count)
            for key, value in (("cpu", run["cpu_us"]), ("inside", inside), ("loop", loop)):
                rows[name][key].append(value)
            print(
                f"round {round_}: {name}: {run['cpu_us']:.0f} us CPU/request, {inside:.0f} inside the app,"
                f" {loop:.0f} in-process, stored==2xx: {run['stored'] == run['acknowledged']}",
                flush=True,
            )
    print(f"\nworker CPU per request (us), median of {args.runs} rounds; 2 sync workers on CPU {SERVER_CPU}")
    print(f"{'scenario':12s} {'worker':>7s} {'inside':>7s} {'around':>7s} {'loop':>7s} {'inside/loop':>12s}")
    for name, values in rows.items():
        cpu, inside, loop = (statistics.median(values[k]) for k in ("cpu", "inside", "loop"))
        print(f"{name:12s} {cpu:7.0f} {inside:7.0f} {cpu - inside:7.0f} {loop:7.0f} {inside / loop:11.2f}x")
    print("\ninside: in the Flask app (thread CPU); around: gunicorn and the kernel;")
    print("loop: the same request in a warm loop in one process")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = ROOT / "bench" / "results" / f"split-{stamp}.json"
    saved = {"runs": args.runs, "seconds": args.seconds, "rounds_us": rows}
    path.write_text(json.dumps(saved, indent=1) + "\n")
    print(f"saved {path.relative_to(ROOT)}")
    if not lossless:
        print("FAILED: a run stored a different number of events than it acknowledged", file=sys.stderr)
    return 0 if lossless else 1


if __name__ == "__main__":
    sys.exit(main())
