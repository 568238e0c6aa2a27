"""The Generator protocol the dialogue manager talks to, and EchoGenerator, its model-free twin for tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chatbot.dialogue.types import Role, Turn


class Generator(Protocol):
    """Anything that turns a conversation's recent turns (oldest first, last one the user's) into a reply."""

    @property
    def history_turns(self) -> int:
        """How many recent turns the generator wants to see."""
        ...

    def reply(self, history: Sequence[Turn]) -> str | None:
        """Return the bot's next message, or None when the generator has no reply it is confident in (the manager
        then answers with its fallback)."""
        ...


class EchoGenerator:
    """Replies by echoing the user's last message; deterministic and instant, for testing the layers above."""

    def __init__(self, history_turns: int = 3) -> None:
        self._history_turns = history_turns
        self.calls: list[tuple[Turn, ...]] = []

    @property
    def history_turns(self) -> int:
        return self._history_turns

    def reply(self, history: Sequence[Turn]) -> str:
        self.calls.append(tuple(history))
        last_user = next((turn.text for turn in reversed(history) if turn.role is Role.USER), "")
        return f"echo: {last_user}" if last_user else "echo"
