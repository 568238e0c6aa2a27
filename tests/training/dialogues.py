"""A synthetic dialogue log big enough to have train, valid and test conversations, written in a blink."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = [
    "hello",
    "hi",
    "how",
    "are",
    "you",
    "fine",
    "thanks",
    "what",
    "is",
    "your",
    "name",
    "my",
    "the",
    "weather",
    "good",
    "bad",
    "today",
    "yes",
    "no",
    "maybe",
]


def write_dialogues(path: Path, conversations: int = 80, turns: int = 4, seed: int = 0) -> Path:
    """A JSONL log of ``conversations`` random conversations (two speakers, ``turns`` turns each)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(conversations):
            lines = [
                {"speaker": "ab"[turn % 2], "text": " ".join(rng.choices(WORDS, k=rng.randint(2, 6)))}
                for turn in range(turns)
            ]
            handle.write(json.dumps({"id": f"c{index}", "turns": lines}) + "\n")
    return path
