"""Reply index: built from (key, reply, conversation) entries, searched by BM25 over the message's words with
informative words selecting rows, read-only and strict about what it opens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from chatbot.errors import ModelError
from chatbot.reply_index import ReplyIndex, build
from chatbot.semantic import DIMENSIONS, WIDTH, PieceVectors, Projection, to_int8

ENTRIES = [
    ("do you have any pets?", "yes, a cat named pepper", "c1", -5.0),
    ("what do you do for a living?", "i teach maths at a school", "c2", -6.0),
    ("do you like pizza?", "pizza, definitely", "c3", -4.0),
    *((f"do you know thing {n}?", f"no idea about {n}", f"filler-{n}", -7.0) for n in range(60)),
]


def _build(path: Path, entries: list[tuple[str, str, str, float]], seed: int = 0) -> int:
    """``build`` with made-up sentence vectors (random unit vectors on their own principal axes)."""
    vectors = np.random.default_rng(seed).normal(size=(len(entries), WIDTH)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    projection = Projection.fit(vectors)
    return build(path, entries, to_int8(projection.apply(vectors)), projection, _student(projection.apply(vectors)))


def _student(projected: np.ndarray, vocab_size: int = 10) -> PieceVectors:
    """A student of the encoder fitted on made-up piece ids (one per reply, in turn)."""
    return PieceVectors.fit([[i % vocab_size] for i in range(len(projected))], projected, vocab_size)


@pytest.fixture
def index(tmp_path: Path) -> ReplyIndex:
    path = tmp_path / "index.sqlite3"
    assert _build(path, ENTRIES) == len(ENTRIES)
    return ReplyIndex(path)


def test_the_closest_message_s_reply_comes_first_with_its_conversation(index: ReplyIndex) -> None:
    (best, *_) = index.search("Do you have PETS at home?", 3)
    assert (best.text, best.conversation, best.context_free) == ("yes, a cat named pepper", "c1", -5.0)
    found = index.search("so what do you do for a living", 5)
    assert found[0].text == "i teach maths at a school"
    assert [r.score for r in found] == sorted((r.score for r in found), reverse=True)


def test_common_words_rank_but_do_not_select(index: ReplyIndex) -> None:
    # "do" and "you" are in every key: only keys with an informative word (pizza) are returned at all.
    assert [r.text for r in index.search("do you like pizza", 10)] == ["pizza, definitely"]
    # With no informative word, the rarest known word selects: "know" is in the 60 filler keys only.
    assert {r.conversation for r in index.search("do you know", 100)} == {f"filler-{n}" for n in range(60)}


def test_limits_and_unknown_words(index: ReplyIndex) -> None:
    assert len(index.search("do you know thing", 4)) == 4
    assert index.search("zebra xylophone", 5) == []
    assert index.search("", 5) == []
    assert index.search("pets", 0) == []
    assert len(index) == len(ENTRIES)


@pytest.mark.parametrize("message", ['pets" OR "x', "NEAR(pets pizza)", "pets*", "AND OR NOT", "^pets", "pets " * 2000])
def test_query_syntax_in_a_message_is_only_words(index: ReplyIndex, message: str) -> None:
    index.search(message, 3)  # no sqlite3.OperationalError: every word is quoted as a literal term


def test_build_replaces_an_old_index_whole(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    _build(path, ENTRIES)
    _build(path, [("hello there", "hi!", "only", -1.5)])
    assert [r.text for r in ReplyIndex(path).search("hello", 5)] == ["hi!"]
    assert not list(tmp_path.glob(".*partial"))


def test_a_damaged_or_foreign_file_is_a_model_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(ModelError, match="not a readable reply index"):
        ReplyIndex(garbage)
    foreign = tmp_path / "foreign.sqlite3"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)")
    with pytest.raises(ModelError, match="not a readable reply index"):
        ReplyIndex(foreign)
    newer = tmp_path / "newer.sqlite3"
    _build(newer, ENTRIES)
    with sqlite3.connect(newer) as database:
        database.execute("UPDATE meta SET value = '99' WHERE name = 'format_version'")
    with pytest.raises(ModelError, match="format '99'"):
        ReplyIndex(newer)


def test_only_the_rarest_informative_words_select_rows(tmp_path: Path) -> None:
    # Six words, each informative; "f" is the most common of them, so a key holding only "f" is not selected.
    rare = [(word, f"reply {word}", word, -1.0) for word in "abcde"]
    common = [(f"f filler {n}", f"reply f{n}", f"f{n}", -1.0) for n in range(3)]
    path = tmp_path / "index.sqlite3"
    _build(path, rare + common + [(f"other {n}", "x", f"o{n}", -1.0) for n in range(300)])
    found = {r.conversation for r in ReplyIndex(path).search("a b c d e f", 20)}
    assert found == {"a", "b", "c", "d"}  # the four rarest (ties keep the message's order)


def test_each_reply_s_sentence_vector_is_kept_on_the_index_s_axes(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    vectors = np.random.default_rng(1).normal(size=(len(ENTRIES), WIDTH)).astype(np.float32)
    projection = Projection.fit(vectors)
    student = _student(projection.apply(vectors))
    build(path, ENTRIES, to_int8(projection.apply(vectors)), projection, student)
    index = ReplyIndex(path)
    assert index.vectors is not None
    np.testing.assert_allclose(index.vectors.projection.axes, projection.axes, atol=1e-6)
    np.testing.assert_allclose(index.vectors.pieces.table, student.table, atol=1e-3)  # kept as float16
    np.testing.assert_array_equal(index.vectors.pieces.weights, student.weights)
    (best,) = index.search("do you have any pets", 1)
    stored, exact = index.vectors.replies[best.row], projection.apply(vectors[best.row : best.row + 1])[0]
    assert stored.shape == (DIMENSIONS,) and float(stored @ exact) > 0.999  # int8 keeps the direction


def test_vectors_must_match_the_replies(tmp_path: Path) -> None:
    projection = Projection.fit(np.ones((2, WIDTH), dtype=np.float32))
    with pytest.raises(ValueError, match="int8 vectors of shape"):
        build(
            tmp_path / "index.sqlite3",
            ENTRIES,
            np.zeros((3, DIMENSIONS), dtype=np.int8),
            projection,
            _student(np.zeros((3, DIMENSIONS))),
        )
    assert not list(tmp_path.iterdir())  # neither the index nor its partial file


@pytest.mark.parametrize("version", ["2", "3"])
def test_an_index_of_an_earlier_format_still_opens_without_vectors(tmp_path: Path, version: str) -> None:
    path = tmp_path / "index.sqlite3"
    _build(path, ENTRIES)
    with sqlite3.connect(path) as database:  # format 2 wrote no vectors and no projection; 3 no student
        dropped = ("vectors", "projection", "pieces") if version == "2" else ("pieces",)
        database.execute(f"DELETE FROM blobs WHERE name IN ({','.join('?' * len(dropped))})", dropped)
        database.execute("DELETE FROM meta WHERE name = 'pieces'")
        database.execute("UPDATE meta SET value = ? WHERE name = 'format_version'", (version,))
    index = ReplyIndex(path)
    assert index.vectors is None
    assert index.search("do you have any pets", 1)[0].text == "yes, a cat named pepper"


def test_a_message_of_several_sentences_is_also_searched_by_its_last(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    _build(
        path,
        [
            ("i play saxophone in a band", "sounds like a great gig", "c1", -5.0),
            ("music was loud tonight", "loud is half the fun", "c2", -5.0),
            ("do you like music?", "yes, music is my life", "c3", -4.0),
            *((f"thing {n} happened today", f"oh, thing {n}", f"filler-{n}", -7.0) for n in range(40)),
        ],
    )
    index = ReplyIndex(path)
    message = "saxophone mostly. do you like music?"
    # The whole message is searched by its rarest word, the first sentence's: its question goes unanswered.
    assert [r.text for r in index.search(message, 2)] == ["sounds like a great gig"]
    assert [(r.text, r.score) for r in index.retrieve(message, 2)] == [("sounds like a great gig", 1.0)]
    found = index.retrieve(message, 2, by_last_sentence=1)
    assert [(r.text, r.conversation, r.score) for r in found] == [
        ("sounds like a great gig", "c1", 1.0),
        ("yes, music is my life", "c3", 1.0),
    ]
    # Scores are relevance, each search's over its own best; a reply found by both searches is there once.
    plain = index.search("music", 5)
    relevance = index.retrieve("music", 5, by_last_sentence=5)
    assert [r.row for r in relevance] == [r.row for r in plain]
    assert [r.score for r in relevance] == pytest.approx([r.score / plain[0].score for r in plain])
    assert [r.text for r in index.retrieve("loud music. loud?", 5, by_last_sentence=5)] == ["loud is half the fun"]
    # One sentence (a decimal point is not an end), or none: searched as before.
    assert [r.text for r in index.retrieve("saxophone 2.5 hours", 5, by_last_sentence=5)] == ["sounds like a great gig"]
    assert index.retrieve("zebra. xylophone?", 5, by_last_sentence=5) == []
