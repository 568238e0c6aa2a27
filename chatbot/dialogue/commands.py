"""Slash commands every channel shares: parsing ``/name@bot args`` and the texts the core answers with."""

from __future__ import annotations

from dataclasses import dataclass

HELP_TEXT = (
    "Commands:\n"
    "/help shows this list.\n"
    "/reset starts a new conversation (the bot forgets the history).\n"
    "/history shows the recent turns, as many as the bot reads as context; /history N the last N turns.\n"
    "/mode greedy|beam|sample chooses how replies are decoded; /beam N sets the beam width (1-16); "
    "/temperature T (0.05-5) and /topp P (0.01-1) tune sampling.\n"
    "/settings shows your decoding settings; /settings reset goes back to the model's defaults.\n"
    "/why shows how the last reply was made (model, decoding, score, time).\n"
    "/export shows this conversation as text.\n"
    "/forget deletes everything stored about you.\n"
    "/stats and /model (admins) show what the database holds and which model answers."
)
START_TEXT = "Hello! I'm a chatbot trained on conversations. Say something, or /help for commands."
RESET_TEXT = "Started a new conversation."
FORGET_TEXT = "Deleted your {count} stored messages and your settings. The next message starts afresh."
EMPTY_EXPORT_TEXT = "This conversation has no messages yet."
SETTINGS_TEXT = "Decoding: {settings}."
ADMIN_ONLY_TEXT = "Only the bot's admins can use that command."
MODEL_TEXT = "Model: {model}\nDefault decoding: {defaults}."
TOO_LONG_TEXT = (
    "That message is {length:,} characters long; I read at most {limit:,} (as Telegram does). "
    "Please send a shorter one."
)
NO_WHY_TEXT = "There is no generated reply in this conversation yet."
WHY_TEXT = "Last reply: {text!r}\nModel: {model}\nDecoding: {decoding}\nScore: {score}\nGenerated in {latency:.0f} ms"


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
