"""``chatbot db``: create or migrate the conversation database, and look after what it holds (stats, prune,
block)."""

from __future__ import annotations

import dataclasses
import json

import click

from chatbot.cli.group import ChatbotGroup
from chatbot.cli.options import db_option
from chatbot.cli.wiring import default_db_url


@click.group("db", cls=ChatbotGroup)
def db_group() -> None:
    """Manage the conversation database."""


@db_group.command("upgrade")
@db_option()
def db_upgrade(db: str | None) -> None:
    """Create the database or migrate it to the newest schema (also done automatically on start)."""
    from chatbot.storage.engine import describe, open_database, parse_url

    url = db or default_db_url()
    open_database(url)
    click.echo(f"database at {describe(parse_url(url))} is up to date")


@db_group.command("stats")
@db_option()
def db_stats(db: str | None) -> None:
    """Print what the database holds as JSON: conversations (open and per channel), users (and how many are
    blocked), messages by role, and the time span of the messages."""
    from chatbot.storage.engine import open_database
    from chatbot.storage.maintenance import database_stats

    with open_database(db or default_db_url()).begin() as session:
        click.echo(json.dumps(dataclasses.asdict(database_stats(session)), indent=2))


@db_group.command("prune")
@db_option()
@click.option(
    "--older-than",
    required=True,
    metavar="DURATION",
    help="Delete conversations whose last message is older than this: 30d, 12h, 90m or 2w.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def db_prune(db: str | None, older_than: str, dry_run: bool) -> None:
    """Delete old conversations with all their messages, and then users left with no conversation (first seen
    before the cut-off, with their settings), in one transaction; print what went as JSON."""
    from datetime import datetime, timezone

    from chatbot.storage.engine import open_database
    from chatbot.storage.maintenance import parse_duration, prune

    age = parse_duration(older_than)
    with open_database(db or default_db_url()).begin() as session:
        result = prune(session, age, datetime.now(timezone.utc), dry_run)
    click.echo(json.dumps({"dry_run": dry_run, "older_than": older_than, **dataclasses.asdict(result)}, indent=2))


@db_group.command("block")
@db_option()
@click.argument("who", metavar="CHANNEL:ID")
@click.option("--undo", is_flag=True, help="Unblock instead.")
def db_block(db: str | None, who: str, undo: bool) -> None:
    """Block a user or chat (e.g. telegram:123456): the bot neither answers nor stores their messages. --undo
    lifts the block."""
    from chatbot.storage.engine import open_database
    from chatbot.storage.store import sql_transaction

    channel, _, external_id = who.partition(":")
    if not channel or not external_id:
        raise click.BadParameter(f"{who!r}: write CHANNEL:ID, such as telegram:123456", param_hint="CHANNEL:ID")
    with sql_transaction(open_database(db or default_db_url()))() as store:
        store.set_blocked(channel, external_id, not undo)
    click.echo(f"{who} is {'no longer ' if undo else ''}blocked")
