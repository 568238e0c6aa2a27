"""Pairs: a conversation becomes (context, response) examples, with a history window and speaker markers.

The context is the last ``history_turns`` turns before the response, each prefixed by a marker that says who spoke
*relative to the responder*: ``<bot>`` for the responder's own earlier turns, ``<usr>`` for the other side. At chat
time the stored roles map onto the same two markers, so training and serving see the same kind of input.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from chatbot.corpora.types import Conversation
from chatbot.dialogue.types import Role, Turn

OWN_TURN = "<bot>"
OTHER_TURN = "<usr>"
SPEAKER_TOKENS = (OTHER_TURN, OWN_TURN)
SPLITS = ("train", "valid", "test")
_MARKER = re.compile(f"{re.escape(OTHER_TURN)}|{re.escape(OWN_TURN)}")


@dataclass(frozen=True)
class Pair:
    """One training example: the context text, the response text, and where it came from."""

    context: str
    response: str
    conversation_id: str


def conversation_pairs(conversation: Conversation, history_turns: int) -> Iterator[Pair]:
    """Every turn after the first becomes a response to the ``history_turns`` turns before it."""
    turns = conversation.turns
    for index in range(1, len(turns)):
        responder = turns[index].speaker
        window = turns[max(0, index - history_turns) : index]
        context = " ".join(f"{OWN_TURN if turn.speaker == responder else OTHER_TURN} {turn.text}" for turn in window)
        yield Pair(context, turns[index].text, conversation.id)


def history_context(history: Sequence[Turn], history_turns: int) -> str:
    """The context text for the bot's next reply, from stored turns (oldest first)."""
    window = history[-history_turns:] if history_turns > 0 else []
    return " ".join(f"{OWN_TURN if turn.role is Role.BOT else OTHER_TURN} {turn.text}" for turn in window)


def turns_of(context: str) -> list[str]:
    """A context text's turns, oldest first, without speaker markers (empty turns left out)."""
    return [turn.strip() for turn in _MARKER.split(context) if turn.strip()]


def last_turn(context: str) -> str:
    """The newest turn of a context text (what its reply answers), without its speaker marker."""
    return _MARKER.split(context)[-1].strip()


def short_context_pairs(pairs: Iterable[Pair], share: float) -> list[Pair]:
    """A stable ``share`` of the pairs whose context has two or more turns, again with only its last turn (marker
    kept) as the context. Trained on beside the full pairs, they teach the model that a one-turn context is not
    always a conversation's opening, where the reply is a greeting. Which pairs: a hash of their text, so a
    resumed or repeated run picks the same ones."""
    threshold = round(share * 10_000)
    short = []
    for pair in pairs:
        markers = list(_MARKER.finditer(pair.context))
        key = f"{pair.conversation_id}\n{pair.context}\n{pair.response}".encode()
        if len(markers) >= 2 and zlib.crc32(key) % 10_000 < threshold:
            short.append(Pair(pair.context[markers[-1].start() :], pair.response, pair.conversation_id))
    return short


def split_of(conversation_id: str, valid_percent: int = 5, test_percent: int = 5) -> str:
    """The split a conversation belongs to: a stable hash of its id, so no conversation is on two sides."""
    bucket = zlib.crc32(conversation_id.encode("utf-8")) % 100
    if bucket < valid_percent:
        return "valid"
    if bucket < valid_percent + test_percent:
        return "test"
    return "train"


def split_pairs(conversations: Iterable[Conversation], history_turns: int) -> dict[str, list[Pair]]:
    """Pairs of every conversation, grouped by the split of their conversation."""
    grouped: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for conversation in conversations:
        grouped[split_of(conversation.id)].extend(conversation_pairs(conversation, history_turns))
    return grouped
