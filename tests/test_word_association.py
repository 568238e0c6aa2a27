"""Word association: positive PMI of (message word, reply word) content-word pairs seen often enough, a reply
scored by its strongest association with the message (capped), and a compact round trip through bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chatbot.word_association import CAP, SCALE, WORD, WordAssociation

# "breakfast" messages get "cereal" replies; "music" messages get "guitar" replies; "hello" goes with anything.
PAIRS = [
    *(("what did you have for breakfast?", "cereal, as always") for _ in range(6)),
    *(("do you like music?", "i play the guitar") for _ in range(6)),
    *(("hello there", f"hi number {n}") for n in range(8)),
    ("breakfast music", "guitar cereal"),  # once: below the minimum count, adds nothing on its own
]


@pytest.fixture
def table() -> WordAssociation:
    # "you" is in 12 of the 21 messages: more than a quarter of all 42 texts, so not a content word here.
    return WordAssociation.count(PAIRS, min_count=5, common_share=0.25)


def test_content_words_seen_together_are_associated_by_their_pmi(table: WordAssociation) -> None:
    # 21 pairs; "breakfast" in 7 messages, "cereal" in 7 replies, together in 7: PMI = log(21 * 7 / (7 * 7)).
    assert table.score("breakfast", "cereal") == pytest.approx(round(math.log(3) * SCALE) / SCALE)
    assert table.score("breakfast", "guitar") == 0.0  # together once: chance, not association
    assert table.score("hello", "hi") == pytest.approx(round(math.log(21 / 8) * SCALE) / SCALE)
    assert "you" not in table.words and "breakfast" in table.words


def test_a_reply_scores_its_strongest_association_with_the_message_capped(table: WordAssociation) -> None:
    on_topic = table.score("What did you have for BREAKFAST?", "Cereal! with milk")
    assert on_topic > table.score("what did you have for breakfast?", "i play the guitar") == 0.0
    # Taking up the topic again, or a second topic, adds nothing: long replies gain nothing by being long.
    assert table.score("breakfast", "cereal, cereal and more cereal as always") == table.score("breakfast", "cereal")
    both = table.score("breakfast music", "cereal and guitar")
    assert both == max(table.score("breakfast", "cereal"), table.score("music", "guitar"))
    rare = [("zebra", "stripes")] * 5 + [(f"hello {n}", f"hi {n}") for n in range(60)]
    assert math.log(65 * 5 / 25) > CAP == WordAssociation.count(rare, common_share=0.25).score("zebra", "stripes")


def test_unknown_or_empty_text_scores_zero(table: WordAssociation) -> None:
    assert table.score("", "cereal") == table.score("breakfast", "") == 0.0
    assert table.score("zebra", "xylophone") == 0.0
    empty = WordAssociation.count([])
    assert len(empty) == 0 and empty.score("breakfast", "cereal") == 0.0
    assert WordAssociation.from_bytes(empty.to_bytes()).score("a", "b") == 0.0


def test_only_positive_associations_are_kept(table: WordAssociation) -> None:
    assert len(table) > 0
    assert np.all(table.strength > 0) and np.all(np.diff(table.keys) > 0)
    said = {word for pair in PAIRS for text in pair for word in WORD.findall(text)}
    assert set(table.words) <= said


def test_the_table_round_trips_through_bytes(table: WordAssociation) -> None:
    again = WordAssociation.from_bytes(table.to_bytes())
    assert again.words == table.words
    np.testing.assert_array_equal(again.keys, table.keys)
    np.testing.assert_allclose(again.strength, table.strength)
    assert again.score("do you like music", "the guitar") == table.score("do you like music", "the guitar")


@pytest.mark.parametrize("data", [b"", b"not an archive", b"PK\x03\x04broken"])
def test_damaged_bytes_are_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a word association table"):
        WordAssociation.from_bytes(data)
