"""Candidates: pooling generated and retrieved replies, and the model's choice among them in one teacher-forced
batch, scored as documented (log p(T|S) - mmi_weight * log U(T)) / length_penalty."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from chatbot.candidates import GENERATED, Candidate, choose, pool, scored
from chatbot.config import DecodeConfig
from chatbot.reply_index import Retrieved
from chatbot.search import Hypothesis
from chatbot.search.beam import length_penalty
from chatbot.search.mmi import prefix_log_probs
from chatbot.search.scoring import target_log_probs
from chatbot.training import checkpoint


def test_pool_keeps_each_reply_once_and_drops_what_cannot_be_said_whole() -> None:
    generated = [Hypothesis([5, 6], -1.0, -1.0), Hypothesis([7], -2.0, -2.0)]
    retrieved = [Retrieved("a", "c1", 3.0, -1.0), Retrieved("b", "c2", 2.0, -2.0), Retrieved("c", "c3", 1.0, -3.0)]
    found = pool(generated, retrieved, [[5, 6], [8, 9, 10], [11]], max_pieces=3)
    # "a" repeats a generated reply and "b" is too long; relevance is the BM25 score over the best one's.
    assert found == [Candidate([5, 6], GENERATED), Candidate([7], GENERATED), Candidate([11], "c3", 1 / 3, -3.0)]
    assert [c.row for c in found] == [-1, -1, -1]  # made up: these Retrieved carry no index row
    longer = pool([], retrieved, [[5, 6], [8, 9, 10], [11]], max_pieces=4, min_pieces=2)
    assert [c.source for c in longer] == ["c1", "c2"]  # "c" is shorter than the minimum length


def _ids(bundle: checkpoint.ModelBundle, text: str) -> list[int]:
    return bundle.tokenizer.encode(text)


@pytest.mark.parametrize(
    ("mmi_weight", "retrieval_weight", "semantic_weight"),
    [(0.0, 0.0, 0.0), (0.7, 0.0, 0.0), (0.5, 100.0, 0.0), (0.5, 0.0, 100.0), (0.5, 3.0, 3.5)],
)
def test_choose_scores_every_candidate_as_documented(
    tiny_model_dir: Path, mmi_weight: float, retrieval_weight: float, semantic_weight: float
) -> None:
    bundle = checkpoint.load(tiny_model_dir)
    model, tok = bundle.model, bundle.tokenizer
    config = DecodeConfig(
        mmi_weight=mmi_weight,
        mmi_prefix=2,
        length_penalty=0.6,
        retrieval_weight=retrieval_weight,
        semantic_weight=semantic_weight,
    )
    source = _ids(bundle, "<usr> do you have any pets?")
    replies = [_ids(bundle, text) for text in ("yes, a cat named pepper", "mushrooms and olives", "hello")]
    neutral = _ids(bundle, "<usr>")
    with torch.no_grad():
        fitted = target_log_probs(model, model.encode(torch.tensor([source])), [0, 0, 0], [[*r, 3] for r in replies], 2)
        anti = prefix_log_probs(model, replies, neutral, 2, 3, 2)
    relevance, similarity = [0.2, 1.0, 0.5], [0.1, -0.2, 0.6]
    expected = [
        (lp - mmi_weight * lm) / length_penalty(len(r) + 1, 0.6) + retrieval_weight * rel + semantic_weight * sim
        for lp, lm, r, rel, sim in zip(fitted, anti, replies, relevance, similarity, strict=True)
    ]
    candidates = [
        Candidate(r, f"c{i}", rel, similarity=sim)
        for i, (r, rel, sim) in enumerate(zip(replies, relevance, similarity, strict=True))
    ]
    found = scored(model, [source], [candidates], neutral, tok.bos_id, tok.eos_id, config)
    assert [c.score for c in found[0]] == pytest.approx(expected, abs=1e-5)  # each candidate's, in order
    (best,) = choose(found)
    winner = max(range(3), key=expected.__getitem__)
    assert best is not None
    assert (best.tokens, best.source) == (replies[winner], f"c{winner}")
    assert best.score == pytest.approx(expected[winner], abs=1e-5)
    assert best.confidence == pytest.approx(math.exp(fitted[winner] / (len(replies[winner]) + 1)), rel=1e-5)
    if semantic_weight == 100.0:
        assert best.tokens == replies[2]  # a heavy enough semantic similarity outweighs the model
    elif retrieval_weight == 100.0:
        assert best.tokens == replies[1]  # so does a heavy enough relevance prior
    else:
        assert best.tokens == replies[0]  # the tiny model learned this answer to this question


def test_choose_batches_contexts_and_reports_none_without_candidates(tiny_model_dir: Path) -> None:
    bundle = checkpoint.load(tiny_model_dir)
    tok = bundle.tokenizer
    pets, food = _ids(bundle, "yes, a cat named pepper"), _ids(bundle, "pizza, definitely")
    both = [Candidate(pets, "p"), Candidate(food, "f")]
    sources = [
        _ids(bundle, "<usr> do you have any pets?"),
        _ids(bundle, "<usr> hi"),
        _ids(bundle, "<usr> what's your favourite food?"),
    ]
    chosen = choose(
        scored(bundle.model, sources, [both, [], both], _ids(bundle, "<usr>"), tok.bos_id, tok.eos_id, DecodeConfig())
    )
    assert [c.source if c else None for c in chosen] == ["p", None, "f"]
    assert scored(bundle.model, sources[:1], [[]], [], tok.bos_id, tok.eos_id, DecodeConfig()) == [[]]
    assert choose([[]]) == [None]


def test_the_index_s_context_free_score_stands_in_for_the_neutral_pass(tiny_model_dir: Path) -> None:
    bundle = checkpoint.load(tiny_model_dir)
    tok = bundle.tokenizer
    source, neutral = _ids(bundle, "<usr> do you have any pets?"), _ids(bundle, "<usr>")
    replies = [_ids(bundle, text) for text in ("yes, a cat named pepper", "mushrooms and olives")]
    with torch.no_grad():
        whole = prefix_log_probs(bundle.model, replies, neutral, tok.bos_id, tok.eos_id, 100)

    def best(candidates: list[Candidate], prefix: int = 100) -> float:
        cfg = DecodeConfig(mmi_weight=0.5, mmi_prefix=prefix)
        (chosen,) = choose(scored(bundle.model, [source], [candidates], neutral, tok.bos_id, tok.eos_id, cfg))
        assert chosen is not None
        return chosen.score

    computed = best([Candidate(r, "x") for r in replies])
    known = best([Candidate(r, "x", 0.0, lm) for r, lm in zip(replies, whole, strict=True)])
    assert known == pytest.approx(computed, abs=1e-4)  # the stored figure is what the pass would compute
    # A stored figure that differs is used as given while the prefix covers the whole reply, and not otherwise.
    planted = [Candidate(r, "x", 0.0, 0.0) for r in replies]
    assert best(planted) != pytest.approx(computed, abs=1e-3)
    assert best(planted, prefix=2) == pytest.approx(best([Candidate(r, "x") for r in replies], prefix=2), abs=1e-4)
