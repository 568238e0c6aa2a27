"""Search: turning a trained Seq2Seq into replies. Greedy decoding, batched, stopping each row at end-of-sequence."""

from __future__ import annotations

import torch

from chatbot.config import DecodeConfig
from chatbot.model.seq2seq import Seq2Seq


@torch.no_grad()
def greedy_search(
    model: Seq2Seq, source: torch.Tensor, bos_id: int, eos_id: int, config: DecodeConfig
) -> list[list[int]]:
    """Decode source (batch, src_len) one piece at a time, always taking the most likely piece.

    Returns one list of ids per row, without bos/eos. End-of-sequence is forbidden before ``min_length`` pieces so a
    reply is never empty; finished rows leave the batch so the rest decode faster.
    """
    encoded = model.encode(source)
    batch = source.size(0)
    replies: list[list[int]] = [[] for _ in range(batch)]
    active = torch.arange(batch, device=source.device)  # original row of each still-decoding row
    previous = torch.full((batch, 1), bos_id, dtype=torch.long, device=source.device)  # (active, 1)
    hidden = encoded.hidden
    for step in range(config.max_length):
        logits, hidden, _ = model.decode(previous, hidden, encoded)  # (active, 1, vocab)
        scores = logits[:, -1]
        if step < config.min_length:
            scores[:, eos_id] = float("-inf")
        chosen = scores.argmax(dim=-1)  # (active,)
        for row, token in zip(active.tolist(), chosen.tolist(), strict=True):
            if token != eos_id:
                replies[row].append(token)
        keep = chosen != eos_id
        if not bool(keep.any()):
            break
        active, previous, hidden = active[keep], chosen[keep].unsqueeze(1), hidden[:, keep]
        encoded = encoded.select(keep.nonzero().squeeze(1))
    return replies
