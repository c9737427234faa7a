"""Every configuration key, in one place, with its default.

``init_app`` applies these with ``app.config.setdefault`` so the defaults are
visible in ``app.config``; ``tests/test_docs.py`` checks each is documented.
"""

from __future__ import annotations

from typing import Any

#: Core keys -> default. Each dialect module adds its own in ``CONFIG``
#: (``EVENTTRACK_<DIALECT>_URL_PREFIX`` and the dialect's settings).
#: key -> default. ``None`` for the store URL means ``sqlite:///<instance>/eventtrack.db``.
DEFAULTS: dict[str, Any] = {
    "EVENTTRACK_STORE_URL": None,
    "EVENTTRACK_DIALECTS": None,  # None: every dialect shipped
    "EVENTTRACK_HASH_USER_IDS": True,
    "EVENTTRACK_HASH_KEY": None,
    "EVENTTRACK_MAX_CONTENT_LENGTH": 1024 * 1024,
    "EVENTTRACK_MAX_EVENTS_PER_REQUEST": 1000,
    "EVENTTRACK_MAX_STRING_LENGTH": 1024,
    "EVENTTRACK_MAX_JSON_DEPTH": 8,
    "EVENTTRACK_CLOCK_SKEW": 300,
    "EVENTTRACK_REJECTED_PAYLOAD_LIMIT": 4096,
    "EVENTTRACK_RETRY_AFTER": 5,
    "EVENTTRACK_SQLITE_SYNCHRONOUS": "NORMAL",
    "EVENTTRACK_SQLITE_BUSY_TIMEOUT": 5000,
    "EVENTTRACK_SQLITE_WAL_AUTOCHECKPOINT": 10000,
    "EVENTTRACK_POSTGRES_POOL_MIN_SIZE": 1,
    "EVENTTRACK_POSTGRES_POOL_MAX_SIZE": 10,
    "EVENTTRACK_POSTGRES_CONNECT_TIMEOUT": 5,
    "EVENTTRACK_POSTGRES_SCHEMA": "eventtrack",
}


def all_defaults(dialects: list[str] | None = None) -> dict[str, Any]:
    """Core defaults plus each dialect module's own ``CONFIG`` defaults."""
    from .dialects import available_dialects, dialect_module

    merged = dict(DEFAULTS)
    for name in available_dialects() if dialects is None else dialects:
        merged.update(getattr(dialect_module(name), "CONFIG", {}))
    return merged


def as_list(value: Any) -> list[str]:
    """Config lists may come from the environment as ``"a,b"``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part) for part in value or ()]
