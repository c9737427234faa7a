"""``flask eventtrack ...`` commands. Dialects add theirs through ``commands``."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

import click
from flask.cli import with_appcontext

from ._terminal import printable
from .dialects import available_dialects, dialect_module
from .errors import StoreUnavailable
from .events import EXPORT_FIELDS
from .extension import get_state
from .keys import KEY_KINDS, create_key
from .stores import EventQuery, across_tenants

F = TypeVar("F", bound=Callable[..., Any])
REJECTED_FIELDS = ("id", "tenant", "source", "type", "reason", "message", "payload", "received_at")
PROGRESS_EVERY = 10_000
#: First characters that make a spreadsheet run a CSV cell as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class IsoTime(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 date or time; without an offset it is taken as UTC."""

    name = "ISO8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).replace("z", "Z"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or time", param, ctx)
        try:
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
            self.fail(f"{value!r} is out of range once converted to UTC", param, ctx)


class Text(click.types.StringParamType):
    """Free text the store can hold: argv bytes that are not UTF-8 reach Python as lone
    surrogates (PEP 383), which no database driver can encode."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text: str = super().convert(value, param, ctx)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("is not valid UTF-8 text", param, ctx)
        return text


TEXT = Text()


def tenant_option(help: str) -> Callable[[F], F]:
    """A required ``--tenant``: an empty one would issue what no request can use."""

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        if not value.strip():
            raise click.BadParameter("must not be empty")
        return value

    return click.option("--tenant", required=True, callback=check, help=help)


class _Commands(click.Group):
    """Our commands: a store that cannot be reached is a one-line error, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StoreUnavailable as exc:
            raise click.ClickException(f"The event store is unavailable: {exc.description}") from None


@click.group(cls=_Commands, help="Read and manage the events recorded by flask-eventtrack.")
def cli() -> None:
    pass


@cli.command(help="Write events (or the rejected log) as NDJSON or CSV.")
@click.option("--tenant", help="Only this tenant.")
@click.option("--type", "type_", help="Only this event type.")
@click.option(
    "--source",
    help="Only this source: a dialect (cortex, ibexa, synerise, profile) or what emit() was given.",
)
@click.option(
    "--since",
    type=IsoTime(),
    help="At or after this time (ISO 8601; UTC if no offset): occurred_at, or received_at with --rejected.",
)
@click.option(
    "--until",
    type=IsoTime(),
    help="Before this time (ISO 8601; UTC if no offset): occurred_at, or received_at with --rejected.",
)
@click.option(
    "--user", "raw_user", help="A raw user id: its events, and those of ids linked to it by logins."
)
@click.option("--rejected", is_flag=True, help="Export the rejected log, with reasons, instead.")
@click.option("--format", "fmt", type=click.Choice(["ndjson", "csv"]), default="ndjson", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="File to write (default stdout).",
)
@with_appcontext
def export(
    tenant: str | None,
    type_: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    raw_user: str | None,
    rejected: bool,
    fmt: str,
    output: IO[str],
) -> None:
    state = get_state()
    store = state.store
    query = EventQuery(tenant=tenant, type=type_, source=source, since=since, until=until)
    if raw_user is not None:
        if rejected:
            raise click.UsageError("--user cannot be combined with --rejected.")
        key = state.pipeline.user_key(raw_user)
        if tenant is None:  # an event is the user's only through its own tenant's logins
            query.users, is_users = across_tenants(store, key)
        else:
            query.users = store.linked_users(key, tenant)
    if rejected:
        rows: Iterable[dict[str, Any]] = (r.to_dict() for r in store.iter_rejected(query))
        fields: tuple[str, ...] = REJECTED_FIELDS
        total = None
    elif raw_user is not None and tenant is None:
        # Filtered as it streams, so the store's order is kept.
        rows = (e.to_dict() for e in store.iter_events(query) if is_users(e))
        fields = EXPORT_FIELDS
        total = None  # the count of the superset would overstate it
    else:
        rows = (e.to_dict() for e in store.iter_events(query))
        fields = EXPORT_FIELDS
        total = store.count_events(query)
    written = _write(_with_progress(rows, total), fields, fmt, output)
    if total is not None and total >= PROGRESS_EVERY or written >= PROGRESS_EVERY:
        click.echo(f"exported {written} rows", err=True)


