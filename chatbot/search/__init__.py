"""Search: turning a trained Seq2Seq into replies — greedy, batched beam search, and sampling, all under the same
constraints (minimum length, n-gram blocking). ``generate`` picks the strategy ``DecodeConfig`` names.

Modules: ``beam.py`` (beam search; greedy is width 1), ``sampling.py`` (temperature, top-k, top-p),
``constraints.py`` (what no strategy may choose), ``mmi.py`` (anti-LM reranking of the n-best list),
``hypothesis.py`` (a reply and its scores).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from chatbot.config import DecodeConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.search.beam import beam_search
from chatbot.search.hypothesis import Hypothesis
from chatbot.search.mmi import rerank
from chatbot.search.sampling import sample

__all__ = ["Hypothesis", "beam_search", "generate", "greedy_search", "sample"]


def generate(
    model: Seq2Seq,
    source: torch.Tensor,
    bos_id: int,
    eos_id: int,
    config: DecodeConfig,
    generator: torch.Generator | None = None,
    neutral: Sequence[int] = (),
) -> list[list[Hypothesis]]:
    """Hypotheses for each row of source (batch, src_len), best first, by ``config.strategy``; with
    ``config.mmi_weight`` the n-best lists are reranked by MMI anti-LM against the ``neutral`` context's ids."""
    if config.strategy == "sample":
        found = sample(model, source, bos_id, eos_id, config, generator)
    else:
        width = 1 if config.strategy == "greedy" else config.beam_size
        found = beam_search(model, source, bos_id, eos_id, dataclasses.replace(config, beam_size=width))
    if config.mmi_weight and neutral:
        found = [rerank(model, hypotheses, neutral, bos_id, eos_id, config) for hypotheses in found]
    return found


def greedy_search(
    model: Seq2Seq, source: torch.Tensor, bos_id: int, eos_id: int, config: DecodeConfig
) -> list[list[int]]:
    """The likeliest-piece-at-each-step reply of each row, as ids without bos/eos."""
    greedy = dataclasses.replace(config, strategy="greedy", mmi_weight=0.0)
    return [hypotheses[0].tokens for hypotheses in generate(model, source, bos_id, eos_id, greedy)]
