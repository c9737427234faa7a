"""Shared fixtures: an example app on a real SQLite file per test.

``store_url`` is the one place that decides which store a test runs on; store
contract tests parametrize over every store (see ``test_store_contract.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from _pg import (  # noqa: F401  (throwaway PostgreSQL database; CI check; tests/_pg.py)
    pg_database,
    pytest_runtest_logreport,
    pytest_sessionfinish,
)
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app
from flask_eventtrack import get_state
from flask_eventtrack.extension import EventTrackState

SECRET = "test-secret-key"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's FLASK_* variables."""
    for key in list(os.environ):
        if key.startswith("FLASK_"):
            monkeypatch.delenv(key)


@pytest.fixture
def store_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/events.db"


@pytest.fixture
def config(store_url: str, tmp_path: Any) -> dict[str, Any]:
    """Override in a test module (or extend with ``config.update``) before ``app``."""
    return {"TESTING": True, "SECRET_KEY": SECRET, "EVENTTRACK_STORE_URL": store_url}


@pytest.fixture
def app(config: dict[str, Any], tmp_path: Any) -> Iterator[Flask]:
    app = create_app(config)
    app.instance_path = str(tmp_path / "instance")
    yield app
    get_state(app).store.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def state(app: Flask) -> EventTrackState:
    return get_state(app)
