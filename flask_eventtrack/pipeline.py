"""The one path every event takes: enrich -> rules -> host hooks -> store -> signals.

Dialects hand over events with *raw* user ids; from :meth:`Pipeline.submit` on,
only keyed hashes exist, so neither hooks nor the store ever see a raw id
(unless the host app switched hashing off).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from . import signals
from .events import Event, Rejection, format_time, new_event_ids, utcnow
from .stores import WriteResult

if TYPE_CHECKING:
    from flask import Flask

    from .stores import Store

__all__ = ["Hooks", "Pipeline", "Reject"]

log = logging.getLogger("flask_eventtrack")


class Reject(Exception):
    """Raise from a rule or a ``before_store`` hook to keep an event out.

    The event goes to the rejected log with ``reason`` and ``message``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class EventHook(Protocol):
    def __call__(self, event: Event) -> Any: ...


@dataclass
class Hooks:
    """Host hooks, called in registration order."""

    #: ``fn(event) -> None``: add to ``event.props`` etc. before rules run
    enrich: list[EventHook] = field(default_factory=list)
    #: ``fn(event) -> None``: raise :class:`Reject` to refuse the event
    rules: list[EventHook] = field(default_factory=list)
    #: ``fn(event) -> Event | None``: return a changed event, or None to drop it
    before_store: list[EventHook] = field(default_factory=list)
    #: ``fn(event) -> None``: react after the event was committed
    after_store: list[EventHook] = field(default_factory=list)


class Pipeline:
    """Per-app pipeline; built by ``init_app``, used by dialects and ``emit``."""

    def __init__(
        self,
        app: Flask,
        store: Store,
        hooks: Hooks,
        *,
        hash_user: Callable[[str], str] | None,
        clock_skew: timedelta,
    ) -> None:
        self.app = app
        self.store = store
        self.hooks = hooks
        self.hash_user = hash_user
        self.clock_skew = clock_skew

    def user_key(self, raw_user: str) -> str:
        """What a raw user id is stored as (its hash, unless hashing is off)."""
        return self.hash_user(raw_user) if self.hash_user else raw_user

    def enrich(self, event: Event, received: datetime, event_id: str) -> None:
        """Fill id and times, apply the future-time rule, hash user ids."""
        event.id = event_id
        event.received_at = received
        occurred = event.occurred_at
        if occurred is None:
            event.occurred_at = received
            event.original_time = None
        elif occurred > received + self.clock_skew and not event.keep_future:
            event.original_time = event.original_time or format_time(occurred)
            event.occurred_at = received
        else:
            event.original_time = None
            if occurred.tzinfo is not UTC:  # one representation for every store
                event.occurred_at = occurred.astimezone(UTC)
        if self.hash_user is not None:
            if event.user is not None:
                event.user = self.hash_user(event.user)
            if event.links_to is not None:
                event.links_to = self.hash_user(event.links_to)

    def submit(self, events: Sequence[Event], rejections: Sequence[Rejection] = ()) -> WriteResult:
        """Run events through the pipeline and commit them with ``rejections``.

        :raises StoreUnavailable: nothing was committed; the caller answers 503.
        """
        received = utcnow()
        rejected = list(rejections)
        for rejection in rejected:
            rejection.received_at = rejection.received_at or received
        for event, event_id in zip(events, new_event_ids(len(events)), strict=True):
            self.enrich(event, received, event_id)
        sender = self.app
        if signals.event_received.receivers:  # a failing receiver is logged, as after the commit
            self._after_commit(signals.event_received.send, sender, events=list(events))
        kept = self._apply_hooks(events, rejected) if self._has_hooks else list(events)
        result = self.store.write(kept, rejected)
        # Committed: from here on nothing may turn the answer into an error, or
        # the client would retry and store the events twice. A failing host hook
        # or signal receiver is logged, not raised.
        for hook in self.hooks.after_store:
            for event in result.stored:
                self._after_commit(hook, event)
        if result.stored and signals.event_stored.receivers:
            self._after_commit(signals.event_stored.send, sender, events=result.stored)
        if result.rejected and signals.event_rejected.receivers:
            self._after_commit(signals.event_rejected.send, sender, rejections=result.rejected)
        return result

    @staticmethod
    def _after_commit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:  # the events are committed: see submit()
            log.exception("flask-eventtrack: a hook or signal receiver failed after the commit")

    @property
    def _has_hooks(self) -> bool:
        h = self.hooks
        return bool(h.enrich or h.rules or h.before_store)

    def _apply_hooks(self, events: Sequence[Event], rejected: list[Rejection]) -> list[Event]:
        kept: list[Event] = []
        for event in events:
            try:
                for hook in self.hooks.enrich:
                    hook(event)
                for hook in self.hooks.rules:
                    hook(event)
                current = event
                for hook in self.hooks.before_store:
                    changed: Event | None = hook(current)
                    if changed is None:
                        raise Reject("dropped", "dropped by a before_store hook of the host app")
                    current = changed
            except Reject as exc:
                rejected.append(_rejection(event, exc.reason, exc.message))
                continue
            except Exception as exc:  # a host bug met odd input: that event alone is refused
                log.exception("flask-eventtrack: a host hook failed; the event goes to the rejected log")
                # The type only: an exception's text may quote a raw user id.
                rejected.append(_rejection(event, "hook_error", f"a host hook raised {type(exc).__name__}"))
                continue
            problem = _unstorable_shape(current)
            if problem:
                message = f"a host hook left the event unstorable: {problem}"
                rejected.append(_rejection(event, "schema_violation", message))
                continue
            kept.append(current)
        return kept


