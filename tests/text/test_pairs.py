"""Pairs: the history window, speaker markers relative to the responder, short contexts, and the split by
conversation."""

from __future__ import annotations

from chatbot.corpora.types import Conversation, Utterance
from chatbot.dialogue.types import Role, Turn
from chatbot.text.pairs import (
    Pair,
    conversation_pairs,
    history_context,
    short_context_pairs,
    split_of,
    split_pairs,
    turns_of,
)

CONVERSATION = Conversation(
    "c1",
    (Utterance("a", "hi"), Utterance("b", "hello"), Utterance("a", "how are you"), Utterance("b", "fine")),
)


def test_pairs_use_a_bounded_window_with_relative_speaker_markers() -> None:
    pairs = list(conversation_pairs(CONVERSATION, history_turns=2))
    assert [(p.context, p.response) for p in pairs] == [
        ("<usr> hi", "hello"),
        ("<bot> hi <usr> hello", "how are you"),  # "a" answers: "hi" was its own turn
        ("<bot> hello <usr> how are you", "fine"),
    ]
    assert {p.conversation_id for p in pairs} == {"c1"}


def test_history_context_maps_stored_roles_onto_the_same_markers() -> None:
    history = [Turn(Role.USER, "hi"), Turn(Role.BOT, "hello"), Turn(Role.USER, "how are you")]
    # The bot answering "how are you" at chat time sees what the trainer showed for the same place.
    assert history_context(history, 2) == list(conversation_pairs(CONVERSATION, 2))[2].context


def test_split_is_stable_and_keeps_each_conversation_on_one_side() -> None:
    conversations = [
        Conversation(f"conv-{i}", (Utterance("a", "x"), Utterance("b", "y"), Utterance("a", "z"))) for i in range(400)
    ]
    splits = split_pairs(conversations, history_turns=3)
    sides = {name: {p.conversation_id for p in pairs} for name, pairs in splits.items()}
    assert not sides["train"] & sides["valid"] and not sides["train"] & sides["test"]
    assert not sides["valid"] & sides["test"]
    assert all(sides.values()), "400 conversations should reach every split"
    assert [split_of(f"conv-{i}") for i in range(50)] == [split_of(f"conv-{i}") for i in range(50)]
    assert 0.8 < len(sides["train"]) / 400 < 0.97


def test_short_context_pairs_cut_a_stable_share_of_longer_contexts_to_their_last_turn() -> None:
    pairs = [
        Pair(f"<usr> hello {i} <bot> hi there <usr> what is new {i}", f"not much {i}", f"c{i % 7}") for i in range(2000)
    ]
    opening = Pair("<usr> hi", "hello", "c0")  # a one-turn context has nothing to cut
    short = short_context_pairs([opening, *pairs], 0.3)
    assert 500 < len(short) < 700, "about 30% of the 2,000 longer contexts"
    assert all(p.context.startswith("<usr> what is new ") and p.context.count("<") == 1 for p in short)
    assert {p.response.split()[-1] for p in short} == {p.context.split()[-1] for p in short}, "each keeps its reply"
    assert short_context_pairs(pairs, 0.3) == short, "the same pairs every run"
    assert short_context_pairs(pairs, 0.0) == []
    assert len(short_context_pairs([opening, *pairs], 1.0)) == len(pairs)
    own_last = short_context_pairs([Pair("<usr> a <bot> b", "c", "c1")], 1.0)
    assert [p.context for p in own_last] == ["<bot> b"], "the last turn keeps its own speaker marker"


def test_a_context_text_splits_into_its_turns_without_markers() -> None:
    assert turns_of("<usr> hi there <bot> hello!  <usr> do you have pets?") == [
        "hi there",
        "hello!",
        "do you have pets?",
    ]
    assert turns_of("<usr>  <bot> hello") == ["hello"]  # an empty turn is left out
    assert turns_of("") == []
