"""The Generator protocol the dialogue manager talks to, what a generation returns (Generated), and EchoGenerator,
its model-free twin for tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Role, Turn


@dataclass(frozen=True)
class Generated:
    """One generated reply with what is stored as its provenance.

    ``text`` is None when the generator is not confident enough to say anything (the manager answers with its
    "unsure" reply). ``score`` is the reply's confidence in (0, 1] where the generator has one; ``model`` names
    the model and the hash of its weights; ``decoding`` holds every decoding setting used; ``source`` says where
    the words came from: ``generated`` by the model, or the id of the training conversation a retrieved reply
    was taken from.
    """

    text: str | None
    score: float | None
    model: str
    decoding: dict[str, Any]
    source: str = "generated"


class Generator(Protocol):
    """Anything that turns a conversation's recent turns (oldest first, last one the user's) into a reply."""

    @property
    def history_turns(self) -> int:
        """How many recent turns the generator wants to see."""
        ...

    @property
    def default_settings(self) -> DecodeSettings:
        """The decoding a user gets who chose nothing (every field set)."""
        ...

    @property
    def model_name(self) -> str:
        """Which model answers (as stored in each reply's provenance)."""
        ...

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        """The bot's next message, decoded with ``settings`` laid over the defaults."""
        ...

    def explain(self, history: Sequence[Turn], reply: str) -> str | None:
        """Why ``reply`` answered ``history``, as text for /why (None: this generator cannot say)."""
        ...


class GeneratorInFront:
    """A Generator standing in front of another (``self.generator``) that answers for the same model: how much
    history it reads, its default settings and its name are the inner generator's."""

    generator: Generator

    @property
    def history_turns(self) -> int:
        return self.generator.history_turns

    @property
    def default_settings(self) -> DecodeSettings:
        return self.generator.default_settings

    @property
    def model_name(self) -> str:
        return self.generator.model_name


class EchoGenerator:
    """Replies by echoing the user's last message; deterministic and instant, for testing the layers above."""

    def __init__(self, history_turns: int = 3) -> None:
        self._history_turns = history_turns
        self.calls: list[tuple[Turn, ...]] = []
        self.settings: list[DecodeSettings] = []  # what each call was asked to decode with

    @property
    def history_turns(self) -> int:
        return self._history_turns

    @property
    def default_settings(self) -> DecodeSettings:
        return DecodeSettings(mode="greedy", beam_size=5, temperature=1.0, top_p=1.0)

    @property
    def model_name(self) -> str:
        return "echo"

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        self.calls.append(tuple(history))
        self.settings.append(settings.over(self.default_settings))
        return Generated(self.echo(history), 1.0, self.model_name, dataclasses.asdict(self.settings[-1]))

    def explain(self, history: Sequence[Turn], reply: str) -> str | None:
        return f"Echoed {history[-1].text!r}, the last of {len(history)} turns." if history else None

    @staticmethod
    def echo(history: Sequence[Turn]) -> str:
        last_user = next((turn.text for turn in reversed(history) if turn.role is Role.USER), "")
        return f"echo: {last_user}" if last_user else "echo"