_TEXT_FIELDS = ("tenant", "source", "type", "id")
_OPTIONAL_TEXT_FIELDS = (
    "user",
    "user_kind",
    "item_type",
    "item_id",
    "original_time",
    "dedup_key",
    "links_to",
    "status",
)


def _unstorable_shape(event: Event) -> str | None:
    """What a hook broke in ``event`` that no store column can hold, or None.

    Dialects and ``emit`` build well-formed events; only hooks can change that,
    so only events that went through hooks are checked. Subclasses (a
    ``StrEnum``, an ``OrderedDict``) are what they extend.
    """
    for name in _TEXT_FIELDS:
        value = getattr(event, name)
        if not isinstance(value, str) or not value:
            return f"{name} must be non-empty text, not {type(value).__name__}"
    for name in _OPTIONAL_TEXT_FIELDS:
        value = getattr(event, name)
        if value is not None and not isinstance(value, str):
            return f"{name} must be text or None, not {type(value).__name__}"
    for name in ("occurred_at", "received_at"):
        value = getattr(event, name)
        if not isinstance(value, datetime):
            return f"{name} must be a datetime, not {type(value).__name__}"
        try:
            format_time(value)
        except (OverflowError, ValueError):
            return f"{name} is out of range once converted to UTC"
    if not isinstance(event.props, dict) or not all(isinstance(key, str) for key in event.props):
        return "props must be a dict with text keys"
    if event.links_to is not None and not event.user:
        return "links_to needs a user: an identity link joins two users (clear links_to with the user)"
    if event.once_per is not None and not isinstance(event.once_per, timedelta):
        return f"once_per must be a timedelta or None, not {type(event.once_per).__name__}"
    merge = event.merge_profile
    if merge is not None and not (
        isinstance(merge, tuple)
        and len(merge) == 2
        and isinstance(merge[0], dict)
        and isinstance(merge[1], str | None)
    ):
        return "merge_profile must be None or (attributes dict, e-mail or None)"
    return None


def _rejection(event: Event, reason: str, message: str) -> Rejection:
    # A hook may have broken any field of the event: the rejected log takes text.
    return Rejection(
        reason=reason,
        message=message,
        source=_text(event.source) or "unknown",
        tenant=_text(event.tenant) or "default",
        type=_text(event.type),
        payload=_payload(event),
        received_at=event.received_at if isinstance(event.received_at, datetime) else None,
    )


def _text(value: Any) -> str | None:
    return value if value is None or type(value) is str else str(value)


def _payload(event: Event) -> str | None:
    try:
        return json.dumps(event.to_dict(), default=str, ensure_ascii=False)
    except Exception:  # a hook put something in a time field that is no time
        return None
