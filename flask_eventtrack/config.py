"""Every configuration key, in one place, with its default.

``init_app`` applies these with ``app.config.setdefault`` so the defaults are
visible in ``app.config``; ``tests/test_docs.py`` checks each is documented.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError

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


#: Numeric core keys -> (type, least value allowed). ``init_app`` converts and
#: checks them once, so a bad value (``FLASK_EVENTTRACK_MAX_CONTENT_LENGTH=1MB``)
#: is a ConfigurationError at start instead of a 500 on every request. No setting
#: may exceed :data:`MOST` (timeouts and time spans past it overflow the clock).
NUMBERS: dict[str, tuple[type[int] | type[float], float]] = {
    "EVENTTRACK_MAX_CONTENT_LENGTH": (int, 1),
    "EVENTTRACK_MAX_EVENTS_PER_REQUEST": (int, 1),
    "EVENTTRACK_MAX_STRING_LENGTH": (int, 1),
    "EVENTTRACK_MAX_JSON_DEPTH": (int, 1),
    "EVENTTRACK_CLOCK_SKEW": (int, 0),
    "EVENTTRACK_REJECTED_PAYLOAD_LIMIT": (int, 0),
    "EVENTTRACK_RETRY_AFTER": (int, 0),
    "EVENTTRACK_SQLITE_BUSY_TIMEOUT": (int, 0),
    "EVENTTRACK_SQLITE_WAL_AUTOCHECKPOINT": (int, 0),
    "EVENTTRACK_POSTGRES_POOL_MIN_SIZE": (int, 0),
    "EVENTTRACK_POSTGRES_POOL_MAX_SIZE": (int, 1),
    "EVENTTRACK_POSTGRES_CONNECT_TIMEOUT": (float, 0.001),
}
MOST = 1_000_000_000


def checked_number(key: str, value: Any) -> int | float:
    """``value`` of numeric ``key`` as its type (digits in a string are fine).

    :raises ConfigurationError: naming the key, the value and what it must be.
    """
    kind, least = NUMBERS[key]
    number: int | float | None = None
    if not isinstance(value, bool):
        try:
            number = kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError, OverflowError):
            pass
    exact = isinstance(value, str) or number == value  # 1.5 is not the integer 1
    if number is None or not exact or not least <= number <= MOST:
        what = "an integer" if kind is int else "a number"
        raise ConfigurationError(f"{key} must be {what} from {least:g} to {MOST:_}, not {value!r}.")
    return number


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
