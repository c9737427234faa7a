"""Blinker signals, sent with the Flask app (never the proxy) as sender."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent when a dialect has parsed a request into canonical events, before any
#: rule or hook ran. Sender: the app. Kwargs: ``events`` (list of Event).
event_received = _signals.signal("event-received")

#: Sent after events were committed. Sender: the app. Kwargs: ``events``.
event_stored = _signals.signal("event-stored")

#: Sent after rejections were committed to the rejected log. Sender: the app.
#: Kwargs: ``rejections`` (list of Rejection).
event_rejected = _signals.signal("event-rejected")
