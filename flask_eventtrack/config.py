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


#: The most any numeric setting may be: timeouts and time spans past it overflow the clock.
MOST = 1_000_000_000

#: Numeric core keys -> (type, least, most). ``init_app`` converts and checks
#: them once, with each dialect module's own ``NUMBERS``, so a bad value
#: (``FLASK_EVENTTRACK_MAX_CONTENT_LENGTH=1MB``) is a ConfigurationError at
#: start instead of a 500 on every request.
NUMBERS: dict[str, tuple[type[int] | type[float], float, float]] = {
    "EVENTTRACK_MAX_CONTENT_LENGTH": (int, 1, MOST),
    "EVENTTRACK_MAX_EVENTS_PER_REQUEST": (int, 1, MOST),
    "EVENTTRACK_MAX_STRING_LENGTH": (int, 1, MOST),
    "EVENTTRACK_MAX_JSON_DEPTH": (int, 1, MOST),
    "EVENTTRACK_CLOCK_SKEW": (int, 0, MOST),
    "EVENTTRACK_REJECTED_PAYLOAD_LIMIT": (int, 0, MOST),
    "EVENTTRACK_RETRY_AFTER": (int, 0, MOST),
    "EVENTTRACK_SQLITE_BUSY_TIMEOUT": (int, 0, MOST),
    "EVENTTRACK_SQLITE_WAL_AUTOCHECKPOINT": (int, 0, MOST),
    "EVENTTRACK_POSTGRES_POOL_MIN_SIZE": (int, 0, MOST),
    "EVENTTRACK_POSTGRES_POOL_MAX_SIZE": (int, 1, MOST),
    "EVENTTRACK_POSTGRES_CONNECT_TIMEOUT": (float, 0.001, MOST),
}


def checked_number(key: str, value: Any, bounds: tuple[type[int] | type[float], float, float]) -> int | float:
    """``value`` of numeric ``key`` as its type (digits in a string are fine).

    :raises ConfigurationError: naming the key, the value and what it must be.
    """
    kind, least, most = bounds
    number: int | float | None = None
    if not isinstance(value, bool):
        try:
            number = kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError, OverflowError):
            pass
    exact = isinstance(value, str) or number == value  # 1.5 is not the integer 1
    if number is None or not exact or not least <= number <= most:
        what = "an integer" if kind is int else "a number"
        raise ConfigurationError(f"{key} must be {what} from {least:g} to {most:_}, not {value!r}.")
    return number


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def checked_bool(key: str, value: Any) -> bool:
    """``value`` of a True/False ``key``. ``FLASK_EVENTTRACK_PROFILE_KEEP_EMAIL=False``
    is the string ``"False"`` (not JSON), which ``bool()`` would take for True.

    :raises ConfigurationError: for anything that is not clearly true or false.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ConfigurationError(f"{key} must be True or False, not {value!r}.")


def number_as_text(value: Any) -> Any:
    """An integer as its text, anything else as it is: Flask reads ``FLASK_*`` variables
    as JSON, so ``FLASK_EVENTTRACK_CORTEX_TENANT=123`` arrives as the number 123."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def checked_text(key: str, value: Any, *, optional: bool = False, secret: bool = False) -> Any:
    """``value`` of a text ``key`` (a number is its text, see :func:`number_as_text`). A
    ``secret`` may also be bytes, and is never quoted in the error.

    :raises ConfigurationError: for anything else that is not text (``null``, ``true``, a list).
    """
    value = number_as_text(value)
    if isinstance(value, str) or (secret and isinstance(value, bytes)) or (optional and value is None):
        return value
    shown = type(value).__name__ if secret else repr(value)
    raise ConfigurationError(f"{key} must be text, not {shown}.")


def all_defaults(dialects: list[str] | None = None) -> dict[str, Any]:
    """Core defaults plus each dialect module's own ``CONFIG`` defaults."""
    return _merged("CONFIG", DEFAULTS, dialects)


def all_numbers(dialects: list[str] | None = None) -> dict[str, tuple[type[int] | type[float], float, float]]:
    """Numeric core keys plus each dialect module's own ``NUMBERS``, with their bounds."""
    return _merged("NUMBERS", NUMBERS, dialects)


def _merged(name: str, core: dict[str, Any], dialects: list[str] | None) -> dict[str, Any]:
    from .dialects import available_dialects, dialect_module

    merged = dict(core)
    for dialect in available_dialects() if dialects is None else dialects:
        merged.update(getattr(dialect_module(dialect), name, {}))
    return merged


def as_list(value: Any) -> list[str]:
    """Config lists may come from the environment as ``"a,b"``."""
    value = number_as_text(value)  # FLASK_..._CUSTOMERS=12345
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part) for part in value or ()]
