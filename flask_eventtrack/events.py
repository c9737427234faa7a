"""The canonical event: the one shape every dialect produces and every store keeps.

Dialects build :class:`Event` objects with the *raw* user id; the pipeline fills
in ``id``/``received_at``, applies the time rules and replaces ``user`` by its
keyed hash before anything reaches a store or a hook.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

__all__ = [
    "EXPORT_FIELDS",
    "Event",
    "Rejection",
    "format_time",
    "new_event_id",
    "new_event_ids",
    "parse_time",
    "utcnow",
]

#: Field names of an exported event, in export order (spec section 0).
EXPORT_FIELDS = (
    "id",
    "tenant",
    "source",
    "type",
    "user",
    "user_kind",
    "item_type",
    "item_id",
    "occurred_at",
    "received_at",
    "original_time",
    "props",
    "dedup_key",
    "status",
)


def utcnow() -> datetime:
    """Aware UTC now, truncated to milliseconds (the precision we keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_time(value: datetime) -> str:
    """``2022-11-28T12:18:27.000Z``: fixed width, so text order is time order."""
    return _format_utc(value if value.tzinfo is UTC else value.astimezone(UTC))


@lru_cache(maxsize=4096)
def _format_utc(value: datetime) -> str:
    """Cached: a batch usually shares one receipt time and few occurrence times.

    Only UTC values are cached: two local times that differ only in ``fold``
    (the repeated hour when clocks go back) are equal as keys.
    """
    if value.year < 1000:  # isoformat would not pad to four digits everywhere
        v = value
        return (
            f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
            f".{v.microsecond // 1000:03d}Z"
        )
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_time(value: str) -> datetime:
    """Parse an ISO 8601 time *with* an offset (``Z`` allowed) into aware UTC.

    :raises ValueError: when the text is not ISO 8601 or has no offset.
    """
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError("time has no UTC offset")
    parsed = parsed.astimezone(UTC)
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


_last_ms = 0
_seq = 0
_id_lock = threading.Lock()  # gthread workers: ids stay monotonic across threads
# The RFC 9562 variant (0b10) in the top bits of a random hex digit.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562) string: unique, and sortable by creation time."""
    return new_event_ids(1)[0]


def new_event_ids(count: int) -> list[str]:
    """``count`` UUIDv7 strings, in order: one lock and one ``urandom`` call for a batch.

    A 12-bit counter in ``rand_a`` keeps ids monotonic within one millisecond in
    one process (an exhausted counter borrows the next millisecond); the 62
    random bits keep processes apart. The lock only reserves the counter range.
    """
    global _last_ms, _seq
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _seq = ms, -1
        ms, seq = _last_ms, _seq + 1
        _last_ms += (_seq + count) >> 12
        _seq = (_seq + count) & 0xFFF
    random = os.urandom(8 * count).hex()
    variant = _VARIANT
    head = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7"
    ids = []
    for i in range(0, 16 * count, 16):
        if seq > 0xFFF:
            ms, seq = ms + 1, 0
            head = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7"
        ids.append(f"{head}{seq:03x}-{variant[random[i]]}{random[i + 1 : i + 4]}-{random[i + 4 : i + 16]}")
        seq += 1
    return ids


@dataclass(slots=True)
class Event:
    """One canonical event (spec section 0).

    The last fields are write directives for the store, not data: they are
    never exported.

    ``dedup_key`` with ``replace=False`` keeps the first event and discards later
    ones (profile API ``orderId``); with ``replace=True`` a later event replaces
    the stored one but keeps its ``occurred_at`` (Synerise ``eventSalt``).
    ``once_per`` discards an event when the same tenant/source/type/user already
    has one within that window (profile API e-mail opens). ``links_to`` records
    that ``user`` is now known as another (hashed) user (Ibexa ``login``).
    ``merge_profile`` is ``(attributes, email)`` to merge into the user's
    existing profile in the same transaction, if the event is kept (profile
    API ``update``/``login``): an event and its attribute change commit together.
    """

    tenant: str
    source: str
    type: str
    user: str | None = None
    user_kind: str | None = None
    item_type: str | None = None
    item_id: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime | None = None
    original_time: str | None = None
    props: dict[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    status: str = "accepted"
    id: str | None = None
    #: keep a future ``occurred_at`` as sent (Synerise AI events)
    keep_future: bool = False
    replace: bool = False
    once_per: timedelta | None = None
    links_to: str | None = None
    merge_profile: tuple[dict[str, Any], str | None] | None = None

    @property
    def has_directives(self) -> bool:
        """True when the store must write this event on its own, not in bulk."""
        return bool(self.dedup_key or self.once_per or self.links_to or self.merge_profile)

    @classmethod
    def from_row(
        cls, row: Any, *, time: Callable[[Any], datetime | None], props: Callable[[Any], Any]
    ) -> Event:
        """An event read back from a store row (a mapping keyed by column name);
        ``time`` and ``props`` convert the store's own representations."""
        return cls(
            id=row["id"],
            tenant=row["tenant"],
            source=row["source"],
            type=row["type"],
            user=row["user"],
            user_kind=row["user_kind"],
            item_type=row["item_type"],
            item_id=row["item_id"],
            occurred_at=time(row["occurred_at"]),
            received_at=time(row["received_at"]),
            original_time=row["original_time"],
            props=props(row["props"]),
            dedup_key=row["dedup_key"],
            status=row["status"],
        )

    def to_row(self, *, time: Callable[[datetime], Any], props: str) -> tuple[Any, ...]:
        """The store row, in column order (:data:`EXPORT_FIELDS`); ``time`` converts
        times to the store's representation, ``props`` is the encoded ``props``."""
        return (
            self.id,
            self.tenant,
            self.source,
            self.type,
            self.user,
            self.user_kind,
            self.item_type,
            self.item_id,
            time(self.occurred_at),  # type: ignore[arg-type]  # set by the pipeline
            time(self.received_at),  # type: ignore[arg-type]
            self.original_time,
            props,
            self.dedup_key,
            self.status,
        )

    def to_dict(self) -> dict[str, Any]:
        """The exported form: spec field names, times as ISO 8601 UTC text."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "source": self.source,
            "type": self.type,
            "user": self.user,
            "user_kind": self.user_kind,
            "item_type": self.item_type,
            "item_id": self.item_id,
            "occurred_at": format_time(self.occurred_at) if self.occurred_at else None,
            "received_at": format_time(self.received_at) if self.received_at else None,
            "original_time": self.original_time,
            "props": self.props,
            "dedup_key": self.dedup_key,
            "status": self.status,
        }


@dataclass(slots=True)
class Rejection:
    """An event (or a whole request) we did not keep, and why.

    ``reason`` is a stable machine-readable type (``schema_violation``,
    ``size_violation``, ``signature_failure``, ``auth_failure``, ``duplicate``,
    ``bot``, ``dropped``, ...); ``message`` is for people. ``payload`` is the raw
    input, capped in size by the store.
    """

    reason: str
    message: str
    source: str
    tenant: str = "default"
    type: str | None = None
    payload: str | None = None
    received_at: datetime | None = None
    id: str | None = None

    @classmethod
    def from_row(cls, row: Any, *, time: Callable[[Any], datetime | None]) -> Rejection:
        """A rejected-log entry read back from a store row."""
        return cls(
            id=row["id"],
            tenant=row["tenant"],
            source=row["source"],
            type=row["type"],
            reason=row["reason"],
            message=row["message"],
            payload=row["payload"],
            received_at=time(row["received_at"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "source": self.source,
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "payload": self.payload,
            "received_at": format_time(self.received_at) if self.received_at else None,
        }
