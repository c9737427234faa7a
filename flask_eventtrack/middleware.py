"""Mount the tracking endpoints into any WSGI app (Django, Pyramid, bare WSGI).

The middleware builds a private Flask app that runs the same ``init_app`` as a
Flask host would, so there is one code path for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask

from .extension import EventTrack

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["EventTrackMiddleware"]


class EventTrackMiddleware:
    """Serve ``prefix/...`` with flask-eventtrack and everything else with ``app``.

    Example::

        application = EventTrackMiddleware(
            django_application,
            prefix="/events",
            config={"SECRET_KEY": "...", "EVENTTRACK_STORE_URL": "sqlite:////var/lib/app/events.db"},
        )

    The tracking app is reachable as ``self.flask_app`` (for hooks and the CLI),
    and its extension as ``self.eventtrack``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        prefix: str = "/events",
        config: Mapping[str, Any] | None = None,
        eventtrack: EventTrack | None = None,
    ) -> None:
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"prefix must start with '/' and not end with it, not {prefix!r}.")
        self.app = app
        self.prefix = prefix
        # PEP 3333: PATH_INFO is the URL's bytes decoded as latin-1, so compare in that form.
        self._environ_prefix = prefix.encode("utf-8").decode("latin-1")
        self.flask_app = Flask("flask_eventtrack.middleware")
        self.flask_app.config.update(config or {})
        self.eventtrack = eventtrack or EventTrack()
        self.eventtrack.init_app(self.flask_app)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        prefix = self._environ_prefix
        # Only prefix/... is ours: the tracking app has nothing at its root, the bare prefix is the host's.
        if path.startswith(prefix + "/"):
            environ = dict(environ)
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix) :]
            return self.flask_app(environ, start_response)
        return self.app(environ, start_response)
