"""What the Ibexa events mean once stored: consumption, scenario and trigger
acceptance, item categories. Functions plus ``flask eventtrack`` commands.

Everything reads through :meth:`Store.iter_events`, so it works on every store;
user filters take *raw* ids, hash them, and follow identity links (``login``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import click
from flask.cli import with_appcontext

from ._terminal import printable
from .events import Event
from .extension import EventTrackState, get_state
from .stores import EventQuery, across_tenants

__all__ = ["commands", "consumption", "item_categories", "scenario_stats", "trigger_stats"]

SOURCE = "ibexa"
#: A ``consume`` event without ``percentage`` means the item was consumed (CHOICE: 100%).
FULL = 100


def _events(
    state: EventTrackState,
    type: str,
    *,
    tenant: str | None = None,
    users: list[str] | None = None,
    item_type: str | None = None,
    item_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[Event]:
    query = EventQuery(
        tenant=tenant,
        source=SOURCE,
        type=type,
        users=users,
        item_type=item_type,
        item_id=item_id,
        since=since,
        until=until,
    )
    return state.store.iter_events(query)


def consumption(
    state: EventTrackState | None = None,
    *,
    tenant: str | None = None,
    user: str | None = None,
    item_type: str | None = None,
    item_id: str | None = None,
) -> list[dict[str, Any]]:
    """The highest ``percentage`` per tenant, user and item: what the vendor counts.

    Consume events sent in steps (10%, 20%, ...) are all kept; this returns the
    maximum, whatever the order they arrived in. With ``user`` (a raw id), the
    events of every id linked to it by logins *of the event's tenant* count as
    that user's: one tenant's logins never stitch another tenant's users.

    :returns: rows ``tenant, user, item_type, item_id, percentage, events``,
        ``user`` being the stored key.
    """
    state = state or get_state()
    users = None
    merged_user = None
    is_users: Callable[[Event], bool] = lambda event: True  # noqa: E731
    if user is not None:
        merged_user = state.pipeline.user_key(user)
        if tenant is None:
            users, is_users = across_tenants(state.store, merged_user)
        else:
            users = state.store.linked_users(merged_user, tenant)
    best: dict[tuple[str, str, str, str], list[int]] = {}
    for event in _events(state, "consume", tenant=tenant, users=users, item_type=item_type, item_id=item_id):
        if not is_users(event):
            continue
        key = (event.tenant, merged_user or event.user or "", event.item_type or "", event.item_id or "")
        percentage = event.props.get("percentage", FULL)
        row = best.setdefault(key, [percentage, 0])
        row[0] = max(row[0], percentage)
        row[1] += 1
    return [
        {"tenant": t, "user": u, "item_type": it, "item_id": ii, "percentage": p, "events": n}
        for (t, u, it, ii), (p, n) in sorted(best.items())
    ]


def _acceptance(
    state: EventTrackState,
    key: str,
    shown_type: str,
    clicked_type: str,
    *,
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str | None], dict[str, Any]] = {}

    def add(event: Event, column: str) -> None:
        name = event.props.get(key)
        row = counts.setdefault(
            (event.tenant, name),
            {"tenant": event.tenant, key: name, "shown": 0, "clicked": 0, "users": set()},
        )
        row[column] += 1
        row["users"].add(event.user)

    for event in _events(state, shown_type, tenant=tenant, since=since, until=until):
        add(event, "shown")
    for event in _events(state, clicked_type, tenant=tenant, since=since, until=until):
        add(event, "clicked")
    rows = []
    for _, row in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        row["users"] = len(row["users"])
        row["rate"] = round(row["clicked"] / row["shown"], 4) if row["shown"] else None
        rows.append(row)
    return rows


def scenario_stats(
    state: EventTrackState | None = None,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Rendered impressions vs clicked recommendations per tenant and scenario.

    :returns: rows ``tenant, scenario, shown, clicked, users, rate`` where
        ``shown`` counts ``rendered`` items (``scenario`` is None for those sent
        without one), ``clicked`` counts ``clickrecommended`` and ``rate`` is
        clicked / shown (None when nothing was shown).
    """
    return _acceptance(
        state or get_state(),
        "scenario",
        "rendered",
        "clickrecommended",
        tenant=tenant,
        since=since,
        until=until,
    )


