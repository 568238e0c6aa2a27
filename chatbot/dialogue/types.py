"""The vocabulary of a conversation: who spoke (Role), what was said (Turn), and what the bot answers (Reply)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(str, enum.Enum):
    """Who produced a turn. Stored as its value in the database."""

    USER = "user"
    BOT = "bot"


@dataclass(frozen=True)
class Turn:
    """One stored message of a conversation."""

    role: Role
    text: str


@dataclass(frozen=True)
class Reply:
    """What a channel shows the user in answer to one incoming message.

    ``is_command`` is true when a command (``/help``, ``/reset``) answered instead of the model. ``turn_id`` is
    the stored bot turn, which the channel reports back once sent (``DialogueManager.delivered``). ``send`` is
    false when there is nothing to send: the message was answered and delivered before (a channel delivering it
    again after a restart), or the user is blocked. ``fixed_width`` is true when the text is laid out in columns
    (/why's table): a channel that can should show it in a fixed-width font, as a terminal does.
    """

    text: str
    is_command: bool = False
    turn_id: int | None = None
    send: bool = True
    fixed_width: bool = False


NOTHING = Reply("", send=False)
