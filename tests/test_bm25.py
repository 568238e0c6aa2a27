"""BM25 in memory: the rows and scores of FTS5's own ``MATCH ... ORDER BY bm25()``, for random tables and queries."""

from __future__ import annotations

import random
import sqlite3

import pytest

from chatbot.bm25 import Postings

WORDS = [f"w{n}" for n in range(40)]


def _table(keys: list[str]) -> sqlite3.Connection:
    """A contentless FTS5 table ``keys`` as the reply index writes it, rowids 0, 1, ..."""
    database = sqlite3.connect(":memory:")
    database.execute("CREATE VIRTUAL TABLE keys USING fts5(key, content='')")
    database.executemany("INSERT INTO keys (rowid, key) VALUES (?, ?)", enumerate(keys))
    return database


def _fts5(database: sqlite3.Connection, selecting: list[str], known: list[str], limit: int) -> list[tuple[int, float]]:
    query = f"({' OR '.join(selecting)}) AND ({' OR '.join(known)})"
    rows = database.execute(
        "SELECT rowid, bm25(keys) FROM keys WHERE keys MATCH ? ORDER BY bm25(keys), rowid LIMIT ?", (query, limit)
    ).fetchall()
    return [(row, -rank) for row, rank in rows]


@pytest.mark.parametrize("seed", range(5))
def test_rows_and_scores_are_fts5_s_own(seed: int) -> None:
    chance = random.Random(seed)
    # Skewed word frequencies, repeated words, keys of 0 to 12 words (an empty key has no postings at all).
    keys = [" ".join(chance.choices(WORDS, weights=range(40, 0, -1), k=chance.randint(0, 12))) for _ in range(300)]
    database = _table(keys)
    postings = Postings.read(database, len(keys))
    present = [word for word in WORDS if postings.holders(word)]
    for _ in range(40):
        selecting = chance.sample(present, chance.randint(1, 3))
        known = list(dict.fromkeys(selecting + chance.sample(present, chance.randint(0, 5))))  # as reply_index.py
        limit = chance.choice([1, 5, 20, 400])
        ranking = selecting + known  # FTS5 counts a word that both clauses hold twice
        found = postings.search(selecting, ranking, limit)
        expected = _fts5(database, selecting, known, limit)
        assert [row for row, _ in found] == [row for row, _ in expected]
        assert [score for _, score in found] == pytest.approx([score for _, score in expected], rel=1e-9)


def test_holders_counts_rows_not_occurrences() -> None:
    postings = Postings.read(_table(["a a a b", "a c", "d"]), 3)
    assert (postings.holders("a"), postings.holders("b"), postings.holders("zebra")) == (2, 1, 0)
    (best, _) = postings.search(["a"], ["a"], 5)
    assert best[0] == 0  # three times "a" in four words beats once in two


def test_an_empty_table_has_no_words() -> None:
    postings = Postings.read(_table([]), 0)
    assert postings.holders("a") == 0 and postings.words == {}
