"""Where a Cortex batch's time goes, in one process: ``python bench/phases.py``.

Runs the example app in-process on a throwaway SQLite file and times each step
of a batch of ``--size`` events (the suite's body: 50 users, 6 keys per event;
every batch the store writes has new users, as in the suite)
apart: JSON parsing, validation (the fast path), the pipeline's enrich (ids,
times, user-id hashing), encoding ``props``, the store's write (which encodes
again, then ``executemany`` and ``COMMIT``), and the whole request through the
Flask test client. Medians of ``--rounds``; pin it to one CPU (``taskset -c 0``)
for steadier numbers. No HTTP server, so no gunicorn or second worker.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1000, help="events per batch")
    parser.add_argument("--rounds", type=int, default=50, help="measured batches per step")
    args = parser.parse_args()

    os.environ["FLASK_EVENTTRACK_STORE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/phases.db"
    from bench.run import cortex_body
    from example_app import create_app
    from flask_eventtrack import get_state
    from flask_eventtrack.dialects._http import parse_json
    from flask_eventtrack.dialects.cortex import CortexReader
    from flask_eventtrack.events import Event, new_event_ids, utcnow

    app = create_app({"SECRET_KEY": "bench"})
    state = get_state(app)
    reader = CortexReader(state)
    body = cortex_body(args.size, 0, 0)
    batches = itertools.count(1)

    def enrich(events: list[Event]) -> list[Event]:
        received = utcnow()
        for event, event_id in zip(events, new_event_ids(len(events)), strict=True):
            state.pipeline.enrich(event, received, event_id)
        return events

    def validated() -> list[Event]:
        """A new batch's events: the per-user index takes new users, as in the suite."""
        return reader.read(cortex_body(args.size, 0, next(batches)), None)[0]

    timings: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[Any], Any], prepare: Callable[[], Any] = lambda: None) -> float:
        values = timings[name] = []
        for _ in range(args.rounds + 5):  # the first 5 warm up
            argument = prepare()
            start = time.perf_counter()
            fn(argument)
            values.append(time.perf_counter() - start)
        del values[:5]
        return statistics.median(values)

    client = app.test_client()
    with app.test_request_context("/cortex", method="POST", data=body, content_type="application/json"):
        parse = timed("parse JSON", lambda _: parse_json(body, max_depth=reader.max_depth))
        timed("validate (fast path)", lambda _: reader.read(body, None))
        timings["validate (fast path)"] = [t - parse for t in timings["validate (fast path)"]]
        timed("enrich (ids, times, hashing)", enrich, validated)
        timed("encode props", state.store.encode, lambda: enrich(validated()))
        timed("store write (encode, executemany, COMMIT)", state.store.write, lambda: enrich(validated()))
    timed(
        "whole request (Flask test client)",
        lambda batch: client.post("/cortex", data=batch, content_type="application/json"),
        lambda: cortex_body(args.size, 0, next(batches)),
    )

    print(f"Cortex batch of {args.size} events, in one process, median of {args.rounds}:")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"  {name:44s} {median * 1000:7.2f} ms  ({median / args.size * 1e6:5.2f} us/event)")


if __name__ == "__main__":
    main()
