"""Beam search, batched: every context's ``beam_size`` partial replies are rows of one batch.

Each step scores every (beam, next piece) pair of a context, keeps the ``beam_size`` best that do not end, and moves
those that end (with eos) to the context's finished list, scored by log-probability / ((5 + length) / 6) ** alpha
(Wu et al. 2016), so longer replies are not punished just for having more pieces. A context is done when it has
``beam_size`` finished replies, or when its best unfinished beam can no longer beat the worst of the ``n_best``
finished ones; done contexts leave the batch, so the rest decode faster. Greedy search is beam search of width 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chatbot.config import DecodeConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.search.constraints import apply_constraints, context_indexes
from chatbot.search.hypothesis import Hypothesis


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha; 1 for alpha 0."""
    return float(((5 + length) / 6) ** alpha)


@dataclass(frozen=True)
class Candidate:
    beam: int  # the row, within its context's group, this candidate extends
    token: int
    score: float  # total log-probability


@torch.no_grad()
def beam_search(
    model: Seq2Seq, source: torch.Tensor, bos_id: int, eos_id: int, config: DecodeConfig
) -> list[list[Hypothesis]]:
    """Decode source (batch, src_len) into up to ``n_best`` hypotheses per row, best first."""
    batch, width = source.size(0), config.beam_size
    contexts = context_indexes(source, model.config.pad_id, config)
    never = (model.config.pad_id, bos_id)  # pieces no reply may contain
    rows = torch.arange(batch, device=source.device).repeat_interleave(width)  # (batch*width,): each row's context
    encoded = model.encode(source).select(rows)
    state = encoded.hidden
    scores = torch.full((batch, width), float("-inf"), device=source.device)
    scores[:, 0] = 0.0  # one live beam per context at first, so the first step does not pick the same piece K times
    scores = scores.flatten()  # (rows,)
    replies: list[list[int]] = [[] for _ in range(batch * width)]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    alive = list(range(batch))  # the context of each group of ``width`` rows still searching
    previous = torch.full((batch * width, 1), bos_id, device=source.device)
    for step in range(config.max_length):
        logits, state, _ = model.decode(previous, state, encoded)  # (rows, 1, vocab)
        log_probs = torch.log_softmax(logits[:, -1].float(), dim=-1)
        row_contexts = [contexts[alive[row // width]] for row in range(len(replies))]
        log_probs = apply_constraints(log_probs, replies, row_contexts, step, eos_id, config, never)
        groups = _step_groups(scores.unsqueeze(1) + log_probs, width, alive, replies, finished, eos_id, config, step)
        if not groups:
            return [_best(hypotheses, config) for hypotheses in finished]
        keep = torch.tensor([g * width + c.beam for g, chosen in groups for c in chosen], device=source.device)
        tokens = [c.token for _, chosen in groups for c in chosen]
        replies = [replies[int(row)] + [token] for row, token in zip(keep.tolist(), tokens, strict=True)]
        scores = torch.tensor([c.score for _, chosen in groups for c in chosen], device=source.device)
        state = state[:, keep]
        if len(groups) < len(alive):  # a context is done: its rows leave the batch
            # Every row of a group holds the same encoded context, so whole groups are selected, not beams.
            encoded = encoded.select(
                torch.tensor([g * width + i for g, _ in groups for i in range(width)], device=source.device)
            )
        alive = [alive[g] for g, _ in groups]
        previous = torch.tensor(tokens, device=source.device).unsqueeze(1)
    for row, reply in enumerate(replies):  # max_length reached: the unfinished beams count as they are
        score = float(scores[row])
        if score > float("-inf"):
            penalty = length_penalty(len(reply), config.length_penalty)
            finished[alive[row // width]].append(Hypothesis(reply, score, score / penalty))
    return [_best(hypotheses, config) for hypotheses in finished]


def _step_groups(
    totals: torch.Tensor,
    width: int,
    alive: list[int],
    replies: list[list[int]],
    finished: list[list[Hypothesis]],
    eos_id: int,
    config: DecodeConfig,
    step: int,
) -> list[tuple[int, list[Candidate]]]:
    """totals (rows, vocab): each beam's score plus each next piece's log-probability. Moves ending candidates to
    ``finished`` and returns, for each context that goes on, its group index and its ``width`` next beams."""
    vocab = totals.size(1)
    top_scores, top_ids = totals.view(len(alive), width * vocab).topk(min(2 * width, width * vocab), dim=1)
    groups = []
    for group, (scores_row, ids_row) in enumerate(zip(top_scores.tolist(), top_ids.tolist(), strict=True)):
        context, chosen = alive[group], list[Candidate]()
        for score, flat in zip(scores_row, ids_row, strict=True):
            if score == float("-inf") or len(chosen) == width:
                break
            beam, token = divmod(flat, vocab)
            if token == eos_id:
                reply = replies[group * width + beam]
                penalty = length_penalty(len(reply) + 1, config.length_penalty)
                finished[context].append(Hypothesis(reply, score, score / penalty))
            else:
                chosen.append(Candidate(beam, token, score))
        if chosen and not _done(finished[context], chosen[0].score, step, width, config):
            chosen += [Candidate(0, eos_id, float("-inf"))] * (width - len(chosen))  # dead rows keep shapes even
            groups.append((group, chosen))
    return groups


def _done(finished: list[Hypothesis], best_alive: float, step: int, width: int, config: DecodeConfig) -> bool:
    """Whether a context can stop: ``width`` replies finished, or its best live beam (scored as if it ended at the
    next step) cannot beat the worst of the ``n_best`` best finished ones."""
    if len(finished) >= width:
        return True
    needed = min(config.n_best, width)
    if len(finished) < needed:
        return False
    worst_kept = sorted((h.score for h in finished), reverse=True)[needed - 1]
    return best_alive / length_penalty(step + 2, config.length_penalty) < worst_kept


def _best(hypotheses: list[Hypothesis], config: DecodeConfig) -> list[Hypothesis]:
    return sorted(hypotheses, key=lambda h: h.score, reverse=True)[: min(config.n_best, config.beam_size)]