def trigger_stats(
    state: EventTrackState | None = None,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Opened trigger messages vs clicked trigger links per tenant and trigger.

    :returns: rows ``tenant, triggername, shown, clicked, users, rate``:
        ``shown`` counts ``triggeropened``, ``clicked`` counts ``clicktriggered``.
    """
    return _acceptance(
        state or get_state(),
        "triggername",
        "triggeropened",
        "clicktriggered",
        tenant=tenant,
        since=since,
        until=until,
    )


def item_categories(
    item_type: str,
    item_id: str,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    state: EventTrackState | None = None,
) -> dict[str, datetime]:
    """Category paths an item was clicked under, with the last time each was seen.

    An item moved to another category is in both (multi-homing) until the old
    path ages out: pass ``since`` to leave out paths not seen after it.
    """
    state = state or get_state()
    seen: dict[str, datetime] = {}
    for event in _events(
        state, "click", tenant=tenant, item_type=str(item_type), item_id=str(item_id), since=since
    ):
        path = event.props.get("categorypath")
        if path and event.occurred_at is not None:
            seen[path] = max(seen.get(path, event.occurred_at), event.occurred_at)
    return seen


def _utc(ctx: click.Context, param: click.Parameter, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        raise click.BadParameter(f"{value.isoformat()} is out of range once converted to UTC") from None


_TIME = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"])


def _table(rows: list[dict[str, Any]], header: tuple[str, ...]) -> None:
    table = [header] + [
        tuple("-" if row[k] is None else printable(str(row[k])) for k in header) for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@click.command(
    "scenarios",
    help="Ibexa: rendered vs clicked recommendations per scenario, opened vs clicked per trigger.",
)
@click.option("--tenant", help="Only this customer id.")
@click.option("--since", type=_TIME, callback=_utc, help="Occurred at or after (UTC if no offset).")
@click.option("--until", type=_TIME, callback=_utc, help="Occurred before (UTC if no offset).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row, with a 'kind' field.")
@with_appcontext
def scenarios_command(
    tenant: str | None, since: datetime | None, until: datetime | None, as_json: bool
) -> None:
    scenarios = scenario_stats(tenant=tenant, since=since, until=until)
    triggers = trigger_stats(tenant=tenant, since=since, until=until)
    if as_json:
        for kind, rows in (("scenario", scenarios), ("trigger", triggers)):
            for row in rows:
                click.echo(json.dumps({"kind": kind, **row}))
        return
    click.echo("Scenarios (rendered -> clickrecommended)")
    _table(
        [{**r, "rendered": r["shown"]} for r in scenarios],
        ("tenant", "scenario", "rendered", "clicked", "users", "rate"),
    )
    click.echo("\nTriggers (triggeropened -> clicktriggered)")
    _table(
        [{**r, "opened": r["shown"]} for r in triggers],
        ("tenant", "triggername", "opened", "clicked", "users", "rate"),
    )


@click.command("consumption", help="Ibexa: the highest consumed percentage per user and item.")
@click.option("--tenant", help="Only this customer id.")
@click.option("--user", "raw_user", help="A raw user id (ids linked to it by logins count as it).")
@click.option("--item-type", help="Only this item type.")
@click.option("--item-id", help="Only this item id.")
@with_appcontext
def consumption_command(
    tenant: str | None, raw_user: str | None, item_type: str | None, item_id: str | None
) -> None:
    for row in consumption(tenant=tenant, user=raw_user, item_type=item_type, item_id=item_id):
        click.echo(json.dumps(row))


commands = [scenarios_command, consumption_command]
