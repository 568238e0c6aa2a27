"""Search: turning a trained Seq2Seq into replies — greedy, batched beam search, and sampling, all under the same
constraints (minimum length, n-gram blocking). ``generate`` picks the strategy ``DecodeConfig`` names.

Modules: ``beam.py`` (beam search; greedy is width 1), ``sampling.py`` (temperature, top-k, top-p),
``constraints.py`` (what no strategy may choose), ``hypothesis.py`` (a reply and its scores).
"""

from __future__ import annotations

import dataclasses

import torch

from chatbot.config import DecodeConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.search.beam import beam_search
from chatbot.search.hypothesis import Hypothesis
from chatbot.search.sampling import sample

__all__ = ["Hypothesis", "beam_search", "generate", "greedy_search", "sample"]


def generate(
    model: Seq2Seq,
    source: torch.Tensor,
    bos_id: int,
    eos_id: int,
    config: DecodeConfig,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """Hypotheses for each row of source (batch, src_len), best first, by ``config.strategy``."""
    if config.strategy == "sample":
        return sample(model, source, bos_id, eos_id, config, generator)
    if config.strategy == "greedy":
        config = dataclasses.replace(config, beam_size=1, n_best=1)
    return beam_search(model, source, bos_id, eos_id, config)


def greedy_search(
    model: Seq2Seq, source: torch.Tensor, bos_id: int, eos_id: int, config: DecodeConfig
) -> list[list[int]]:
    """The likeliest-piece-at-each-step reply of each row, as ids without bos/eos."""
    greedy = dataclasses.replace(config, strategy="greedy")
    return [hypotheses[0].tokens for hypotheses in generate(model, source, bos_id, eos_id, greedy)]
