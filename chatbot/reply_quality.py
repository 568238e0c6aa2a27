"""Reply quality: how a model's generated replies compare with the reference replies, and how varied and fast they are.

These are the model-free numbers `chatbot eval` reports beside perplexity. Each takes plain strings (the decoded
replies, already lowercased by the tokenizer) and returns one float for the whole set:

- ``bleu``: corpus BLEU from sacrebleu, 0-100, against one reference per reply.
- ``unigram_f1``: ParlAI's word-overlap F1, the metric of the ConvAI2 leaderboard, averaged over replies.
- ``distinct``: distinct-n of Li et al. 2016, unique n-grams / all n-grams over every reply; low means repetitive.
- ``average_length``: whitespace words per reply.
- ``generic_rate``: the share of replies that are stock answers such as "i don't know".
- ``empty_rate``: the share of replies with no words at all.
- ``looping_rate``: the share of replies that repeat a stretch of words right after itself, the degenerate loops
  of maximum-likelihood decoding ("i'm a student and i'm a student and ...").
- ``latency_percentiles``: p50 and p95 reply time, in milliseconds.

``is_pleasantry`` tells one reply made only of greetings and how-are-you talk ("hey! how are you?", "i'm doing
great!"): the reply a model trained on conversation logs gives to any first message when it has learned that a
one-turn context means an opening greeting.

``measure`` computes them all into one ``ReplyQuality``, which ``dataclasses.asdict`` turns into JSON.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sacrebleu.metrics.bleu import BLEU

# ParlAI's normalize_answer: punctuation (the apostrophe included) becomes a space, then the articles go.
_F1_PUNCTUATION = re.compile(r"[!\"#$%&()*+,\-./:;<=>?@\[\]^`{|}~_']")
# The generic-reply form keeps apostrophes, so "don't" stays one word and matches the list as people write it.
_GENERIC_PUNCTUATION = re.compile(r"[!\"#$%&()*+,\-./:;<=>?@\[\]^`{|}~_]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CURLY_APOSTROPHES = str.maketrans({"\u2018": "'", "\u2019": "'"})


def _normalize(text: str, punctuation: re.Pattern[str]) -> str:
    """Lowercase, ``punctuation`` to spaces, articles out, whitespace collapsed (ParlAI's normalize_answer)."""
    spaced = punctuation.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", spaced).split())


def f1_words(text: str) -> list[str]:
    """The words unigram F1 compares: "The cat's hat!" -> ["cat", "s", "hat"], exactly as ParlAI splits them."""
    return _normalize(text, _F1_PUNCTUATION).split()


def generic_form(text: str) -> str:
    """The form looked up in the generic-reply set: as ``f1_words`` but apostrophes kept ("I don't know." ->
    "i don't know"); curly apostrophes are straightened first, so either spelling matches."""
    return _normalize(text.translate(_CURLY_APOSTROPHES), _GENERIC_PUNCTUATION)


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} replies but {len(references)} references")
    if not hypotheses:
        raise ValueError("no replies to score")


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of the replies against one reference each, as sacrebleu reports it.

    Tokenization is sacrebleu's default ``13a`` (the WMT mteval rules: punctuation split off words), with its default
    ``exp`` smoothing and no lowercasing of its own, since the replies and references are already lowercase. Corpus
    BLEU pools n-gram counts over all replies before the geometric mean, so one short reply does not zero the score.
    """
    _check_pairs(hypotheses, references)
    metric = BLEU(tokenize="13a")
    return float(metric.corpus_score(list(hypotheses), [list(references)]).score)


def reply_f1(hypothesis: str, reference: str) -> float:
    """ParlAI's F1 of one reply: precision and recall of the multiset of ``f1_words`` shared by both sides.

    "the cat sat." vs "A cat sat down" -> [cat, sat] vs [cat, sat, down]: 2 shared, P = 1, R = 2/3, F1 = 0.8.
    An empty side (after normalisation) scores 0.
    """
    hypothesis_words, reference_words = Counter(f1_words(hypothesis)), Counter(f1_words(reference))
    shared = sum((hypothesis_words & reference_words).values())
    if shared == 0:
        return 0.0
    precision = shared / sum(hypothesis_words.values())
    recall = shared / sum(reference_words.values())
    return 2 * precision * recall / (precision + recall)


def unigram_f1(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ``reply_f1`` over the replies (0-1); the ConvAI2 seq2seq baseline scores about 0.16."""
    _check_pairs(hypotheses, references)
    return sum(map(reply_f1, hypotheses, references)) / len(hypotheses)


