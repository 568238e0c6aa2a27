"""DialogueManager: the one entry point channels call — a message in, a reply out, both turns stored.

Control flow of ``respond``, under the conversation's lock: a command is answered by the core; otherwise, in one
transaction, the user is looked up (a blocked user gets nothing), a message the channel delivered before (same
channel message id) is recognised, and a new message is committed as the user's turn before anything else, so it
is never lost if generation fails. The generator then runs with no transaction open, with the user's decoding
settings, and the reply is committed in a second, short transaction with its provenance (model, decoding, score,
latency). A transaction whose connection dropped before its commit runs again (``run_transaction``); any other
database failure is a one-line StorageError, and the message delivered again is answered then. The channel reports
each reply it sent (``delivered``); a message delivered again after a restart is not answered twice: a reply
already sent is not sent again, one stored but never sent is sent without being generated again, and a message
whose reply was never stored is answered now.

The lock is per process, plus an advisory lock on Postgres when several processes serve the bot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import timedelta

from chatbot.dialogue import commands as texts
from chatbot.dialogue.commands import Command, parse_command
from chatbot.dialogue.generator import Generator
from chatbot.dialogue.settings import COMMAND_FIELDS, DecodeSettings, SettingError, apply_command
from chatbot.dialogue.types import NOTHING, Reply, Role, Turn
from chatbot.storage.contract import Clock, ConversationStore, Transaction, utc_now
from chatbot.storage.locking import ConversationLock
from chatbot.storage.records import Provenance, ProvenReply, StoredUser
from chatbot.storage.transactions import run_transaction
from chatbot.text.normalize import valid_unicode

logger = logging.getLogger(__name__)

FALLBACK_REPLY = "..."
UNSURE_REPLY = "I'm not sure what to say to that."  # when the generator has no reply it is confident in
EXPORT_LIMIT = 1000  # turns /export shows at most
ADMIN_COMMANDS = ("stats", "model")
MAX_MESSAGE_CHARS = 4096  # Telegram's own limit, kept on every channel: longer input is refused, never stored
LOCK_STRIPES = 1024  # conversations sharing a stripe wait for each other; 1/1024 of pairs do, which is rare enough


@dataclass(frozen=True)
class _Pending:
    """A user turn, stored, that is to be answered: where it is and who asked."""

    conversation_id: int
    turn_id: int
    settings: DecodeSettings


class DialogueManager:
    """Channel-neutral conversation logic over a Generator and the conversation store.

    A conversation idle for longer than ``session_timeout`` (None: never) ends, and the next message starts a new
    one, so yesterday's small talk does not leak into today's. ``clock`` says what time it is (tests pass a fake).
    """

    def __init__(
        self,
        generator: Generator,
        transaction: Transaction,
        session_timeout: timedelta | None = None,
        clock: Clock = utc_now,
        shared_lock: ConversationLock | None = None,
    ) -> None:
        self.generator = generator
        self.transaction = transaction
        self.session_timeout = session_timeout
        self.clock = clock
        self.shared_lock = shared_lock  # across processes (storage/locking.py); None: this process only
        self._locks = tuple(threading.Lock() for _ in range(LOCK_STRIPES))

    def respond(
        self,
        channel: str,
        external_id: str,
        text: str,
        message_id: str | None = None,
        display_name: str | None = None,
        admin: bool = False,
    ) -> Reply:
        """Answer one message from ``external_id`` (a user or chat id) on ``channel``.

        ``message_id`` is the channel's id of the message (None where the channel has none), by which a message
        delivered twice is answered once. ``admin`` (the channel decides who is) allows /stats and /model. A
        message longer than ``MAX_MESSAGE_CHARS`` is refused with a message saying so, and nothing is stored.
        Messages of one user or chat are answered strictly one after another (a
        lock per conversation key, held from storing the message to storing the reply, and ``shared_lock`` across
        processes), while other conversations go on in parallel.
        """
        if len(text) > MAX_MESSAGE_CHARS:
            return Reply(texts.TOO_LONG_TEXT.format(length=len(text), limit=MAX_MESSAGE_CHARS), is_command=True)
        # Undecodable terminal bytes and JSON escapes can leave lone surrogates, which no UTF-8 database stores.
        text, display_name = valid_unicode(text), valid_unicode(display_name) if display_name is not None else None
        shared = self.shared_lock(channel, external_id) if self.shared_lock else contextlib.nullcontext()
        with self._lock_for(channel, external_id), shared:
            command = parse_command(text)
            if command is not None:
                return self._run_command(channel, external_id, command, display_name, admin)
            return self._answer(channel, external_id, text, message_id, display_name)

    def delivered(self, reply: Reply, channel_message_id: str) -> None:
        """Record that the channel sent ``reply`` as its message ``channel_message_id``."""
        if reply.turn_id is not None:
            with self.transaction() as store:
                store.mark_delivered(reply.turn_id, channel_message_id)

    def unreachable(self, channel: str, external_id: str) -> None:
        """Record that the channel can no longer deliver to this user (they blocked the bot); their next message
        makes them reachable again."""
        with self.transaction() as store:
            store.set_active(channel, external_id, active=False)

    def _lock_for(self, channel: str, external_id: str) -> threading.Lock:
        """One of a fixed set of locks, always the same for one key: bounded memory however many users come."""
        return self._locks[zlib.crc32(f"{channel}\0{external_id}".encode()) % LOCK_STRIPES]

    def _answer(
        self, channel: str, external_id: str, text: str, message_id: str | None, display_name: str | None
    ) -> Reply:
        stored = run_transaction(
            self.transaction,
            lambda store: self._store_message(store, channel, external_id, text, message_id, display_name),
        )
        return stored if isinstance(stored, Reply) else self._generate(*stored)

    def _store_message(
        self,
        store: ConversationStore,
        channel: str,
        external_id: str,
        text: str,
        message_id: str | None,
        display_name: str | None,
    ) -> Reply | tuple[_Pending, list[Turn]]:
        """The user's turn, stored once however often the channel delivers it, and the history to answer it from;
        or the Reply, where there is nothing to generate (a blocked user, a message answered before)."""
        user = store.user(channel, external_id, display_name)
        if user.blocked:
            return NOTHING
        earlier = store.earlier(user.id, message_id) if message_id is not None else None
        if earlier is not None and earlier.reply_id is not None and earlier.reply_text is not None:
            logger.info(
                "message %s of %s:%s was answered before; not answering again", message_id, channel, external_id
            )
            return Reply(earlier.reply_text, turn_id=earlier.reply_id, send=not earlier.reply_delivered)
        settings = DecodeSettings.from_json(user.settings)
        if earlier is not None:  # stored, but the process stopped (or the database failed) before its reply was
            pending = _Pending(earlier.conversation_id, earlier.turn_id, settings)
        else:
            conversation_id = self._open_conversation(store, user.id)
            turn_id = store.add_turn(conversation_id, Turn(Role.USER, text), channel_message_id=message_id)
            pending = _Pending(conversation_id, turn_id, settings)
        return pending, store.recent_turns(pending.conversation_id, self.generator.history_turns, pending.turn_id)

    def _generate(self, pending: _Pending, history: list[Turn]) -> Reply:
        """Run the generator on ``history`` and store its reply to the pending turn with the provenance."""
        started = time.perf_counter()
        generated = self.generator.reply(history, pending.settings)
        latency_ms = (time.perf_counter() - started) * 1000
        text = UNSURE_REPLY if generated.text is None else generated.text.strip() or FALLBACK_REPLY
        provenance = Provenance(generated.model, generated.decoding, generated.score, latency_ms, generated.source)
        turn_id = run_transaction(
            self.transaction,
            lambda store: store.add_turn(
                pending.conversation_id, Turn(Role.BOT, text), reply_to=pending.turn_id, provenance=provenance
            ),
        )
        logger.debug("conversation %s: replied with %d characters", pending.conversation_id, len(text))
        return Reply(text, turn_id=turn_id)

    def _open_conversation(self, store: ConversationStore, user_id: int) -> int:
        """The conversation this message belongs to: the open one, unless it has been idle past the timeout."""
        conversation_id = store.current_conversation(user_id)
        if (
            self.session_timeout is not None
            and self.clock() - store.last_activity(conversation_id) > self.session_timeout
        ):
            store.end_conversation(conversation_id)
            conversation_id = store.current_conversation(user_id)
        return conversation_id

    def _run_command(
        self, channel: str, external_id: str, command: Command, display_name: str | None, admin: bool
    ) -> Reply:
        with self.transaction() as store:
            user = store.user(channel, external_id, display_name)
            if user.blocked:
                return NOTHING
            if command.name == "forget":
                return Reply(texts.FORGET_TEXT.format(count=store.forget(channel, external_id)), is_command=True)
            if command.name in ADMIN_COMMANDS and not admin:
                return Reply(texts.ADMIN_ONLY_TEXT, is_command=True)
            if command.name != "why":
                return Reply(_answer_command(store, user, command, self.generator), is_command=True)
            last, history = _last_reply(store, user.id, self.generator.history_turns)
        explained = _why(last, history, self.generator)  # the model runs after the transaction
        return Reply(explained, is_command=True, fixed_width=True)


def _answer_command(store: ConversationStore, user: StoredUser, command: Command, generator: Generator) -> str:
    """The core's answer to a command other than /forget and /why (admin commands: the caller checked), read and
    written through ``store``."""
    current = store.current_conversation
    if command.name == "help":
        return texts.HELP_TEXT
    if command.name in ("start", "reset"):
        store.end_conversation(current(user.id))
        return texts.START_TEXT if command.name == "start" else texts.RESET_TEXT
    if command.name == "export":
        return _transcript(store.recent_turns(current(user.id), EXPORT_LIMIT))
    if command.name == "history":
        return _history(store, current(user.id), command.argument, generator.history_turns)
    if command.name == "settings" or command.name in COMMAND_FIELDS:
        return _settings(store, user, command, generator.default_settings)
    if command.name == "stats":
        return "\n".join(f"{name}: {value}" for name, value in dataclasses.asdict(store.stats()).items())
    if command.name == "model":
        return texts.MODEL_TEXT.format(model=generator.model_name, defaults=generator.default_settings.describe())
    return f"Unknown command /{command.name}. Try /help."


def _history(store: ConversationStore, conversation_id: int, argument: str, context_turns: int) -> str:
    """/history: the recent turns, as many as the model reads as context; /history N: the last N turns."""
    if argument and not (argument.isdigit() and 0 < int(argument) <= EXPORT_LIMIT):
        return f"Write /history, or /history N for the last N turns (1-{EXPORT_LIMIT})."
    return _transcript(store.recent_turns(conversation_id, int(argument) if argument else context_turns))


def _settings(store: ConversationStore, user: StoredUser, command: Command, defaults: DecodeSettings) -> str:
    """Show (``/settings``), clear (``/settings reset``) or change (``/mode``, ``/beam``...) decoding settings."""
    current = DecodeSettings.from_json(user.settings)
    if command.name == "settings":
        if command.argument.lower() not in ("", "reset"):
            return "Write /settings to see your decoding settings, or /settings reset to clear them."
        if not command.argument:
            return texts.SETTINGS_TEXT.format(settings=current.over(defaults).describe())
        chosen = DecodeSettings()
    else:
        try:
            chosen = apply_command(current, command.name, command.argument)
        except SettingError as error:
            return str(error)
    store.save_settings(user.id, chosen.to_json())
    return texts.SETTINGS_TEXT.format(settings=chosen.over(defaults).describe())


def _transcript(turns: list[Turn]) -> str:
    """A conversation as text, one "you:"/"bot:" line per turn."""
    lines = [f"{'you' if turn.role is Role.USER else 'bot'}: {turn.text}" for turn in turns]
    return "\n".join(lines) if lines else texts.EMPTY_EXPORT_TEXT


def _last_reply(store: ConversationStore, user_id: int, context_turns: int) -> tuple[ProvenReply | None, list[Turn]]:
    """The newest generated reply of the user's conversation and the turns it answered (as the model read them)."""
    conversation_id = store.current_conversation(user_id)
    last = store.last_provenance(conversation_id)
    if last is None or last.reply_to_id is None:
        return last, []
    return last, store.recent_turns(conversation_id, context_turns, through=last.reply_to_id)


def _why(last: ProvenReply | None, history: list[Turn], generator: Generator) -> str:
    """/why: how the newest reply was made (model, decoding, score, latency) and, where the generator can say,
    why it chose those words."""
    if last is None:
        return texts.NO_WHY_TEXT
    provenance = last.provenance
    decoding = ", ".join(f"{name} {value}" for name, value in provenance.decoding.items())
    score = "none" if provenance.score is None else f"{provenance.score:.3f}"
    summary = (
        texts.WHY_TEXT.format(
            text=last.text, model=provenance.model, decoding=decoding, score=score, latency=provenance.latency_ms
        )
        + "\n"
        + texts.source_line(provenance.source)
    )
    explanation = generator.explain(history, last.text) if history else None
    return summary if explanation is None else f"{summary}\n\n{explanation}"
