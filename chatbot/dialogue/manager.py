"""DialogueManager: the one entry point channels call — a message in, a reply out, both turns stored.

Control flow of ``respond``: a command is answered by the core; otherwise the user's turn is committed first (so it
is never lost if generation fails), the recent history is read in the same transaction, the generator runs with no
transaction open, and the reply is committed in a second, short transaction.
"""

from __future__ import annotations

import logging

from chatbot.dialogue.commands import HELP_TEXT, RESET_TEXT, START_TEXT, Command, parse_command
from chatbot.dialogue.generator import Generator
from chatbot.dialogue.types import Reply, Role, Turn
from chatbot.storage.store import Transaction

logger = logging.getLogger(__name__)

FALLBACK_REPLY = "..."
UNSURE_REPLY = "I'm not sure what to say to that."  # when the generator has no reply it is confident in


class DialogueManager:
    """Channel-neutral conversation logic over a Generator and a ConversationStore."""

    def __init__(self, generator: Generator, transaction: Transaction) -> None:
        self.generator = generator
        self.transaction = transaction

    def respond(self, channel: str, external_id: str, text: str) -> Reply:
        """Answer one message from ``external_id`` (a user or chat id) on ``channel``."""
        command = parse_command(text)
        if command is not None:
            return self._run_command(channel, external_id, command)
        with self.transaction() as store:
            conversation_id = store.current_conversation(channel, external_id)
            store.add_turn(conversation_id, Turn(Role.USER, text))
            history = store.recent_turns(conversation_id, self.generator.history_turns)
        generated = self.generator.reply(history)
        reply = UNSURE_REPLY if generated is None else generated.strip() or FALLBACK_REPLY
        with self.transaction() as store:
            store.add_turn(conversation_id, Turn(Role.BOT, reply))
        logger.debug("conversation %s: replied with %d characters", conversation_id, len(reply))
        return Reply(reply)

    def reset(self, channel: str, external_id: str) -> None:
        """End the open conversation, if any; the next message starts a fresh history."""
        with self.transaction() as store:
            store.end_conversation(store.current_conversation(channel, external_id))

    def _run_command(self, channel: str, external_id: str, command: Command) -> Reply:
        if command.name == "help":
            return Reply(HELP_TEXT, is_command=True)
        if command.name == "start":
            self.reset(channel, external_id)
            return Reply(START_TEXT, is_command=True)
        if command.name == "reset":
            self.reset(channel, external_id)
            return Reply(RESET_TEXT, is_command=True)
        return Reply(f"Unknown command /{command.name}. Try /help.", is_command=True)
