"""Conversation and Utterance: what every reader produces, whatever the log format."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Utterance:
    """One turn: a speaker label (any string; only equality matters) and the text."""

    speaker: str
    text: str


@dataclass(frozen=True)
class Conversation:
    """An ordered exchange between speakers. ``id`` is stable, so the train/valid/test split is too."""

    id: str
    turns: tuple[Utterance, ...]
