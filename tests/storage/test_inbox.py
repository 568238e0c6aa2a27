"""The inbox store on SQLite and a real Postgres: an update stored once, claims that keep each chat's order and
lease one row to one worker, the writes of a worker that lost its lease refused, and finished rows cleared."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from chatbot.dialogue.types import Role, Turn
from chatbot.storage.engine import open_database
from chatbot.storage.inbox import ANSWERED, DELIVERED, InboxTransaction, Outgoing, inbox_transaction
from chatbot.storage.maintenance import database_stats
from chatbot.storage.store import sql_transaction

LEASE = timedelta(seconds=30)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def inbox(database_url: str, clock: FakeClock) -> InboxTransaction:
    return inbox_transaction(open_database(database_url), "telegram", "42", clock)


def receive(inbox: InboxTransaction, update_id: int, chat: str) -> bool:
    with inbox() as store:
        return store.receive(update_id, chat, {"update_id": update_id, "text": f"message {update_id}"})


def test_an_update_sent_twice_is_stored_once(inbox: InboxTransaction) -> None:
    assert receive(inbox, 1, "7")
    assert not receive(inbox, 1, "7")
    with inbox() as store:
        assert store.unfinished() == 1
        (row,) = store.claim("w1", 10, LEASE)
    assert (row.update_id, row.chat, row.payload["text"], row.claims) == (1, "7", "message 1", 1)


def test_another_bot_on_the_same_database_has_its_own_inbox(database_url: str, clock: FakeClock) -> None:
    sessions = open_database(database_url)
    ours, theirs = (inbox_transaction(sessions, "telegram", bot, clock) for bot in ("42", "43"))
    assert receive(ours, 1, "7") and receive(theirs, 1, "7")
    with theirs() as store:
        assert [row.update_id for row in store.claim("w1", 10, LEASE)] == [1]
    with ours() as store:
        assert store.unfinished() == 1


def test_a_claim_takes_only_the_oldest_unfinished_row_of_each_chat(inbox: InboxTransaction) -> None:
    for update_id, chat in [(1, "a"), (2, "a"), (3, "b"), (4, "c"), (5, "b")]:
        receive(inbox, update_id, chat)
    with inbox() as store:
        first = store.claim("w1", 10, LEASE)
        assert [row.update_id for row in first] == [1, 3, 4]
        assert store.claim("w2", 10, LEASE) == []  # leased, and the rest wait for their chat's older row
        assert store.answer(first[0].id, "w1", None)  # nothing to send: finished
        assert [row.update_id for row in store.claim("w2", 10, LEASE)] == [2]


def test_a_claim_takes_at_most_the_limit(inbox: InboxTransaction) -> None:
    for update_id in range(1, 6):
        receive(inbox, update_id, str(update_id))
    with inbox() as store:
        assert [row.update_id for row in store.claim("w1", 2, LEASE)] == [1, 2]
        assert [row.update_id for row in store.claim("w2", 10, LEASE)] == [3, 4, 5]


def test_a_row_goes_received_answered_delivered_and_is_cleared(database_url: str, clock: FakeClock) -> None:
    sessions = open_database(database_url)
    inbox = inbox_transaction(sessions, "telegram", "42", clock)
    with sql_transaction(sessions)() as conversations:
        user = conversations.user("telegram", "7")
        conversation = conversations.current_conversation(user.id)
        turn_id = conversations.add_turn(conversation, Turn(Role.BOT, "hi there"))
    receive(inbox, 1, "7")
    with inbox() as store:
        (row,) = store.claim("w1", 10, LEASE)
        assert store.answer(row.id, "w1", Outgoing("hi there", turn_id=turn_id))
        assert not store.answer(row.id, "w1", Outgoing("again"))  # answered once
    clock.now += LEASE * 2  # the lease ran out: the answered row is claimed again, reply and all
    with inbox() as store:
        (again,) = store.claim("w2", 10, LEASE)
        assert (again.state, again.reply, again.claims) == (ANSWERED, Outgoing("hi there", False, turn_id), 2)
        assert not store.deliver(row.id, "w1", turn_id, "555")  # w1 lost the row: its mark changes nothing
        store.parts_sent(row.id, "w2", 1)
        assert store.deliver(row.id, "w2", turn_id, "555")
        assert store.unfinished() == 0
    with sessions() as session:
        entry = session.execute(text("SELECT state, payload, reply_text, parts_sent FROM inbox")).one()
        sent_as = session.execute(text("SELECT channel_message_id FROM messages WHERE id = :id"), {"id": turn_id})
        assert (entry.state, entry.payload, entry.reply_text, entry.parts_sent) == (DELIVERED, None, None, 1)
        assert sent_as.scalar_one() == "555"
        assert database_stats(session).inbox == {"received": 0, "answered": 0, "delivered": 1, "failed": 0}


def test_a_reply_to_retry_waits_until_due_and_a_failed_one_is_finished(
    inbox: InboxTransaction, clock: FakeClock
) -> None:
    receive(inbox, 1, "7")
    with inbox() as store:
        (row,) = store.claim("w1", 10, LEASE)
        store.answer(row.id, "w1", Outgoing("hello"))
        store.retry_later(row.id, "w1", clock.now + timedelta(seconds=5))
        assert store.claim("w1", 10, LEASE) == []  # not due yet
    clock.now += timedelta(seconds=6)
    with inbox() as store:
        (again,) = store.claim("w2", 10, LEASE)
        assert again.attempts == 1
        assert store.fail(again.id, "w2")
        assert store.unfinished() == 0
    with inbox() as store:
        assert store.claim("w1", 10, LEASE) == []


def test_leases_are_renewed_released_and_pruned(inbox: InboxTransaction, clock: FakeClock) -> None:
    receive(inbox, 1, "a")
    receive(inbox, 2, "b")
    with inbox() as store:
        rows = store.claim("w1", 10, LEASE)
    clock.now += LEASE * 0.9
    with inbox() as store:
        store.renew("w1", [rows[0].id], LEASE)
    clock.now += LEASE * 0.2  # the renewed lease holds; the other ran out
    with inbox() as store:
        assert [row.update_id for row in store.claim("w2", 10, LEASE)] == [2]
        assert store.release("w1") == 1
        assert [row.update_id for row in store.claim("w3", 10, LEASE)] == [1]
        assert store.release_all() == 2
        (first, second) = store.claim("w4", 10, LEASE)
        store.answer(first.id, "w4", None)
        store.fail(second.id, "w4")
    clock.now += timedelta(days=2)
    with inbox() as store:
        assert store.prune(clock.now - timedelta(days=1)) == 2
        assert store.claim("w5", 10, LEASE) == []


def test_concurrent_claims_never_lease_one_row_twice(database_url: str, clock: FakeClock) -> None:
    """Workers claiming at the same moment (on Postgres: FOR UPDATE SKIP LOCKED) share the rows out."""
    inbox = inbox_transaction(open_database(database_url), "telegram", "42", clock)
    for update_id in range(1, 201):
        receive(inbox, update_id, str(update_id % 50))
    claimed: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        mine: list[int] = []
        for _ in range(20):
            with inbox() as store:
                rows = store.claim(name, 5, LEASE)
                mine += [row.update_id for row in rows]
                for row in rows:
                    store.answer(row.id, name, None)
        claimed[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = sorted(update_id for rows in claimed.values() for update_id in rows)
    assert every == list(range(1, 201))
