"""Exception tree. HTTP-facing errors inherit from both sides (werkzeug and ours)."""

from __future__ import annotations

from werkzeug.exceptions import (
    BadRequest,
    NotFound,
    RequestEntityTooLarge,
    RequestURITooLarge,
    ServiceUnavailable,
    Unauthorized,
)

__all__ = [
    "BadPayload",
    "ConfigurationError",
    "EventTrackError",
    "NotFoundError",
    "PayloadTooLarge",
    "StoreUnavailable",
    "UnauthorizedError",
    "URITooLong",
]


class EventTrackError(Exception):
    """Base of every error raised by flask-eventtrack."""


class ConfigurationError(EventTrackError, ValueError):
    """The app's configuration is wrong; raised by ``init_app``, not on a request."""


class StoreUnavailable(EventTrackError, ServiceUnavailable):
    """The store could not commit (locked past the timeout, disk full, down).

    Answered as 503 with ``Retry-After``: the client must retry, nothing was kept.
    """

    def __init__(self, description: str, retry_after: int = 5) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class BadPayload(EventTrackError, BadRequest):
    """The client sent something we cannot accept. ``reason`` is the rejection type."""

    def __init__(self, description: str, reason: str = "schema_violation", errors: object = None) -> None:
        super().__init__(description)
        self.reason = reason
        self.errors = errors


class PayloadTooLarge(EventTrackError, RequestEntityTooLarge):
    """The body is over ``EVENTTRACK_MAX_CONTENT_LENGTH``."""

    reason = "size_violation"


class URITooLong(EventTrackError, RequestURITooLarge):
    """The request URI is over the dialect's configured length."""

    reason = "size_violation"


class UnauthorizedError(EventTrackError, Unauthorized):
    """Missing, expired, tampered or revoked credentials."""

    reason = "auth_failure"


class NotFoundError(EventTrackError, NotFound):
    """Unknown tenant, event code or user."""

    reason = "not_found"
