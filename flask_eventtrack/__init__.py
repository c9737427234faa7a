"""flask-eventtrack: a first-party event-tracking API for Flask and WSGI apps."""

from __future__ import annotations

from .errors import BadPayload, ConfigurationError, EventTrackError, StoreUnavailable
from .events import Event, Rejection
from .extension import EventTrack, get_state
from .middleware import EventTrackMiddleware
from .pipeline import Reject
from .signals import event_received, event_rejected, event_stored
from .signing import sign_body
from .stores import EventQuery, Store, store_from_url

__all__ = [
    "BadPayload",
    "ConfigurationError",
    "Event",
    "EventQuery",
    "EventTrack",
    "EventTrackError",
    "EventTrackMiddleware",
    "Reject",
    "Rejection",
    "Store",
    "StoreUnavailable",
    "event_received",
    "event_rejected",
    "event_stored",
    "get_state",
    "sign_body",
    "store_from_url",
]
__version__ = "0.1.0"
