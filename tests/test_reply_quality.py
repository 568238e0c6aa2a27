"""Reply quality: each metric on replies small enough to score by hand."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest

from chatbot.reply_quality import (
    GENERIC_REPLIES,
    average_length,
    bleu,
    distinct,
    empty_rate,
    f1_words,
    generic_form,
    generic_rate,
    is_looping,
    is_pleasantry,
    latency_percentiles,
    looping_rate,
    measure,
    reply_f1,
    unigram_f1,
)

REPLIES = ["i am here with you", "see you later my friend"]


def test_identical_replies_score_perfectly() -> None:
    assert bleu(REPLIES, REPLIES) == pytest.approx(100.0)
    assert unigram_f1(REPLIES, REPLIES) == pytest.approx(1.0)


def test_bleu_of_a_short_exact_prefix_is_the_brevity_penalty() -> None:
    # Every n-gram matches (precisions 1), but 4 words against 8: BP = exp(1 - 8/4).
    assert bleu(["a b c d"], ["a b c d e f g h"]) == pytest.approx(100 * math.exp(-1), abs=0.01)


def test_bleu_of_disjoint_replies_is_zero() -> None:
    assert bleu(["one two three four"], ["five six seven eight"]) == pytest.approx(0.0)


def test_f1_words_drop_punctuation_and_articles() -> None:
    assert f1_words("The cat's hat, an   apple!") == ["cat", "s", "hat", "apple"]


def test_reply_f1_worked_examples() -> None:
    # [cat, sat] vs [cat, sat, down]: P = 1, R = 2/3.
    assert reply_f1("The cat sat.", "A cat sat down") == pytest.approx(0.8)
    # [i, d, like, apple, please] vs [i, like, apple]: 3 shared, P = 3/5, R = 1.
    assert reply_f1("I'd like the apple, please!", "i like an apple") == pytest.approx(0.75)
    # Overlap is of multisets: one "no" is shared, P = 1/3, R = 1.
    assert reply_f1("no no no", "no") == pytest.approx(0.5)


def test_reply_f1_is_zero_when_a_side_is_empty() -> None:
    assert reply_f1("the", "the") == 0.0  # only an article: empty after normalisation
    assert reply_f1("", "hello") == 0.0


def test_unigram_f1_averages_over_replies() -> None:
    assert unigram_f1(["the cat sat", "hello"], ["a cat sat down", "goodbye"]) == pytest.approx(0.4)


def test_distinct_pools_ngrams_within_replies() -> None:
    replies = ["i am here", "i am not", "yes"]
    # Unigrams: i am here i am not yes -> 5 unique of 7.
    assert distinct(replies, 1) == pytest.approx(5 / 7)
    # Bigrams: (i am) (am here) (i am) (am not) -> 3 unique of 4; none spans two replies, "yes" has none.
    assert distinct(replies, 2) == pytest.approx(3 / 4)


def test_distinct_without_ngrams_is_zero() -> None:
    assert distinct(["yes", "no"], 2) == 0.0
    assert distinct([], 1) == 0.0
    with pytest.raises(ValueError):
        distinct(["yes"], 0)


def test_average_length_counts_whitespace_words() -> None:
    assert average_length(["i am here", "yes", "see you  later  my friend"]) == pytest.approx(3.0)
    assert average_length([]) == 0.0


def test_generic_form_keeps_apostrophes() -> None:
    assert generic_form("I don\u2019t know...") == "i don't know"
    assert generic_form("What's the matter?") == "what's matter"


def test_generic_replies_are_in_normalised_form() -> None:
    assert all(generic_form(reply) == reply for reply in GENERIC_REPLIES)


def test_generic_rate_on_a_mix() -> None:
    replies = ["I don't know.", "i don\u2019t know", "i don't know her", "Me, too!", "the weather is nice"]
    assert generic_rate(replies) == pytest.approx(3 / 5)
    assert generic_rate(replies, generic=frozenset({"weather is nice"})) == pytest.approx(1 / 5)
    assert generic_rate([]) == 0.0


def test_empty_replies_are_those_without_a_word() -> None:
    assert empty_rate(["", "  \n", "ok", "a b"]) == pytest.approx(2 / 4)
    assert empty_rate([]) == 0.0


def test_a_reply_loops_when_it_says_a_stretch_of_words_again_at_once() -> None:
    assert is_looping("i'm a student and i'm a student and")
    assert is_looping("i am here i am here")
    assert is_looping("well no no no")  # one word: three times in a row
    assert not is_looping("very very good")  # one word twice is how people talk
    assert not is_looping("i like cats and i like dogs")  # a phrase coming back later is not a loop
    assert not is_looping("")
    assert looping_rate(["ha ha ha ha", "yes", "thank you thank you", "fine"]) == pytest.approx(2 / 4)
    assert looping_rate([]) == 0.0


def test_latency_percentiles_interpolate_in_milliseconds() -> None:
    seconds = [0.01 * k for k in (10, 3, 1, 7, 5, 2, 9, 4, 8, 6)]  # 10..100 ms, unsorted
    p50, p95 = latency_percentiles(seconds)
    assert p50 == pytest.approx(55.0)  # halfway between 50 and 60
    assert p95 == pytest.approx(95.5)  # position 0.95 * 9 = 8.55: 90 + 0.55 * 10


def test_latency_percentiles_of_one_sample() -> None:
    assert latency_percentiles([0.2]) == pytest.approx((200.0, 200.0))
    with pytest.raises(ValueError):
        latency_percentiles([])


def test_measure_fills_every_field_as_json() -> None:
    quality = measure(["i don't know", "see you later my friend"], ["i know", "see you later my friend"], [0.1, 0.3])
    assert quality.replies == 2
    assert quality.unigram_f1 == pytest.approx((2 / 3 + 1.0) / 2)  # [i, don, t, know] vs [i, know]: P 1/2, R 1
    assert quality.distinct_1 == pytest.approx(1.0)
    assert quality.distinct_2 == pytest.approx(1.0)
    assert quality.average_length == pytest.approx(4.0)
    assert quality.generic_rate == pytest.approx(0.5)
    assert quality.empty_rate == 0.0 and quality.looping_rate == 0.0
    assert (quality.latency_p50_ms, quality.latency_p95_ms) == pytest.approx((200.0, 290.0))
    assert 0.0 < quality.bleu < 100.0
    assert json.loads(json.dumps(asdict(quality))) == asdict(quality)


def test_measure_rejects_mismatched_or_empty_sets() -> None:
    with pytest.raises(ValueError, match="2 replies but 1 references"):
        measure(["a", "b"], ["a"], [0.1])
    with pytest.raises(ValueError):
        measure([], [], [0.1])
    with pytest.raises(ValueError):
        measure(["a"], ["a"], [])


@pytest.mark.parametrize(
    "reply",
    [
        "hi! how are you?",
        "hey whats up!",
        "i'm doing well, how about you?",
        "Heyyy",
        "good! how are you?",
        "hello there",
        "Good morning!",
        "heyyy how r u",
        "anyone there?",
    ],
)
def test_greetings_and_how_are_you_talk_are_pleasantries(reply: str) -> None:
    assert is_pleasantry(reply)


@pytest.mark.parametrize(
    "reply", ["great!", "thanks!", "", "hi! do you like hiking?", "how did your thesis go?", "i'm so tired today"]
)
def test_an_answer_is_not_a_pleasantry(reply: str) -> None:
    assert not is_pleasantry(reply)
