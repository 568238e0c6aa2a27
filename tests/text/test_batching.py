"""Batching: truncation from the left, teacher-forcing shift, padding, and length bucketing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chatbot.config import ContextConfig, TokenizerConfig
from chatbot.corpora import load_corpus
from chatbot.text.batching import EncodedPair, bucketed_batches, collate, encode_pair
from chatbot.text.pairs import Pair
from chatbot.text.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer(sample_path: Path) -> Tokenizer:
    texts = [turn.text for conversation in load_corpus(str(sample_path)) for turn in conversation.turns]
    return Tokenizer.train(texts, TokenizerConfig(vocab_size=150))


def test_encode_keeps_the_latest_context_and_caps_the_reply(tokenizer: Tokenizer) -> None:
    pair = Pair("one two three four five six seven eight", "a b c d e f g h i j", "c")
    encoded = encode_pair(pair, tokenizer, ContextConfig(max_source_tokens=4, max_target_tokens=3))
    assert list(encoded.source) == tokenizer.encode(pair.context)[-4:]
    assert list(encoded.target) == tokenizer.encode(pair.response)[:2]  # room left for </s>


def test_collate_shifts_targets_and_pads(tokenizer: Tokenizer) -> None:
    batch = collate([EncodedPair((5, 6, 7), (8, 9)), EncodedPair((5,), (10,))], tokenizer)
    bos, eos, pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
    assert batch.source.tolist() == [[5, 6, 7], [5, pad, pad]]
    assert batch.target_in.tolist() == [[bos, 8, 9], [bos, 10, pad]]
    assert batch.target_out.tolist() == [[8, 9, eos], [10, eos, pad]]


def test_buckets_group_similar_lengths_and_cover_every_pair(tokenizer: Tokenizer) -> None:
    pairs = [EncodedPair(tuple(range(4, 4 + n)), (5,)) for n in [1, 9, 2, 8, 3, 7, 1, 9]]
    batches = bucketed_batches(pairs, 2, tokenizer, random.Random(0))
    assert sum(batch.source.size(0) for batch in batches) == len(pairs)
    widths = sorted(batch.source.size(1) for batch in batches)
    assert widths == [1, 3, 8, 9]  # lengths (1,1), (2,3), (7,8), (9,9)
    padding = sum(int((batch.source == tokenizer.pad_id).sum()) for batch in batches)
    assert padding == 2


def test_token_budget_caps_padded_positions_and_covers_every_pair(tokenizer: Tokenizer) -> None:
    rng = random.Random(3)
    lengths = [rng.randint(1, 30) for _ in range(200)]
    pairs = [EncodedPair(tuple(range(4, 4 + n)), tuple(range(4, 4 + n // 2))) for n in lengths] + [
        EncodedPair(tuple(range(4, 104)), (5,))  # a single pair longer than the budget
    ]
    batches = bucketed_batches(pairs, batch_size=16, tokenizer=tokenizer, rng=random.Random(0), max_tokens=120)
    assert sum(batch.source.size(0) for batch in batches) == len(pairs)
    for batch in batches:
        rows, padded = batch.source.size(0), batch.source.numel() + batch.target_in.numel()
        assert rows <= 16
        assert padded <= 120 or rows == 1
    assert any(batch.source.size(0) == 16 for batch in batches), "short pairs still fill whole batches"
    assert sum(batch.source.size(0) == 1 for batch in batches) >= 1
