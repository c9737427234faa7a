"""The Flask extension: configuration, per-app state, dialect blueprints, hooks."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import Flask, current_app

from .config import (
    DEFAULTS,
    all_defaults,
    all_numbers,
    as_list,
    checked_bool,
    checked_number,
    checked_text,
    number_as_text,
)
from .dialects import available_dialects
from .errors import ConfigurationError
from .events import Event
from .pipeline import EventHook, Hooks, Pipeline
from .schemas.core import EmitSchema
from .signing import make_user_hasher
from .stores import Store, WriteResult, store_from_url

__all__ = ["EventTrack", "get_state"]

H = TypeVar("H", bound=EventHook)

#: Text settings whose default is None (unset).
_OPTIONAL_TEXT = ("EVENTTRACK_STORE_URL", "EVENTTRACK_HASH_KEY")


@dataclass
class EventTrackState:
    """What one app's ``init_app`` built; lives in ``app.extensions["eventtrack"]``."""

    extension: EventTrack
    config: dict[str, Any]
    store: Store
    pipeline: Pipeline
    dialects: tuple[str, ...]


def get_state(app: Flask | None = None) -> EventTrackState:
    """The state of ``app`` (default: ``current_app``).

    :raises RuntimeError: when the extension was not initialised on the app.
    """
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        state: EventTrackState = app.extensions["eventtrack"]
    except KeyError:
        raise RuntimeError(
            "flask-eventtrack is not initialised on this app. Did you forget to call"
            " 'EventTrack.init_app(app)'?"
        ) from None
    return state


