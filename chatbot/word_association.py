"""Word association: how much likelier a reply is to use a word when the message it answers has another, counted
over training pairs — the candidates' on-topic bonus (candidates.py).

A small model's likelihood, even against the neutral context (MMI), favours a reply that fits many messages ("so
what are you studying?") over one on this message's topic ("cereal!" to "what did you have for breakfast?").
Counts over a hundred thousand pairs know topics better: a message with "breakfast" makes "cereal" in its reply
many times likelier than in replies at large. For a message word m and a reply word r seen together in at least
``min_count`` pairs (of N), their association is the positive pointwise mutual information

    PMI(m, r) = log(N * pairs with m in the message and r in the reply / (messages with m * replies with r))

counted for content words only: a word in more than ``common_share`` of the messages and replies ("you", "the",
"what") goes a little with everything. A reply's association with a message is the strongest association between
one of the message's words and one of its own, capped at CAP: a bonus for taking up the message's topic at all,
not for taking up more of it. Summed over the message's words and uncapped, it picked longer replies; on the dev
prompts' rated candidate pools (bench/candidate_pool.py) those rated higher, but on the judged sheet
(bench/judged/sheet-2026-12-03i) they rated lower, a quarter of them not fluent: long replies in the corpus are
often two messages run together.

Words are those the reply index searches by (``\\w+``, lowercased). The table is stored in the reply index file
(reply_index.py) as one blob: its words, its pairs as sorted numbers (message word * words + reply word,
delta-coded) and their PMI in sixteenths.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_COUNT = 5  # pairs seen fewer times are chance as often as association
COMMON_SHARE = 0.005  # a word in more of the messages and replies than this is not a content word
CAP = 2.0  # nats: the bonus says "on topic"; a stronger or second association adds nothing
SCALE = 16  # PMI is kept in sixteenths of a nat: one byte each, and finer than the counts can tell
CHUNK = 20_000  # pairs counted at once: bounds the memory of the word-pair arrays
WORD = re.compile(r"\w+")


@dataclass(frozen=True, eq=False)
class WordAssociation:
    """The positive associations of (message word, reply word) pairs: ``keys`` (sorted) numbers each pair as
    message word * len(words) + reply word, ``strength`` holds its PMI; ``words`` numbers the words."""

    words: dict[str, int]
    keys: np.ndarray  # (pairs,) int64, ascending
    strength: np.ndarray  # (pairs,) float32, each > 0

    @classmethod
    def count(
        cls, pairs: Iterable[tuple[str, str]], min_count: int = MIN_COUNT, common_share: float = COMMON_SHARE
    ) -> WordAssociation:
        """The associations of the content words of (message, reply) ``pairs``."""
        vocabulary: dict[str, int] = {}
        tokenized = [(_distinct(message, vocabulary), _distinct(reply, vocabulary)) for message, reply in pairs]
        size = len(vocabulary)
        in_messages = np.bincount(np.concatenate([m for m, _ in tokenized] or [_EMPTY]), minlength=size)
        in_replies = np.bincount(np.concatenate([r for _, r in tokenized] or [_EMPTY]), minlength=size)
        keys, together = _pair_counts(tokenized, size)
        message, reply = keys // max(size, 1), keys % max(size, 1)
        pmi = np.log(len(tokenized) * together / (in_messages[message] * in_replies[reply]))
        sixteenths = np.round(pmi * SCALE)
        common = in_messages + in_replies > 2 * common_share * len(tokenized)
        kept = (together >= min_count) & (sixteenths >= 1) & ~common[message] & ~common[reply]
        return cls._compact(vocabulary, message[kept], reply[kept], np.minimum(sixteenths[kept], 255) / SCALE)

    @classmethod
    def _compact(
        cls, vocabulary: dict[str, int], message: np.ndarray, reply: np.ndarray, strength: np.ndarray
    ) -> WordAssociation:
        """The table over the words its pairs use, renumbered in order of first sight."""
        used = np.unique(np.concatenate([message, reply]))
        renumber = np.full(len(vocabulary), -1, dtype=np.int64)
        renumber[used] = np.arange(len(used))
        words = {word: int(renumber[i]) for word, i in vocabulary.items() if renumber[i] >= 0}
        keys = renumber[message] * len(words) + renumber[reply]
        order = np.argsort(keys, kind="stable")
        return cls(words, keys[order], strength[order].astype(np.float32))

    def __len__(self) -> int:
        return len(self.keys)

    def score(self, message: str, reply: str) -> float:
        """The strongest association of a word of ``message`` with a word of ``reply``, at most CAP (0 when none
        is associated)."""
        m, r = self._ids(message), self._ids(reply)
        if not len(m) or not len(r) or not len(self.keys):
            return 0.0
        wanted = (m[:, None] * len(self.words) + r[None, :]).ravel()  # (|m| * |r|,)
        at = np.searchsorted(self.keys, wanted).clip(max=len(self.keys) - 1)
        found = np.where(self.keys[at] == wanted, self.strength[at], 0.0)  # (|m| * |r|,)
        return float(min(found.max(), CAP))

    def _ids(self, text: str) -> np.ndarray:
        ids = {self.words[w] for w in WORD.findall(text.lower()) if w in self.words}
        return np.array(sorted(ids), dtype=np.int64)

    def to_bytes(self) -> bytes:
        """The table as one compressed archive (its PMI in sixteenths, its sorted keys as differences)."""
        buffer = io.BytesIO()
        ordered = sorted(self.words, key=self.words.__getitem__)
        gaps = np.diff(self.keys, prepend=0)
        np.savez_compressed(
            buffer,
            words=np.array(ordered, dtype=str),
            gaps=gaps,
            strength=np.round(self.strength * SCALE).astype(np.uint8),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> WordAssociation:
        """The table ``to_bytes`` wrote; a ValueError when ``data`` is not one."""
        try:
            if not zipfile.is_zipfile(io.BytesIO(data)):  # np.load would read other bytes as an array
                raise ValueError("not an archive")
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                ordered, gaps, strength = archive["words"], archive["gaps"], archive["strength"]
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"not a word association table ({error})") from None
        keys = np.cumsum(gaps.astype(np.int64))
        if len(keys) != len(strength) or (len(keys) and (keys[-1] >= len(ordered) ** 2 or np.any(gaps[1:] <= 0))):
            raise ValueError("not a word association table (its pairs are out of order or range)")
        words = {str(word): i for i, word in enumerate(ordered.tolist())}
        return cls(words, keys, strength.astype(np.float32) / SCALE)


_EMPTY = np.zeros(0, dtype=np.int64)


def _distinct(text: str, vocabulary: dict[str, int]) -> np.ndarray:
    """The distinct words of ``text`` as numbers, numbering new words as they come."""
    words = {vocabulary.setdefault(w, len(vocabulary)) for w in WORD.findall(text.lower())}
    return np.array(sorted(words), dtype=np.int64)


def _pair_counts(tokenized: Sequence[tuple[np.ndarray, np.ndarray]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each (message word, reply word) pair seen, as message * size + reply (ascending), and in how many pairs."""
    found, counts = [_EMPTY], [_EMPTY]
    for start in range(0, len(tokenized), CHUNK):
        chunk = [(m[:, None] * size + r[None, :]).ravel() for m, r in tokenized[start : start + CHUNK]]
        keys, seen = np.unique(np.concatenate([_EMPTY, *chunk]).astype(np.int64), return_counts=True)
        found.append(keys)
        counts.append(seen)
    keys, where = np.unique(np.concatenate(found), return_inverse=True)
    return keys, np.bincount(where, weights=np.concatenate(counts), minlength=len(keys))
