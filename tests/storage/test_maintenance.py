"""`chatbot db stats`, `chatbot db prune` and `chatbot db block` on SQLite and a real Postgres: counts, the time
span, and retention that deletes whole stale conversations (messages included), then users left with none, and
nothing else."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from chatbot.cli import cli
from chatbot.dialogue.types import Role, Turn
from chatbot.errors import ChatbotError
from chatbot.storage import models
from chatbot.storage.engine import open_database
from chatbot.storage.maintenance import parse_duration
from chatbot.storage.store import sql_transaction
from chatbot.storage.transactions import engine_of


def fill(url: str) -> dict[str, int]:
    """Three conversations: one 60 days quiet, one whose last message is new, one empty and 40 days old."""
    sessions = open_database(url)
    transaction = sql_transaction(sessions)
    with transaction() as store:
        old = store.current_conversation(store.user("telegram", "1").id)
        recent = store.current_conversation(store.user("terminal", "ann").id)
        empty = store.current_conversation(store.user("telegram", "2").id)
        for conversation in (old, recent):
            store.add_turn(conversation, Turn(Role.USER, "hi"))
            store.add_turn(conversation, Turn(Role.BOT, "hello"))
        store.end_conversation(old)
    now = datetime.now(timezone.utc)
    with sessions.begin() as session:
        long_ago, a_while_ago = now - timedelta(days=60), now - timedelta(days=40)
        message, conversation = models.Message, models.Conversation
        session.execute(update(models.User).values(created_at=long_ago))
        session.execute(update(message).where(message.conversation_id == old).values(created_at=long_ago))
        session.execute(update(conversation).where(conversation.id.in_([old, recent])).values(started_at=long_ago))
        session.execute(update(conversation).where(conversation.id == old).values(last_activity_at=long_ago))
        session.execute(
            update(conversation)
            .where(conversation.id == empty)
            .values(started_at=a_while_ago, last_activity_at=a_while_ago)
        )
    engine_of(sessions).dispose()
    return {"old": old, "recent": recent, "empty": empty}


def run(*args: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_stats_then_prune(database_url: str) -> None:
    fill(database_url)
    stats = run("db", "stats", "--db", database_url)
    assert {k: stats[k] for k in ("conversations", "open_conversations", "users", "messages")} == {
        "conversations": 3,
        "open_conversations": 2,
        "users": 3,
        "messages": 4,
    }
    assert (stats["user_messages"], stats["bot_messages"]) == (2, 2)
    assert stats["conversations_per_channel"] == {"telegram": 2, "terminal": 1}
    assert stats["first_message_at"] < stats["last_message_at"]
    assert stats["inbox"] == {"received": 0, "answered": 0, "delivered": 0, "failed": 0}

    dry = run("db", "prune", "--db", database_url, "--older-than", "30d", "--dry-run")
    assert (dry["conversations"], dry["messages"], dry["users"]) == (2, 2, 2)
    assert run("db", "stats", "--db", database_url)["conversations"] == 3  # a dry run deletes nothing

    assert run("db", "prune", "--db", database_url, "--older-than", "50d") == {
        "dry_run": False,
        "older_than": "50d",
        "conversations": 1,
        "messages": 2,
        "users": 1,  # telegram:1 has nothing left
    }
    assert run("db", "prune", "--db", database_url, "--older-than", "4w")["conversations"] == 1  # the empty one
    after = run("db", "stats", "--db", database_url)
    assert (after["conversations"], after["messages"], after["conversations_per_channel"]) == (1, 2, {"terminal": 1})
    assert after["users"] == 1


def test_block_and_unblock_from_the_command_line(database_url: str) -> None:
    runner = CliRunner()
    blocked = runner.invoke(cli, ["db", "block", "telegram:77", "--db", database_url])
    assert (blocked.exit_code, blocked.stdout) == (0, "telegram:77 is blocked\n")
    assert run("db", "stats", "--db", database_url)["blocked_users"] == 1
    assert runner.invoke(cli, ["db", "block", "--undo", "telegram:77", "--db", database_url]).exit_code == 0
    assert run("db", "stats", "--db", database_url)["blocked_users"] == 0
    bad = runner.invoke(cli, ["db", "block", "telegram", "--db", database_url])
    assert bad.exit_code == 2 and "write CHANNEL:ID" in bad.stderr


def test_durations() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration(" 12h") == timedelta(hours=12)
    assert parse_duration("2w") == timedelta(weeks=2)
    with pytest.raises(ChatbotError, match="not a duration"):
        parse_duration("30 days")


def test_a_bad_duration_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(cli, ["db", "prune", "--db", "sqlite:///:memory:", "--older-than", "soon"])
    assert result.exit_code == 2 and "not a duration" in result.stderr
