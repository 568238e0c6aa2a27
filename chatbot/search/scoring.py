"""Scoring: how likely the model finds given replies — one teacher-forced pass over a batch of them, the way the
reply candidates (candidates.py) and MMI's context-free prefixes (mmi.py) are weighed."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from chatbot.model.seq2seq import Encoded, Seq2Seq
from chatbot.text.batching import pad


@torch.no_grad()
def target_log_probs(
    model: Seq2Seq, encoded: Encoded, rows: Sequence[int], targets: Sequence[Sequence[int]], bos_id: int
) -> list[float]:
    """log p(target | context) for each target: the sum of its pieces' log-probabilities, teacher-forced after
    bos, given row ``rows[i]`` of the ``encoded`` contexts (several targets may share one context row).

    A target that should end includes eos; a target cut short (a prefix) does not."""
    pad_id = model.config.pad_id
    device = encoded.memory.device
    target_out = pad(targets, pad_id).to(device)  # (targets, tgt_len)
    target_in = pad([[bos_id, *target[:-1]] for target in targets], pad_id).to(device)
    chosen = encoded.select(torch.tensor(list(rows), dtype=torch.long, device=device))
    keep = target_out != pad_id  # the output layer, the largest, skips the padding
    logits, _, _ = model.decode(target_in, chosen.hidden, chosen, keep)  # (kept, vocab)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(1, target_out[keep].unsqueeze(1)).squeeze(1)  # (kept,)
    totals = torch.zeros(len(targets), device=device).index_add_(0, keep.nonzero()[:, 0], picked)
    return totals.tolist()
