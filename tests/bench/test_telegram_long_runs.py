"""bench/telegram_long_runs.py: how it matches replies to messages (by quote, then by the database, then by order
within a chat) and what it counts from that; and each subcommand at a tiny scale against the real `chatbot telegram`
(the shipped model, one thread), whose JSON must hold every figure it promises, with each message answered exactly
once and each chat's replies in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.bench.scripts import load_script
from tests.channels.fake_bot_api import SentMessage

SMALL_BOT = ("--threads", "1", "--max-batch", "1")  # one process per bot: the quickest start
EXACTLY_ONCE = {"duplicates": 0, "missing": 0, "out_of_order": 0, "contradicted": 0}
FAILURE_WORDS = {
    "duplicates": "duplicate replies",
    "missing": "without a reply",
    "out_of_order": "out of their chat's order",
    "contradicted": "quoting another message",
}


long_runs = load_script("telegram_long_runs.py")


def questions(chat: int, count: int, first_id: int) -> list[Any]:
    return [long_runs.Question(chat, n, f"m{chat}-{n}", n + 1, first_id + n, 0.0) for n in range(count)]


def test_a_reply_is_matched_by_its_quote_then_the_database_then_its_chats_order() -> None:
    asked = questions(7, 4, 10) + questions(8, 1, 20)
    sends = [
        SentMessage(7, "a", message_id=100),  # the database: answers message 10
        SentMessage(8, "b", message_id=101),  # by order: chat 8's only message
        SentMessage(7, "c", message_id=102, reply_to=12),  # quoted: message 12, m7-2
        SentMessage(7, "d", message_id=103),  # by order: the oldest left, m7-1, after m7-2: out of order
        SentMessage(7, "e", message_id=104, reply_to=12),  # m7-2 again: a duplicate
        SentMessage(7, "f", message_id=105),  # by order: m7-3
        SentMessage(7, "g", message_id=106),  # nothing left to answer: a duplicate
    ]
    matching = long_runs.match(asked, sends, {100: 10, 104: 13})  # 104's quote and the database disagree
    assert [question and question.text for question in matching.answers] == [
        "m7-0",
        "m8-0",
        "m7-2",
        "m7-1",
        "m7-2",
        "m7-3",
        None,
    ]
    figures = long_runs.answer_figures(asked, sends, matching)
    assert figures == {
        "duplicates": 2,
        "missing": 0,
        "out_of_order": 1,
        "matched_by": {"database": 1, "quote": 2, "order": 3},
        "contradicted": 1,
    }
    first = long_runs.first_replies(sends, matching)
    assert first[12].text == "c" and len(first) == 5


def test_a_message_nobody_answered_is_missing_and_the_database_is_checked_on_its_own() -> None:
    asked = questions(7, 3, 10)
    sends = [SentMessage(7, "a", message_id=100), SentMessage(7, "b", message_id=101)]
    assert long_runs.answer_figures(asked, sends, long_runs.match(asked, sends, {}))["missing"] == 1
    turn = long_runs.StoredTurn
    turns = [
        turn("7", 1, "user", "m7-0", "10", None),
        turn("7", 2, "bot", "hi", "100", 1),
        turn("7", 3, "user", "m7-1", "11", None),
        turn("7", 4, "user", "m7-1", "11", None),  # stored twice, under one channel id
        turn("7", 5, "bot", "hello", None, 3),  # never marked delivered
        turn("7", 6, "bot", "hello again", "101", 4),  # the second user turn answered too
    ]
    assert long_runs.delivered_as(turns) == {100: 10, 101: 11}
    assert long_runs.database_figures(asked, turns) == {
        "user_turns_missing": 1,
        "user_turns_repeated": 1,
        "bot_turns_missing": 1,
        "bot_turns_repeated": 1,
        "channel_ids_repeated": 1,
        "bot_turns_undelivered": 1,
    }


def test_memory_is_summed_over_a_process_and_its_descendants() -> None:
    holding = "import sys; data = b'x' * (64 << 20); sys.stdin.read()"  # 64 MiB, resident, until stdin closes
    child = subprocess.Popen([sys.executable, "-c", holding], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10.0
        while long_runs.rss_mib(child.pid) < 64 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in long_runs.descendants(os.getpid())
        assert long_runs.rss_mib(os.getpid()) >= long_runs.rss_mib(child.pid) + 1 > 65
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10.0)
    assert not long_runs.running(child.pid)


def run(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict[str, Any]]:
    code = long_runs.main(list(arguments))
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert code == (0 if report["passed"] else 1) and report["passed"] == (report["failed"] == [])
    assert report["machine"]["cpus"] >= 1 and report["machine"]["other_processes_seen"] >= 0
    return code, report


def assert_verdict_follows_the_figures(report: dict[str, Any]) -> None:
    """Each exactly-once figure that is not 0 fails the run, saying so, and none that is 0 does (the database's
    count of bot turns never marked delivered is reported, not judged)."""
    failed = " ".join(report["failed"])
    for key, words in FAILURE_WORDS.items():
        assert (report[key] > 0) == (words in failed), (key, report["failed"])
    judged = [value for key, value in report["database"].items() if key != "bot_turns_undelivered"]
    assert any(judged) == ("database:" in failed), (report["database"], report["failed"])


def assert_answered_exactly_once(report: dict[str, Any]) -> None:
    assert {key: report[key] for key in EXACTLY_ONCE} == EXACTLY_ONCE, report
    assert set(report["database"].values()) == {0}, report["database"]
    assert sum(report["matched_by"].values()) == report["messages"]


def test_backlog_stops_the_bot_restarts_it_and_counts_every_answer(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run(capsys, "backlog", "--seconds", "3", "--rate", "20", "--chats", "5", *SMALL_BOT)
    assert report["messages"] == 60 and report["settings"]["chats"] == 5
    assert_verdict_follows_the_figures(report)
    assert_answered_exactly_once(report)
    assert 0 <= report["answered_before_stop"] <= report["answered_before_exit"] <= 60
    assert report["exit_seconds"] <= 10 and report["restarted_exit_seconds"] <= 10
    assert 1.0 <= report["deliveries_per_update_first_run"] <= report["deliveries_per_update"] <= 1.1
    assert report["drain_seconds"] >= report["restart_ready_seconds"] > 0
    assert code == 0, report["failed"]


def test_soak_times_every_reply_and_samples_the_memory_of_the_bot_and_its_model_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = ("--seconds", "5", "--rate", "10", "--chats", "5", "--threads", "1", "--sample-seconds", "1")
    _, report = run(capsys, "soak", *arguments)
    assert report["messages"] == 50
    assert_answered_exactly_once(report)
    assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert report["rss_start_mib"] > 0 and report["rss_warm_mib"] > 0 and report["rss_end_mib"] > 0
    assert len(report["rss_samples"]) >= 5 and report["rss_growth_percent"] is not None
    # Latency and memory depend on the machine (a busy CI runner); the rest may not fail.
    assert all(failure.startswith(("latency p95", "memory grew")) for failure in report["failed"]), report["failed"]


def test_workers_share_postgres_and_go_on_when_one_is_killed(
    capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    arguments = ("--workers", "2", "--messages", "40", "--chats", "8", "--db", postgres_url, *SMALL_BOT)
    _, report = run(capsys, "workers", *arguments)
    assert report["messages"] == 40
    assert_verdict_follows_the_figures(report)
    # A worker SIGKILLed between a sendMessage and recording it has that reply sent again by another worker (the
    # limit outbox.py states): a duplicate the harness must count, as above. Nothing else may go wrong.
    assert report["missing"] == report["out_of_order"] == report["contradicted"] == 0, report
    assert set(report["database"].values()) == {0}, report["database"]
    assert report["killed"]["worker"] == "worker-1" and report["killed"]["after_messages"] == 20
    assert report["undeliverable"] == 0 and sum(report["post_failures"].values()) >= 1  # the dead worker's turn
    assert list(report["exit_seconds"]) == ["worker-0"] and report["wall_seconds"] >= report["post_seconds"]
