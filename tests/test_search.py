"""Search: greedy stops each row at end-of-sequence and respects min and max length; beam search finds the exact
best replies when wide enough; sampling is seeded and shaped by temperature, top-k and top-p; n-gram blocking
holds for every strategy; batches decode row by row."""

from __future__ import annotations

import itertools
from dataclasses import replace as dataclasses_replace

import pytest
import torch

from chatbot.config import DecodeConfig, ModelConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.reply_quality import is_looping
from chatbot.search import Hypothesis, generate, greedy_search
from chatbot.search.constraints import banned, ngram_index, repeat_bans
from chatbot.search.sampling import filter_distribution

PAD, BOS, EOS = 0, 2, 3


def biased_model(favourite: int) -> Seq2Seq:
    """A model whose output layer always prefers ``favourite`` most and EOS second."""
    model = Seq2Seq(ModelConfig(vocab_size=9, pad_id=PAD, embedding_size=4, hidden_size=4, dropout=0.0)).eval()
    with torch.no_grad():
        model.decoder.output.weight.zero_()
        model.decoder.output.bias.fill_(-10.0)
        model.decoder.output.bias[favourite] = 5.0
        model.decoder.output.bias[EOS] = 4.0
    return model


def test_eos_first_gives_an_empty_reply_only_without_min_length() -> None:
    model = biased_model(favourite=EOS)
    source = torch.tensor([[4, 5, 6]])
    assert greedy_search(model, source, BOS, EOS, DecodeConfig(max_length=5, min_length=0)) == [[]]
    replies = greedy_search(model, source, BOS, EOS, DecodeConfig(max_length=5, min_length=2))
    assert len(replies[0]) == 2 and EOS not in replies[0]


def test_max_length_caps_a_reply_that_never_ends() -> None:
    config = DecodeConfig(max_length=6, block_ngram=0, block_repeat=False)
    replies = greedy_search(biased_model(favourite=7), torch.tensor([[4], [5]]), BOS, EOS, config)
    assert replies == [[7] * 6, [7] * 6]


def test_batched_search_matches_one_row_at_a_time() -> None:
    torch.manual_seed(3)
    model = Seq2Seq(ModelConfig(vocab_size=9, pad_id=PAD, embedding_size=4, hidden_size=6, dropout=0.0)).eval()
    rows = [[4, 5, 6], [7, 8, PAD], [6, PAD, PAD]]
    config = DecodeConfig(max_length=8)
    batched = greedy_search(model, torch.tensor(rows), BOS, EOS, config)
    single = [greedy_search(model, torch.tensor([[t for t in row if t != PAD]]), BOS, EOS, config)[0] for row in rows]
    assert batched == single  # padding and finished neighbours never change a row's reply


def random_model(seed: int, vocab: int = 7) -> Seq2Seq:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=vocab, pad_id=PAD, embedding_size=4, hidden_size=6, dropout=0.0)
    return Seq2Seq(config).eval()