def distinct(hypotheses: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams, pooled over every reply (0.0 if there are none).

    N-grams are of whitespace words and never span two replies. A model that answers everything with the same line
    scores near 0; the Li et al. Twitter seq2seq baseline scores about 0.02 (n=1) and 0.11 (n=2).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    grams: Counter[tuple[str, ...]] = Counter()
    for reply in hypotheses:
        words = reply.split()
        grams.update(tuple(words[start : start + n]) for start in range(len(words) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def average_length(hypotheses: Sequence[str]) -> float:
    """Mean number of whitespace words per reply (0.0 for no replies)."""
    return sum(len(reply.split()) for reply in hypotheses) / len(hypotheses) if hypotheses else 0.0


# Stock answers that fit any input, the "dull responses" of Li et al. 2016, written in ``generic_form``.
GENERIC_REPLIES: frozenset[str] = frozenset(
    {
        "i don't know",
        "i have no idea",
        "i don't know what you're talking about",
        "i don't know what you mean",
        "i don't know what to say",
        "i'm not sure",
        "i'm not sure what you mean",
        "what do you mean",
        "i'm fine",
        "i'm ok",
        "me too",
        "yes",
        "no",
        "ok",
        "okay",
    }
)


def generic_rate(hypotheses: Sequence[str], generic: frozenset[str] = GENERIC_REPLIES) -> float:
    """Share of replies (0-1) whose ``generic_form`` is in ``generic``: "I don't know." counts, "I don't know her"
    does not. ``generic`` must hold normalised forms. 0.0 for no replies."""
    if not hypotheses:
        return 0.0
    return sum(generic_form(reply) in generic for reply in hypotheses) / len(hypotheses)


def empty_rate(hypotheses: Sequence[str]) -> float:
    """Share of replies (0-1) that hold no word (empty or whitespace only). 0.0 for no replies."""
    return sum(not reply.split() for reply in hypotheses) / len(hypotheses) if hypotheses else 0.0


def is_looping(reply: str) -> bool:
    """Whether ``reply`` says a stretch of words again right after itself: one word three times in a row ("no no
    no"), or two or more words twice ("i am here i am here"). This is how a decoder stuck in a loop shows; a word
    said twice ("very very") or a phrase that comes back later ("i like cats and i like dogs") is not a loop."""
    words = reply.split()
    for size in range(1, len(words) // 2 + 1):
        times = 3 if size == 1 else 2
        for start in range(len(words) - size * times + 1):
            unit = words[start : start + size]
            if all(words[start + k * size : start + (k + 1) * size] == unit for k in range(1, times)):
                return True
    return False


_GREETING_WORD = re.compile(
    r"h+i+|he+y+|hel+o+|heya|hiya|howdy|yo+|sup|hows|how's|how|whats|what's|i'm|im|morning|evening|anyone|anybody"
)
# Every other word a pleasantry may hold: "how are you doing today?", "i'm good, and you?", "nice to meet you".
_PLEASANTRY_WORD = re.compile(
    r"there|are|r|you|u|doing|today|up|good|great|well|fine|ok|okay|not|bad|alright|thanks|thank|about|and|your|"
    r"yourself|nice|to|meet|afternoon|it's|its|it|going|day|pretty|very|too|so|been"
)


def is_pleasantry(reply: str) -> bool:
    """Whether ``reply`` holds nothing but greetings and how-are-you talk, with at least one greeting or how-are-you
    word ("great!" alone is an answer, not a pleasantry)."""
    words = generic_form(reply).split()
    greeting = [_GREETING_WORD.fullmatch(word) is not None for word in words]
    filler = [_PLEASANTRY_WORD.fullmatch(word) is not None for word in words]
    return any(greeting) and all(g or f for g, f in zip(greeting, filler, strict=True))


def looping_rate(hypotheses: Sequence[str]) -> float:
    """Share of replies (0-1) that ``is_looping``. 0.0 for no replies."""
    return sum(map(is_looping, hypotheses)) / len(hypotheses) if hypotheses else 0.0


def latency_percentiles(seconds: Sequence[float]) -> tuple[float, float]:
    """The median and 95th percentile of reply times given in seconds, returned in milliseconds.

    Percentiles interpolate linearly between the sorted samples (numpy's default), so they never leave the range
    measured; one sample is its own p50 and p95.
    """
    if not seconds:
        raise ValueError("no latencies to summarise")
    if len(seconds) == 1:
        return seconds[0] * 1000, seconds[0] * 1000
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")  # cuts[k - 1] is the k-th percentile
    return cuts[49] * 1000, cuts[94] * 1000


@dataclass(frozen=True)
class ReplyQuality:
    """Every reply-quality number for one evaluation set; scales as in the functions that compute them."""

    replies: int
    bleu: float
    unigram_f1: float
    distinct_1: float
    distinct_2: float
    average_length: float
    generic_rate: float
    empty_rate: float
    looping_rate: float
    latency_p50_ms: float
    latency_p95_ms: float


def measure(hypotheses: Sequence[str], references: Sequence[str], latencies_seconds: Sequence[float]) -> ReplyQuality:
    """All reply-quality numbers for generated ``hypotheses`` against ``references`` (the same length, not empty),
    with ``latencies_seconds`` the time each reply took (at least one sample)."""
    _check_pairs(hypotheses, references)
    latency_p50_ms, latency_p95_ms = latency_percentiles(latencies_seconds)
    return ReplyQuality(
        replies=len(hypotheses),
        bleu=bleu(hypotheses, references),
        unigram_f1=unigram_f1(hypotheses, references),
        distinct_1=distinct(hypotheses, 1),
        distinct_2=distinct(hypotheses, 2),
        average_length=average_length(hypotheses),
        generic_rate=generic_rate(hypotheses),
        empty_rate=empty_rate(hypotheses),
        looping_rate=looping_rate(hypotheses),
        latency_p50_ms=latency_p50_ms,
        latency_p95_ms=latency_p95_ms,
    )
