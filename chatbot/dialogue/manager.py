"""DialogueManager: the one entry point channels call — a message in, a reply out, both turns stored.

Control flow of ``respond``: under the conversation's lock, a command is answered by the core; otherwise the user's
turn is committed first (so it is never lost if generation fails), the recent history is read in the same
transaction, the generator runs with no transaction open, and the reply is committed in a second, short
transaction. The lock is per process, plus an advisory lock on Postgres when several processes serve the bot.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from chatbot.dialogue.commands import (
    EMPTY_EXPORT_TEXT,
    FORGET_TEXT,
    HELP_TEXT,
    RESET_TEXT,
    START_TEXT,
    Command,
    parse_command,
)
from chatbot.dialogue.generator import Generator
from chatbot.dialogue.types import Reply, Role, Turn
from chatbot.storage.locking import ConversationLock
from chatbot.storage.store import ConversationStore, Transaction

logger = logging.getLogger(__name__)

FALLBACK_REPLY = "..."
UNSURE_REPLY = "I'm not sure what to say to that."  # when the generator has no reply it is confident in
EXPORT_LIMIT = 1000  # turns /export shows at most
LOCK_STRIPES = 1024  # conversations sharing a stripe wait for each other; 1/1024 of pairs do, which is rare enough


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class DialogueManager:
    """Channel-neutral conversation logic over a Generator and a ConversationStore.

    A conversation idle for longer than ``session_timeout`` (None: never) ends, and the next message starts a new
    one, so yesterday's small talk does not leak into today's. ``clock`` says what time it is (tests pass a fake).
    """

    def __init__(
        self,
        generator: Generator,
        transaction: Transaction,
        session_timeout: timedelta | None = None,
        clock: Callable[[], datetime] = _utc_now,
        shared_lock: ConversationLock | None = None,
    ) -> None:
        self.generator = generator
        self.transaction = transaction
        self.session_timeout = session_timeout
        self.clock = clock
        self.shared_lock = shared_lock  # across processes (storage/locking.py); None: this process only
        self._locks = tuple(threading.Lock() for _ in range(LOCK_STRIPES))

    def respond(self, channel: str, external_id: str, text: str) -> Reply:
        """Answer one message from ``external_id`` (a user or chat id) on ``channel``.

        Messages of one user or chat are answered strictly one after another (a lock per conversation key, held
        from storing the message to storing the reply, and ``shared_lock`` across processes), while other
        conversations go on in parallel.
        """
        shared = self.shared_lock(channel, external_id) if self.shared_lock else contextlib.nullcontext()
        with self._lock_for(channel, external_id), shared:
            command = parse_command(text)
            if command is not None:
                return self._run_command(channel, external_id, command)
            return self._answer(channel, external_id, text)

    def _lock_for(self, channel: str, external_id: str) -> threading.Lock:
        """One of a fixed set of locks, always the same for one key: bounded memory however many users come."""
        return self._locks[zlib.crc32(f"{channel}\0{external_id}".encode()) % LOCK_STRIPES]

    def _answer(self, channel: str, external_id: str, text: str) -> Reply:
        with self.transaction() as store:
            conversation_id = self._open_conversation(store, channel, external_id)
            store.add_turn(conversation_id, Turn(Role.USER, text))
            history = store.recent_turns(conversation_id, self.generator.history_turns)
        generated = self.generator.reply(history)
        reply = UNSURE_REPLY if generated is None else generated.strip() or FALLBACK_REPLY
        with self.transaction() as store:
            store.add_turn(conversation_id, Turn(Role.BOT, reply))
        logger.debug("conversation %s: replied with %d characters", conversation_id, len(reply))
        return Reply(reply)

    def _open_conversation(self, store: ConversationStore, channel: str, external_id: str) -> int:
        """The conversation this message belongs to: the open one, unless it has been idle past the timeout."""
        conversation_id = store.current_conversation(channel, external_id)
        if (
            self.session_timeout is not None
            and self.clock() - store.last_activity(conversation_id) > self.session_timeout
        ):
            store.end_conversation(conversation_id)
            conversation_id = store.current_conversation(channel, external_id)
        return conversation_id

    def reset(self, channel: str, external_id: str) -> None:
        """End the open conversation, if any; the next message starts a fresh history."""
        with self.transaction() as store:
            store.end_conversation(store.current_conversation(channel, external_id))

    def _transcript(self, channel: str, external_id: str) -> str:
        """The current conversation as text, one "you:"/"bot:" line per turn."""
        with self.transaction() as store:
            conversation_id = store.current_conversation(channel, external_id)
            turns = store.recent_turns(conversation_id, EXPORT_LIMIT)
        lines = [f"{'you' if turn.role is Role.USER else 'bot'}: {turn.text}" for turn in turns]
        return "\n".join(lines) if lines else EMPTY_EXPORT_TEXT

    def _run_command(self, channel: str, external_id: str, command: Command) -> Reply:
        if command.name == "help":
            return Reply(HELP_TEXT, is_command=True)
        if command.name == "start":
            self.reset(channel, external_id)
            return Reply(START_TEXT, is_command=True)
        if command.name == "reset":
            self.reset(channel, external_id)
            return Reply(RESET_TEXT, is_command=True)
        if command.name == "forget":
            with self.transaction() as store:
                deleted = store.forget(channel, external_id)
            return Reply(FORGET_TEXT.format(count=deleted), is_command=True)
        if command.name == "export":
            return Reply(self._transcript(channel, external_id), is_command=True)
        return Reply(f"Unknown command /{command.name}. Try /help.", is_command=True)