def _with_progress(rows: Iterable[dict[str, Any]], total: int | None) -> Iterator[dict[str, Any]]:
    for count, row in enumerate(rows, 1):
        yield row
        if count % PROGRESS_EVERY == 0:
            suffix = f" of {total}" if total else ""
            click.echo(f"... {count}{suffix}", err=True)


def _write(rows: Iterable[dict[str, Any]], fields: tuple[str, ...], fmt: str, out: IO[str]) -> int:
    written = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            if isinstance(row.get("props"), dict):
                row["props"] = json.dumps(row["props"], ensure_ascii=False, sort_keys=True)
            writer.writerow({k: _inert(v) for k, v in row.items()})
            written += 1
    else:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    out.flush()
    return written


def _inert(value: Any) -> Any:
    """A CSV cell no spreadsheet runs as a formula: a leading ' (OWASP); NDJSON is exact."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


@cli.command(help="Count accepted and rejected events by tenant, source and type.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@with_appcontext
def stats(as_json: bool) -> None:
    rows = get_state().store.stats()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    header = ("tenant", "source", "type", "accepted", "rejected")
    table = [header] + [tuple(printable(str(row[k])) for k in header) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    if not rows:
        click.echo("(no events yet)", file=sys.stderr)


@cli.command(help="Create or upgrade the store's tables. Run it when you deploy, before the workers start.")
@with_appcontext
def migrate() -> None:
    """Migrate at deploy time, as ``flask db upgrade`` does for an app's own tables.

    A worker that finds the schema up to date never imports sqlite-utils (about
    2.5 MB of memory per worker, for as long as the worker lives), and the first
    request to PostgreSQL does not wait for the migration.
    """
    get_state().store.check()  # opening the store migrates it; PostgreSQL opens its pool here
    click.echo("The event store's schema is up to date.")


@cli.group(help="Create, list and revoke API and tracker keys (stored hashed).")
def keys() -> None:
    pass


@keys.command("create", help="Issue a key for a tenant; the secret is printed once.")
@tenant_option("The tenant (workspace / customer id) the key writes to.")
@click.option("--kind", type=click.Choice(KEY_KINDS), default="api", show_default=True)
@click.option("--label", default="", help="A note to recognise the key by.")
@with_appcontext
def keys_create(tenant: str, kind: str, label: str) -> None:
    state = get_state()
    config = state.config
    if (
        "cortex" in state.dialects
        and tenant == config["EVENTTRACK_CORTEX_TENANT"]
        and str(config["EVENTTRACK_CORTEX_SIGNATURE"]).lower() == "off"
    ):
        # Keys protect a tenant's reads and writes; unsigned Cortex posts need none.
        click.echo(
            f"warning: tenant {tenant!r} also takes unsigned Cortex events (EVENTTRACK_CORTEX_TENANT),"
            " so anyone can write events into it; set EVENTTRACK_CORTEX_SIGNATURE = 'required'"
            " or give Cortex another tenant.",
            err=True,
        )
    issued = create_key(state.store, tenant, kind, label)
    click.echo(f"id: {issued.id}", err=True)
    click.echo(issued.secret)


@keys.command("list", help="List keys (never their secrets).")
@click.option("--tenant", help="Only this tenant.")
@with_appcontext
def keys_list(tenant: str | None) -> None:
    for row in get_state().store.list_keys(tenant):
        status = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        line = f"{row['id']}  {row['tenant']}  {row['kind']}  {status}  {row['label'] or ''}"
        click.echo(printable(line).rstrip())


@keys.command("revoke", help="Revoke a key by its id; it stops working at once.")
@click.argument("key_id")
@with_appcontext
def keys_revoke(key_id: str) -> None:
    if not get_state().store.revoke_key(key_id):
        raise click.ClickException(f"No active key with id {key_id!r}.")
    click.echo(f"revoked {key_id}")


for _name in available_dialects():
    for _command in getattr(dialect_module(_name), "commands", ()):
        cli.add_command(_command)


def _text_params(command: click.Command) -> None:
    """Make every plain-text parameter, dialects' included, :class:`Text`. Done here: a
    dialect cannot import this module, as the app imports dialects first, so the loop
    above would find that dialect half-imported and drop its ``commands``."""
    for param in command.params:
        if param.type is click.STRING:
            param.type = TEXT
    for sub in getattr(command, "commands", {}).values():
        _text_params(sub)


_text_params(cli)