class EventTrack:
    """First-party event tracking for a Flask app.

    ``EventTrack(app)`` or, in an app factory, ``track = EventTrack()`` then
    ``track.init_app(app)``; one instance may serve several apps. Hooks
    registered with the decorators apply to every app of this instance.

    :param store: a :class:`~flask_eventtrack.stores.Store` to use instead of
        ``EVENTTRACK_STORE_URL`` (handy in tests).
    """

    def __init__(self, app: Flask | None = None, *, store: Store | None = None) -> None:
        self._store = store
        self.hooks = Hooks()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the ``EVENTTRACK_*`` keys (see the README for each and its
        default), open the store, and register one blueprint per dialect.

        :raises RuntimeError: when already registered on ``app``.
        :raises ConfigurationError: on a bad setting, before any request.
        """
        if "eventtrack" in app.extensions:
            raise RuntimeError(
                "An 'EventTrack' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        app.config.setdefault("EVENTTRACK_DIALECTS", DEFAULTS["EVENTTRACK_DIALECTS"])
        known = available_dialects()
        selected = app.config["EVENTTRACK_DIALECTS"]
        wanted = known if selected is None else as_list(selected)
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise ConfigurationError(
                f"EVENTTRACK_DIALECTS names unknown dialects {unknown}; known: {', '.join(known)}."
            )
        defaults = all_defaults(wanted)
        for key, default in defaults.items():
            app.config.setdefault(key, default)
            if isinstance(default, bool):
                app.config[key] = checked_bool(key, app.config[key])
            elif isinstance(default, str) or key in _OPTIONAL_TEXT:
                app.config[key] = checked_text(
                    key,
                    app.config[key],
                    optional=default is None or key.endswith("_URL_PREFIX"),  # None: mounted at the root
                    secret=key == "EVENTTRACK_HASH_KEY",
                )
        # FLASK_SECRET_KEY=123456 is a number to Flask; everything signs with text.
        for key in ("SECRET_KEY", "SECRET_KEY_FALLBACKS"):
            if key in app.config:
                app.config[key] = number_as_text(app.config[key])
        for key, bounds in all_numbers(wanted).items():
            if defaults[key] is None and str(app.config[key]).strip() in ("None", "", "0"):
                app.config[key] = None  # optional, and unset (or 0, or an empty FLASK_... variable)
            else:
                app.config[key] = checked_number(key, app.config[key], bounds)
        if app.config["EVENTTRACK_POSTGRES_POOL_MIN_SIZE"] > app.config["EVENTTRACK_POSTGRES_POOL_MAX_SIZE"]:
            raise ConfigurationError(
                "EVENTTRACK_POSTGRES_POOL_MIN_SIZE must not be larger than EVENTTRACK_POSTGRES_POOL_MAX_SIZE."
            )
        config = {key: app.config[key] for key in defaults}
        store = self._store or self._make_store(app, config)
        app.config["EVENTTRACK_STORE_URL"] = config["EVENTTRACK_STORE_URL"]

        hash_user = None
        if config["EVENTTRACK_HASH_USER_IDS"]:
            hash_key: str | bytes | None = config["EVENTTRACK_HASH_KEY"] or app.config.get("SECRET_KEY")
            if not hash_key:
                raise ConfigurationError(
                    "flask-eventtrack hashes user ids with a secret key: set SECRET_KEY or"
                    " EVENTTRACK_HASH_KEY (or EVENTTRACK_HASH_USER_IDS = False to store raw ids)."
                )
            hash_user = make_user_hasher(hash_key)
        pipeline = Pipeline(
            app,
            store,
            self.hooks,
            hash_user=hash_user,
            clock_skew=timedelta(seconds=config["EVENTTRACK_CLOCK_SKEW"]),
        )
        state = EventTrackState(self, config, store, pipeline, tuple(wanted))
        app.extensions["eventtrack"] = state
        for name in wanted:
            module = importlib.import_module(f"flask_eventtrack.dialects.{name}")
            prefix = config.get(f"EVENTTRACK_{name.upper()}_URL_PREFIX") or None
            app.register_blueprint(module.create_blueprint(state), url_prefix=prefix)

    @staticmethod
    def _make_store(app: Flask, config: dict[str, Any]) -> Store:
        url: str | None = config["EVENTTRACK_STORE_URL"]
        if not url:
            os.makedirs(app.instance_path, exist_ok=True)
            url = "sqlite:///" + os.path.join(app.instance_path, "eventtrack.db")
            config["EVENTTRACK_STORE_URL"] = url
        return store_from_url(
            url,
            payload_limit=config["EVENTTRACK_REJECTED_PAYLOAD_LIMIT"],
            synchronous=config["EVENTTRACK_SQLITE_SYNCHRONOUS"],
            busy_timeout=config["EVENTTRACK_SQLITE_BUSY_TIMEOUT"],
            wal_autocheckpoint=config["EVENTTRACK_SQLITE_WAL_AUTOCHECKPOINT"],
            retry_after=config["EVENTTRACK_RETRY_AFTER"],
            pool_min_size=config["EVENTTRACK_POSTGRES_POOL_MIN_SIZE"],
            pool_max_size=config["EVENTTRACK_POSTGRES_POOL_MAX_SIZE"],
            connect_timeout=config["EVENTTRACK_POSTGRES_CONNECT_TIMEOUT"],
            schema=config["EVENTTRACK_POSTGRES_SCHEMA"],
        )

    # -- host hooks --------------------------------------------------------
    def enrich(self, fn: H) -> H:
        """Decorator: ``fn(event)`` adds data to an event before rules run."""
        self.hooks.enrich.append(fn)
        return fn

    def rule(self, fn: H) -> H:
        """Decorator: ``fn(event)`` raises :class:`~flask_eventtrack.Reject` to refuse it."""
        self.hooks.rules.append(fn)
        return fn

    def before_store(self, fn: H) -> H:
        """Decorator: ``fn(event)`` returns the event to store (changed or not) or None to drop it."""
        self.hooks.before_store.append(fn)
        return fn

    def after_store(self, fn: H) -> H:
        """Decorator: ``fn(event)`` runs after the event was committed."""
        self.hooks.after_store.append(fn)
        return fn

    # -- Python API ----------------------------------------------------------
    def emit(
        self,
        type: str,
        *,
        user: str | None = None,
        user_kind: str | None = "user_id",
        tenant: str = "default",
        source: str = "app",
        item_type: str | None = None,
        item_id: str | None = None,
        occurred_at: datetime | None = None,
        props: dict[str, Any] | None = None,
        dedup_key: str | None = None,
    ) -> WriteResult:
        """Record an event from Python through the same pipeline as HTTP events.

        :raises marshmallow.ValidationError: when the arguments are not a valid event.
        :raises StoreUnavailable: when it could not be committed.
        """
        data = EmitSchema().load(
            {
                "type": type,
                "user": user,
                "user_kind": user_kind,
                "tenant": tenant,
                "source": source,
                "item_type": item_type,
                "item_id": item_id,
                "occurred_at": occurred_at,
                "props": props or {},
                "dedup_key": dedup_key,
            }
        )
        return get_state().pipeline.submit([Event(**data)])

    @property
    def store(self) -> Store:
        """The current app's store."""
        return get_state().store

    def user_key(self, raw_user: str) -> str:
        """How the current app stores ``raw_user`` (its keyed hash by default)."""
        return get_state().pipeline.user_key(raw_user)
