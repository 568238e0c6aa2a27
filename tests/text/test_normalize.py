"""Normalisation: NFKC folding, control characters removed, whitespace collapsed — applied by every reader."""

from __future__ import annotations

from chatbot.corpora.jsonl import merge_consecutive
from chatbot.corpora.types import Utterance
from chatbot.text.normalize import normalize_text, valid_unicode


def test_folds_look_alikes_and_drops_control_characters() -> None:
    assert normalize_text("ｈｅｌｌｏ\u00a0\u00a0ﬁne\x00\x1b[0m  there\t\n") == "hello fine [0m there"
    assert normalize_text("emoji 👍🏽 and é stay") == "emoji 👍🏽 and é stay"
    assert normalize_text("\x07\x08 \u3000") == ""


def test_turns_empty_after_normalisation_vanish_before_merging() -> None:
    turns = [Utterance("a", "hi"), Utterance("b", "\x00\x01"), Utterance("a", "again")]
    assert merge_consecutive(turns) == (Utterance("a", "hi again"),)


def test_valid_unicode_joins_surrogate_pairs_and_replaces_lone_halves() -> None:
    assert valid_unicode("plain ✓") == "plain ✓"
    assert valid_unicode("\ud83d\ude00 ok") == "😀 ok"  # an emoji spelled as two JSON escapes
    assert valid_unicode("cut \ud83d here, \udcff there") == "cut \ufffd here, \ufffd there"
