"""A small shop that owns its tracking data: ``flask --app example_app run``.

Configuration comes from (later wins): the defaults below, ``instance/config.py``
if present, the ``test_config`` mapping, and ``FLASK_*`` environment variables
(``FLASK_EVENTTRACK_STORE_URL=sqlite:////tmp/x.db`` sets ``EVENTTRACK_STORE_URL``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

from flask_eventtrack import Event, EventTrack

eventtrack = EventTrack()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY=_instance_secret(app),
        EVENTTRACK_IBEXA_CUSTOMERS="00000",
    )
    app.config.from_pyfile("config.py", silent=True)
    if test_config is not None:
        app.config.from_mapping(test_config)
    app.config.from_prefixed_env()
    eventtrack.init_app(app)

    @app.get("/")
    def index() -> dict[str, Any]:
        return {"app": "flask-eventtrack example shop", "stats": eventtrack.store.stats()}

    return app


@eventtrack.after_store
def log_purchases(event: Event) -> None:
    """A host hook: the shop logs every committed purchase."""
    if event.type in {"buy", "purchase", "transaction.charge", "confirmation"}:
        current_app.logger.info("purchase recorded: %s %s", event.id, event.props)


def _instance_secret(app: Flask) -> str:
    """A per-install secret kept in the instance folder, so the demo needs no setup.

    Real deployments set ``SECRET_KEY`` (or ``FLASK_SECRET_KEY``) themselves.
    """
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, "secret_key")
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    tmp = f"{path}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)  # atomic: the first worker to get here wins
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    with open(path, encoding="ascii") as fh:
        return fh.read().strip()
