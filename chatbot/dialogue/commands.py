"""Slash commands every channel shares: parsing ``/name@bot args`` and the texts the core answers with."""

from __future__ import annotations

from dataclasses import dataclass

HELP_TEXT = (
    "Commands: /help shows this list; /reset starts a new conversation (the bot forgets the history); /export "
    "shows this conversation as text; /forget deletes everything stored about you."
)
START_TEXT = "Hello! I'm a chatbot trained on conversations. Say something, or /help for commands."
RESET_TEXT = "Started a new conversation."
FORGET_TEXT = "Deleted your {count} stored messages. The next message starts afresh."
EMPTY_EXPORT_TEXT = "This conversation has no messages yet."


@dataclass(frozen=True)
class Command:
    """A parsed slash command: ``/reset@my_bot now`` is ``Command("reset", "now")``."""

    name: str
    argument: str = ""


def parse_command(text: str) -> Command | None:
    """Return the command in ``text``, or None when it is an ordinary message."""
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) == 1:
        return None
    head, _, argument = stripped[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    return Command(name, argument.strip()) if name else None
