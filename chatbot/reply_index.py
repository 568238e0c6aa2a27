"""Reply index: the training pairs' replies, found again by the message they answered — the retrieved candidates
a reply can be chosen from (candidates.py).

One SQLite file (``reply_index.sqlite3`` in a model directory), written here and read here only:

- ``keys``: a contentless FTS5 table over the last turn of each pair's context (the message the reply answered),
  its rowid the reply's number. Contentless: the keys are only searched, never shown, so their text is not kept.
  Its word index is read into memory when the index opens and searched there (bm25.py), with FTS5's own ranking.
- ``blobs``: the replies (each with the number of its conversation and its context-free log-probability under
  the model the index was built for: what MMI subtracts, computed once here instead of at every reply) and the
  ids of their conversations, as one zlib-compressed JSON document each. They are read into memory when the index
  opens; kept as rows they would double the file.
- ``vectors``: each reply as the sentence encoder sees it (semantic.py), on the index's own ``DIMENSIONS``
  principal axes as int8, one row per reply in order (raw bytes); ``projection`` holds the axes; ``pieces``, the
  encoder's linear student (semantic.PieceVectors, raw bytes), puts a message on the same axes at reply time.
  Files of formats 2 and 3, written before, lack some of these; they still open, and semantic scoring asks for
  them to be rebuilt.
- ``meta``: the format version, how many replies there are, and how many word pieces the student knows.

Search is BM25 over the words of the message. A row must contain at least one *informative* word (one of the
four rarest words, each in at most 2% of the keys; or else the rarest word) and is ranked by all of them. Scoring
every key that contains "you" or "do" made a query 30-100 ms on the chitchat index; informative words alone made
it p50 8.6 / p95 37 ms on long held-out messages, and the four rarest 5.5 / 12 ms with 85% of the same top ten.
"What do you do for a living" still prefers keys that ask about work over keys that merely say "living". The
same search in memory (bm25.py) takes about 1 ms where FTS5's query took 4 ms, for the same rows in the same order.

A message of two sentences or more, an answer and a question back ("miles davis mostly. do you like jazz?"), is
searched by its rarest words, most often the first sentence's, and its question goes unanswered. ``retrieve`` can
also search by the last sentence alone and merge the two, each search's scores over its own best: on the judged
sheets (BENCHMARKS.md) +0.09 on dev sheet m, +0.02 on judged sheet S, the gain in follow-ups.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.bm25 import Postings
from chatbot.errors import ModelError
from chatbot.semantic import DIMENSIONS, WIDTH, PieceVectors, Projection, from_int8
from chatbot.training.config_json import REPLY_INDEX

FILE_NAME = REPLY_INDEX
FORMAT_VERSION = 4  # 2: each reply carries its context-free log-probability; 3: and its sentence vector; 4: and
READABLE_VERSIONS = ("2", "3", "4")  # the encoder's student for messages
INFORMATIVE_SHARE = 0.02  # a word in more keys than this share ranks rows but does not select them
MOST_INFORMATIVE = 4  # rarer words select rows; more of them slow a long message's query for little change
MAX_QUERY_WORDS = 32  # a 4,096-character message is searched by its first words only
WORD = re.compile(r"\w+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ReplyVectors:
    """An index's sentence vectors: the encoder's ``projection`` on the index's axes, each reply's unit vector
    on them, ``replies`` (replies, DIMENSIONS) float32, rows in index order, and ``pieces``, which puts any text on
    them at reply time."""

    projection: Projection
    replies: np.ndarray
    pieces: PieceVectors


@dataclass(frozen=True)
class Retrieved:
    """A training reply found for a message: its text, the training conversation it came from, its BM25 score
    (higher is closer; from ``retrieve``, that over its search's best), its log-probability after the neutral
    context, eos included, under the model, and its row in the index (where its sentence vector is)."""

    text: str
    conversation: str
    score: float
    context_free: float
    row: int = -1


def build(
    path: Path,
    entries: Iterable[tuple[str, str, str, float]],
    vectors: np.ndarray,
    projection: Projection,
    pieces: PieceVectors,
) -> int:
    """Write an index of ``entries`` (key, reply, conversation id, the reply's context-free log-probability) with
    their replies' int8 sentence ``vectors`` (replies, DIMENSIONS) on ``projection``'s axes and the student
    ``pieces`` to ``path``, replacing any file there; returns how many replies it holds. The file is written beside
    ``path`` and renamed into place."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    replies: list[tuple[str, int, float]] = []
    conversations: dict[str, int] = {}
    database = sqlite3.connect(partial)
    try:
        database.executescript(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE blobs (name TEXT PRIMARY KEY, data BLOB NOT NULL);"
            "CREATE VIRTUAL TABLE keys USING fts5(key, content='');"
        )
        for key, reply, conversation, context_free in entries:
            database.execute("INSERT INTO keys (rowid, key) VALUES (?, ?)", (len(replies), key.lower()))
            replies.append((reply, conversations.setdefault(conversation, len(conversations)), round(context_free, 4)))
        database.execute("INSERT INTO keys (keys) VALUES ('optimize')")  # one b-tree segment: faster queries
        if vectors.shape != (len(replies), DIMENSIONS) or vectors.dtype != np.int8:
            raise ValueError(f"{len(replies)} replies need int8 vectors of shape ({len(replies)}, {DIMENSIONS})")
        _put_blob(database, "replies", replies)
        _put_blob(database, "conversations", list(conversations))
        _put_blob(database, "projection", {"mean": projection.mean.tolist(), "axes": projection.axes.tolist()})
        database.execute("INSERT INTO blobs VALUES ('vectors', ?)", (vectors.tobytes(),))
        database.execute("INSERT INTO blobs VALUES ('pieces', ?)", (pieces.to_bytes(),))
        meta = {"format_version": FORMAT_VERSION, "replies": len(replies), "pieces": len(pieces.weights)}
        database.executemany("INSERT INTO meta VALUES (?, ?)", ((name, str(value)) for name, value in meta.items()))
        database.commit()
        database.execute("VACUUM")
    except BaseException:
        database.close()
        partial.unlink(missing_ok=True)
        raise
    database.close()
    partial.replace(path)
    return len(replies)


def _put_blob(database: sqlite3.Connection, name: str, value: object) -> None:
    data = zlib.compress(json.dumps(value, ensure_ascii=False).encode("utf-8"), 9)
    database.execute("INSERT INTO blobs VALUES (?, ?)", (name, data))


class ReplyIndex:
    """An open reply index: ``search(message, limit)`` finds the replies to the closest training messages.

    Everything is read into memory when it opens, and the file is closed again: safe to share between threads, and
    a search takes about a millisecond."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` read-only; a missing, damaged or foreign file is a ModelError naming it."""
        self.path = path
        database = None
        try:
            database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            meta = dict(database.execute("SELECT name, value FROM meta").fetchall())
            if meta.get("format_version") not in READABLE_VERSIONS:
                raise ModelError(f"{path}: reply index format {meta.get('format_version')!r} is not {FORMAT_VERSION}")
            self._replies: list[Any] = _blob(database, "replies")  # [text, conversation number, context-free] each
            self._conversations: list[Any] = _blob(database, "conversations")
            four = meta["format_version"] == "4"
            self.vectors = _vectors(database, len(self._replies), int(meta["pieces"])) if four else None
            # The keys' word index, read into memory once (0.4 s for chitchat's): searched there, a message takes a
            # quarter of the time FTS5's own query took, with the same rows in the same order.
            self._postings = Postings.read(database, len(self._replies))
        except (sqlite3.Error, ValueError, KeyError, TypeError, zlib.error) as error:
            raise ModelError(f"{path}: not a readable reply index ({error}); rebuild it with `chatbot index`") from None
        finally:
            if database is not None:
                database.close()

    def __len__(self) -> int:
        return len(self._replies)

    def retrieve(self, message: str, limit: int, by_last_sentence: int = 0) -> list[Retrieved]:
        """The candidates for ``message``: ``search(message, limit)`` and, for a message of several sentences,
        ``search(its last sentence, by_last_sentence)`` too; each reply once, its score its relevance, the search's
        score over that search's best (in (0, 1]; the higher of two), in the order first found."""
        searches = [self.search(message, limit)]
        if by_last_sentence > 0:
            sentences = [part for part in (each.strip() for each in SENTENCE_END.split(message)) if part]
            if len(sentences) > 1:
                searches.append(self.search(sentences[-1], by_last_sentence))
        return merge(searches)

    def search(self, message: str, limit: int) -> list[Retrieved]:
        """Up to ``limit`` replies whose training message is closest to ``message`` by BM25, best first; none
        when no word of the message occurs in the index."""
        words = list(dict.fromkeys(WORD.findall(message.lower())))[:MAX_QUERY_WORDS]
        known = sorted((word for word in words if self._postings.holders(word)), key=self._postings.holders)
        if not known or limit < 1:
            return []
        share = INFORMATIVE_SHARE * len(self._replies)
        informative = [word for word in known if self._postings.holders(word) <= share][:MOST_INFORMATIVE] or known[:1]
        # Ranked as the FTS5 query "(informative OR ...) AND (known OR ...)" ranked them, which counted each
        # informative word twice: the judged sheets rated replies retrieved that way.
        found = []
        for row, score in self._postings.search(informative, informative + known, limit):
            text, conversation, context_free = self._replies[row]
            name = str(self._conversations[int(conversation)])
            found.append(Retrieved(str(text), name, score, float(context_free), row))
        return found


def merge(searches: Iterable[Sequence[Retrieved]]) -> list[Retrieved]:
    """The replies of several searches, each row once, scored by its relevance: its score over its own search's
    best, in (0, 1] (the higher where two searches found it); in the order first found."""
    merged: dict[int, Retrieved] = {}
    for found in searches:
        best = max((each.score for each in found), default=1.0)
        for each in found:
            relevance = each.score / best
            if each.row not in merged or merged[each.row].score < relevance:
                merged[each.row] = dataclasses.replace(each, score=relevance)
    return list(merged.values())


def _blob(database: sqlite3.Connection, name: str, kind: type = list) -> Any:
    """The JSON document ``name``, which must be a ``kind`` (list, or dict for the projection)."""
    row = database.execute("SELECT data FROM blobs WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise ValueError(f"no {name}")
    value = json.loads(zlib.decompress(row[0]))
    if not isinstance(value, kind):
        raise ValueError(f"{name} is not a JSON {'array' if kind is list else 'object'}")
    return value


def _vectors(database: sqlite3.Connection, replies: int, vocab_size: int) -> ReplyVectors:
    """The sentence vectors of an index of format 4 with ``replies`` replies and a student of ``vocab_size`` pieces."""
    shape = (replies, DIMENSIONS)
    (data,) = database.execute("SELECT data FROM blobs WHERE name = 'vectors'").fetchone() or (b"",)
    (pieces,) = database.execute("SELECT data FROM blobs WHERE name = 'pieces'").fetchone() or (b"",)
    projection = _blob(database, "projection", dict)
    mean = np.asarray(projection["mean"], dtype=np.float32)
    axes = np.asarray(projection["axes"], dtype=np.float32)
    if len(data) != shape[0] * shape[1] or mean.shape != (WIDTH,) or axes.shape != (DIMENSIONS, WIDTH):
        raise ValueError("its sentence vectors do not match its replies")
    unit = from_int8(np.frombuffer(data, dtype=np.int8).reshape(shape))
    return ReplyVectors(Projection(mean, axes), unit, PieceVectors.from_bytes(pieces, vocab_size))
