"""Explanation: why the model said what it said, as a text table for ``/why``.

The reply is run through the model again with teacher forcing (its own pieces fed back in), which gives, for
every piece of the reply, exactly the distribution and attention the model had when it chose that piece:
  - where it looked: the context pieces with the highest attention weights;
  - how sure it was: the probability of the piece it chose;
  - what else it considered: the likeliest other pieces at that step;
and, below the table, the best whole replies a beam search finds for the same context, with their confidence
(geometric-mean probability per piece), so a learner sees the alternatives the decoder weighed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from chatbot.config import DecodeConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.search import generate
from chatbot.text.tokenizer import Tokenizer

ATTENDED = 3  # context pieces shown per reply piece
CONSIDERED = 3  # other candidate pieces shown per reply piece
ALTERNATIVES = 5  # whole replies from the beam


@dataclass(frozen=True)
class Step:
    """One piece of the reply: the piece, its probability, the context pieces it attended to most (piece,
    weight), and the likeliest other pieces (piece, probability)."""

    piece: str
    probability: float
    attended: list[tuple[str, float]]
    considered: list[tuple[str, float]]


@dataclass(frozen=True)
class Explanation:
    """A reply taken apart: the context pieces the model read, one Step per reply piece (the end of the reply
    included), and other whole replies with their confidence."""

    context: list[str]
    steps: list[Step]
    alternatives: list[tuple[str, float]]


def explain(
    model: Seq2Seq, tokenizer: Tokenizer, source_ids: list[int], reply: str, config: DecodeConfig
) -> Explanation:
    """Take ``reply`` to the context the model read as ``source_ids`` apart; ``config`` decodes the alternatives
    (as a beam of ALTERNATIVES)."""
    reply_ids = tokenizer.encode(reply)[: config.max_length]
    source = torch.tensor([source_ids])  # (1, src_len)
    target_in = torch.tensor([[tokenizer.bos_id, *reply_ids]])  # (1, reply_len + 1)
    with torch.inference_mode():
        encoded = model.encode(source)
        logits, _, weights = model.decode(target_in, encoded.hidden, encoded)  # (1, steps, vocab), (1, steps, src)
        probabilities = logits[0].float().softmax(dim=-1)  # (steps, vocab)
        beam = dataclasses.replace(config, strategy="beam", beam_size=ALTERNATIVES, n_best=ALTERNATIVES)
        found = generate(model, source, tokenizer.bos_id, tokenizer.eos_id, beam)[0]
    context_pieces = tokenizer.pieces(source_ids)
    chosen = [*reply_ids, tokenizer.eos_id]
    steps = [
        _step(tokenizer, context_pieces, piece, probabilities[index], weights[0, index])
        for index, piece in enumerate(chosen)
    ]
    alternatives = [(tokenizer.decode_clean(other.tokens), other.confidence) for other in found]
    return Explanation(context_pieces, steps, alternatives)


def _step(
    tokenizer: Tokenizer, context: list[str], chosen: int, probabilities: torch.Tensor, attention: torch.Tensor
) -> Step:
    """One reply piece: probabilities (vocab,) of the step, attention (src_len,) over the context."""
    weights, places = attention.topk(min(ATTENDED, len(context)))
    attended = [(context[place], weight) for weight, place in zip(weights.tolist(), places.tolist(), strict=True)]
    likelihoods, candidates = probabilities.topk(CONSIDERED + 1)
    rivals = [
        (candidate, p)
        for p, candidate in zip(likelihoods.tolist(), candidates.tolist(), strict=True)
        if candidate != chosen
    ][:CONSIDERED]
    names = tokenizer.pieces([chosen] + [candidate for candidate, _ in rivals])
    considered = [(name, p) for name, (_, p) in zip(names[1:], rivals, strict=True)]
    return Step(names[0], float(probabilities[chosen]), attended, considered)


def render(explanation: Explanation) -> str:
    """The explanation as a plain-text table (one row per reply piece), then the alternative replies."""
    rows = [("piece", "p", "looked at (attention)", "also likely (p)")]
    for step in explanation.steps:
        attended = "  ".join(f"{_show(piece)} {weight:.2f}" for piece, weight in step.attended)
        considered = "  ".join(f"{_show(piece)} {p:.2f}" for piece, p in step.considered)
        rows.append((_show(step.piece), f"{step.probability:.2f}", attended, considered))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        "  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]), row[3]]).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.append("")
    lines.append("Replies a beam search finds for this context (confidence):")
    lines.extend(f"  {confidence:.2f}  {text or '(empty)'}" for text, confidence in explanation.alternatives)
    return "\n".join(lines)


def _show(piece: str) -> str:
    """A piece as a reader sees it: sentencepiece's word-start mark as a visible ``_``, the end as </s>."""
    return piece.replace("\u2581", "_") if piece else "(empty)"
