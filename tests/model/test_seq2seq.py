"""Seq2Seq: shapes through every layer, teacher forcing equal to step-by-step decoding, padding that changes
nothing, tied and shared embeddings, and overfitting 4 pairs — for every cell, attention and direction option."""

from __future__ import annotations

import itertools

import pytest
import torch

from chatbot.config import ATTENTION_SCORES, CELLS, ModelConfig
from chatbot.evaluation import masked_nll
from chatbot.model.seq2seq import Seq2Seq

PAD, BOS, EOS = 0, 2, 3


def tiny(attention: str = "general", encoder_layers: int = 1, decoder_layers: int = 1, **options: object) -> Seq2Seq:
    config = ModelConfig(
        vocab_size=11,
        pad_id=PAD,
        embedding_size=5,
        hidden_size=7,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        dropout=0.0,
        attention=attention,
        **options,  # type: ignore[arg-type]
    )
    return Seq2Seq(config).eval()


VARIANTS = [
    {"attention": attention, "cell": cell, "bidirectional": bidirectional}
    for attention, cell, bidirectional in itertools.product(ATTENTION_SCORES, CELLS, (True, False))
]


def variant_id(options: dict[str, object]) -> str:
    return "-".join(str(value) for value in options.values())


@pytest.mark.parametrize("options", VARIANTS, ids=variant_id)
@pytest.mark.parametrize(("encoder_layers", "decoder_layers"), [(1, 1), (2, 3)])
def test_shapes(options: dict[str, object], encoder_layers: int, decoder_layers: int) -> None:
    model = tiny(encoder_layers=encoder_layers, decoder_layers=decoder_layers, **options)
    state_size = 14 if options["cell"] == "lstm" else 7  # an LSTM's state joins its hidden and cell vectors
    source = torch.tensor([[4, 5, 6, 7], [8, 9, PAD, PAD], [4, PAD, PAD, PAD]])
    encoded = model.encode(source)
    assert encoded.memory.shape == (3, 4, 7)
    assert encoded.hidden.shape == (decoder_layers, 3, state_size)
    assert encoded.mask.tolist() == [[True] * 4, [True, True, False, False], [True, False, False, False]]
    logits, hidden, weights = model.decode(torch.tensor([[BOS, 5], [BOS, 6], [BOS, 7]]), encoded.hidden, encoded)
    assert logits.shape == (3, 2, 11)
    assert hidden.shape == (decoder_layers, 3, state_size)
    assert weights.shape == (3, 2, 4)


@pytest.mark.parametrize("options", VARIANTS, ids=variant_id)
def test_teacher_forcing_equals_step_by_step_decoding(options: dict[str, object]) -> None:
    model = tiny(encoder_layers=2, decoder_layers=2, **options)
    source = torch.tensor([[4, 5, 6], [7, 8, PAD]])
    target_in = torch.tensor([[BOS, 9, 10, 4], [BOS, 5, 6, PAD]])
    whole = model(source, target_in)
    encoded = model.encode(source)
    hidden, steps = encoded.hidden, []
    for position in range(target_in.size(1)):
        logits, hidden, _ = model.decode(target_in[:, position : position + 1], hidden, encoded)
        steps.append(logits)
    torch.testing.assert_close(whole, torch.cat(steps, dim=1))


@pytest.mark.parametrize("options", VARIANTS, ids=variant_id)
def test_a_reply_scores_the_same_alone_as_in_a_padded_batch(options: dict[str, object]) -> None:
    model = tiny(encoder_layers=2, **options)
    source = torch.tensor([[4, 5, 6, 7, 8], [9, 10, PAD, PAD, PAD]])
    target_in = torch.tensor([[BOS, 9, 10], [BOS, 5, 6]])
    torch.testing.assert_close(model(source, target_in)[1:], model(source[1:, :2], target_in[1:]))


def test_tied_embeddings_are_one_matrix_and_survive_a_state_dict_round_trip() -> None:
    model = tiny(tie_embeddings=True, share_embeddings=True)
    embedding = model.encoder.embedding.weight
    assert model.decoder.embedding.weight is embedding and model.decoder.output.weight is embedding
    untied = tiny()
    decoder_embedding, output_weight = 11 * 5, 11 * 7
    combine_narrowing = (2 * 7 * 7 + 7) - (2 * 7 * 5 + 5)  # it now produces embedding-sized features, not hidden
    saved = decoder_embedding + output_weight + combine_narrowing
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in untied.parameters()) - saved
    copy = tiny(tie_embeddings=True, share_embeddings=True)
    copy.load_state_dict(model.state_dict())
    assert copy.decoder.output.weight is copy.encoder.embedding.weight
    torch.testing.assert_close(copy.encoder.embedding.weight, embedding)


@pytest.mark.parametrize("options", [{}, {"cell": "lstm", "attention": "additive"}, {"tie_embeddings": True}])
def test_overfits_four_pairs(options: dict[str, object]) -> None:
    model = tiny(**options).train()
    source = torch.tensor([[4, 5], [6, 7], [8, 9], [10, 4]])
    target_out = torch.tensor([[9, 8, EOS], [7, 6, EOS], [5, 4, EOS], [4, 10, EOS]])
    target_in = torch.cat([torch.full((4, 1), BOS), target_out[:, :-1]], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        total, pieces = masked_nll(model(source, target_in), target_out, PAD)
        (total / pieces).backward()
        optimizer.step()
    model.eval()
    assert torch.equal(model(source, target_in).argmax(-1), target_out)


@pytest.mark.parametrize("options", [{}, {"attention": "additive", "cell": "lstm"}], ids=["luong", "bahdanau"])
def test_logits_at_kept_positions_only_equal_the_full_logits_there(options: dict[str, object]) -> None:
    model = tiny(**options)
    source = torch.tensor([[4, 5, 6], [7, 8, PAD]])
    target_in = torch.tensor([[BOS, 9, 10, 4], [BOS, 5, PAD, PAD]])
    keep = torch.tensor([[True, True, True, True], [True, True, False, False]])
    torch.testing.assert_close(model(source, target_in, keep), model(source, target_in)[keep])