def sequence_log_prob(model: Seq2Seq, source: torch.Tensor, reply: list[int], ended: bool) -> float:
    """log p(reply [+ eos] | source) by teacher forcing."""
    target = reply + ([EOS] if ended else [])
    with torch.no_grad():
        logits = model(source, torch.tensor([[BOS, *target[:-1]]]))
    return float(torch.log_softmax(logits, -1)[0, torch.arange(len(target)), torch.tensor(target)].sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_wide_enough_beam_finds_the_exact_best_replies(seed: int) -> None:
    model, source = random_model(seed), torch.tensor([[4, 5, 6]])
    pieces = [t for t in range(7) if t not in (EOS, PAD, BOS)]  # search never produces padding or bos
    every = [
        (sequence_log_prob(model, source, list(reply), ended), list(reply))
        for length in range(1, 4)
        for reply in itertools.product(pieces, repeat=length)
        for ended in ((True, False) if length == 3 else (True,))
    ]
    best = sorted(every, reverse=True)[:3]
    config = DecodeConfig(strategy="beam", beam_size=50, n_best=3, max_length=3, length_penalty=0.0)
    with torch.no_grad():
        found = generate(model, source, BOS, EOS, config)[0]
    assert [h.tokens for h in found] == [reply for _, reply in best]
    assert [h.log_prob for h in found] == pytest.approx([score for score, _ in best], abs=1e-5)


def test_beam_search_batched_matches_one_row_at_a_time() -> None:
    model = random_model(3, vocab=9)
    rows = [[4, 5, 6], [7, 8, PAD], [6, PAD, PAD]]
    config = DecodeConfig(strategy="beam", beam_size=4, n_best=2, max_length=8)
    batched = generate(model, torch.tensor(rows), BOS, EOS, config)
    single = [generate(model, torch.tensor([[t for t in row if t != PAD]]), BOS, EOS, config)[0] for row in rows]
    assert [[h.tokens for h in hs] for hs in batched] == [[h.tokens for h in hs] for hs in single]
    assert all(hs[0].score >= hs[1].score for hs in batched)


def test_a_context_that_is_done_leaves_the_beam_batch_and_the_others_search_on_as_alone() -> None:
    model = random_model(0, vocab=9)  # seeded so that one context is done at step 7 of 9
    rows = [[4, 5, 6], [7, 8, PAD], [6, PAD, PAD]]
    config = DecodeConfig(strategy="beam", beam_size=4, n_best=2, max_length=12)
    decode, batch_rows = model.decode, []

    def counting(previous: torch.Tensor, *args: object, **kwargs: object) -> object:
        batch_rows.append(previous.size(0))
        return decode(previous, *args, **kwargs)  # type: ignore[arg-type]

    model.decode = counting  # type: ignore[method-assign]
    batched = generate(model, torch.tensor(rows), BOS, EOS, config)
    model.decode = decode  # type: ignore[method-assign]
    assert batch_rows == [12] * 7 + [8, 8]
    single = [generate(model, torch.tensor([[t for t in row if t != PAD]]), BOS, EOS, config)[0] for row in rows]
    assert [[h.tokens for h in hs] for hs in batched] == [[h.tokens for h in hs] for hs in single]
    assert [h.log_prob for hs in batched for h in hs] == pytest.approx([h.log_prob for hs in single for h in hs])


def test_length_penalty_favours_longer_replies() -> None:
    model, source = random_model(4, vocab=9), torch.tensor([[4, 5, 6, 7]])
    lengths = {}
    for alpha in (0.0, 2.0):
        config = DecodeConfig(strategy="beam", beam_size=6, n_best=6, max_length=10, length_penalty=alpha)
        lengths[alpha] = len(generate(model, source, BOS, EOS, config)[0][0].tokens)
    assert lengths[2.0] >= lengths[0.0]


def has_repeated_ngram(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_ngram_blocking_within_the_reply_and_against_the_context(strategy: str) -> None:
    model = biased_model(favourite=7)  # left alone it says 7 7 7 7 ...
    source = torch.tensor([[5, 6, 4, 6], [8, 8, PAD, PAD]])
    config = DecodeConfig(strategy=strategy, max_length=8, block_ngram=2, block_context_ngram=2, top_k=3)
    for hypotheses, context in zip(
        generate(model, source, BOS, EOS, config, torch.Generator().manual_seed(0)), source.tolist(), strict=True
    ):
        reply = hypotheses[0].tokens
        assert reply and not has_repeated_ngram(reply, 2)
        context_grams = {tuple(context[i : i + 2]) for i in range(len(context) - 1)}
        assert not {tuple(reply[i : i + 2]) for i in range(len(reply) - 1)} & context_grams


def test_ngram_index_and_bans() -> None:
    seen = ngram_index([4, 5, 6, 4, 5, 7], 3)
    assert banned([9, 4, 5], 3, seen) == {6, 7}
    assert banned([5], 3, seen) == set()


def test_repeat_bans_are_the_pieces_that_would_close_a_loop() -> None:
    assert repeat_bans([4, 5, 4]) == {5}  # 4 5 4 5
    assert repeat_bans([9, 4, 5, 6, 4, 5]) == {6}  # 4 5 6 4 5 6
    assert repeat_bans([4, 4]) == {4}  # 4 4 4
    assert repeat_bans([5, 4, 4]) == {4}  # 4 4 4; a piece said twice is allowed, as in "very very"
    assert repeat_bans([4, 5, 6]) == set() and repeat_bans([4]) == set() and repeat_bans([]) == set()


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_repeat_blocking_leaves_no_loop_that_ngram_blocking_lets_through(strategy: str) -> None:
    model = biased_model(favourite=7)  # left alone it says 7 7 7 7 ...
    config = DecodeConfig(strategy=strategy, max_length=8, block_ngram=0, top_k=3)
    for hypotheses in generate(
        model, torch.tensor([[4, 5], [6, 4]]), BOS, EOS, config, torch.Generator().manual_seed(0)
    ):
        reply = hypotheses[0].tokens
        assert reply and not is_looping(" ".join(map(str, reply))), reply


def test_sampling_is_reproducible_with_a_seeded_generator_and_top_k_1_is_greedy() -> None:
    model, source = random_model(5, vocab=9), torch.tensor([[4, 5, 6], [7, PAD, PAD]])
    config = DecodeConfig(strategy="sample", n_best=3, max_length=6)
    first = generate(model, source, BOS, EOS, config, torch.Generator().manual_seed(1))
    again = generate(model, source, BOS, EOS, config, torch.Generator().manual_seed(1))
    assert [[h.tokens for h in hs] for hs in first] == [[h.tokens for h in hs] for hs in again]
    assert all(len(hs) == 3 for hs in first)
    top1 = generate(model, source, BOS, EOS, DecodeConfig(strategy="sample", top_k=1, max_length=6))
    assert [hs[0].tokens for hs in top1] == greedy_search(model, source, BOS, EOS, DecodeConfig(max_length=6))


def test_top_k_top_p_and_temperature_shape_the_distribution() -> None:
    log_probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()

    def kept(**options: float) -> list[bool]:
        return torch.isfinite(filter_distribution(log_probs, DecodeConfig(**options))).tolist()[0]  # type: ignore[arg-type]

    assert kept(top_k=2) == [True, True, False, False]
    assert kept(top_p=0.8) == [True, True, False, False]  # 0.5 + 0.3 reach 0.8: the nucleus ends there
    assert kept(top_p=0.81) == [True, True, True, False]
    assert kept(top_p=0.1) == [True, False, False, False]  # the likeliest piece always stays
    sharp = torch.softmax(filter_distribution(log_probs, DecodeConfig(temperature=0.5)), -1)
    assert float(sharp[0, 0]) > 0.5


def test_confidence_is_the_per_piece_geometric_mean_probability() -> None:
    assert Hypothesis([4, 5], log_prob=3 * -0.5, score=0.0).confidence == pytest.approx(0.6065, abs=1e-4)


def test_mmi_rescoring_subtracts_the_context_free_likelihood_of_the_first_pieces() -> None:
    from chatbot.search.beam import length_penalty
    from chatbot.search.mmi import prefix_log_probs

    model, source, neutral = random_model(6, vocab=9), torch.tensor([[4, 5, 6]]), [4]
    config = DecodeConfig(strategy="beam", beam_size=5, n_best=5, max_length=6, mmi_weight=0.0, mmi_prefix=2)
    plain = generate(model, source, BOS, EOS, config, neutral=neutral)[0]
    anti = prefix_log_probs(model, [h.tokens for h in plain], neutral, BOS, EOS, prefix=2)
    for h, lm in zip(plain, anti, strict=True):
        first = ([*h.tokens, EOS])[:2]
        assert lm == pytest.approx(sequence_log_prob(model, torch.tensor([neutral]), first, ended=False), abs=1e-5)
    weighted = generate(model, source, BOS, EOS, dataclasses_replace(config, mmi_weight=0.7), neutral=neutral)[0]
    expected = sorted(
        ((h.log_prob - 0.7 * lm) / length_penalty(len(h.tokens) + 1, 0.6), h.tokens)
        for h, lm in zip(plain, anti, strict=True)
    )[::-1]
    assert [h.tokens for h in weighted] == [tokens for _, tokens in expected]
    assert [h.score for h in weighted] == pytest.approx([score for score, _ in expected])
