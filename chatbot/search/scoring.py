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
    target_out = pad(targets, pad_id)  # (targets, tgt_len)
    target_in = pad([[bos_id, *target[:-1]] for target in targets], pad_id)
    chosen = encoded.select(torch.tensor(list(rows), dtype=torch.long, device=encoded.memory.device))
    logits, _, _ = model.decode(target_in.to(encoded.memory.device), chosen.hidden, chosen)
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (targets, tgt_len, vocab)
    picked = log_probs.gather(2, target_out.to(logits.device).unsqueeze(2)).squeeze(2)  # (targets, tgt_len)
    return (picked * (target_out != pad_id).to(picked.device)).sum(dim=1).tolist()
