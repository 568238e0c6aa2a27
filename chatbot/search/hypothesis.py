"""Hypothesis: one candidate reply out of a search, with the scores that ranked it."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Hypothesis:
    """A reply as piece ids (without bos/eos), its total log-probability under the model (eos included when the
    reply ended), and the score the search ranked it by (log-probability, length-normalised in beam search)."""

    tokens: list[int]
    log_prob: float
    score: float

    @property
    def confidence(self) -> float:
        """The geometric-mean probability per piece, in (0, 1]: low values mark replies the model was unsure of."""
        return math.exp(self.log_prob / max(len(self.tokens) + 1, 1))
