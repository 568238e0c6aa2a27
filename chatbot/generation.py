"""ResponseGenerator: a model directory in, replies out — the Generator the dialogue manager uses.

Reading ``config.json`` is cheap and happens at construction, so a broken path fails at start; the weights load
on the first reply (or ``load()``) and stay cached, so a REPL or bot starts quickly.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from chatbot.config import ContextConfig, DecodeConfig, from_dict
from chatbot.dialogue.types import Turn
from chatbot.quantization import quantize
from chatbot.search import generate
from chatbot.text.batching import pad
from chatbot.text.pairs import OTHER_TURN, history_context
from chatbot.training import checkpoint


class ResponseGenerator:
    """Generates replies with the model in ``model_dir``, decoding as ``decode`` says (default: as trained), with
    int8 weights when ``quantized`` (quantization.py)."""

    def __init__(self, model_dir: Path, decode: DecodeConfig | None = None, quantized: bool = False) -> None:
        self.model_dir = model_dir
        self.quantized = quantized
        config = checkpoint.read_config(model_dir)
        self.context = from_dict(ContextConfig, config.get("context", {}))
        self.decode_config = decode or from_dict(DecodeConfig, config.get("decode", {}))
        self._bundle: checkpoint.ModelBundle | None = None
        self._lock = threading.Lock()

    @property
    def history_turns(self) -> int:
        return self.context.history_turns

    def load(self) -> checkpoint.ModelBundle:
        """Load the weights once; later calls return the cached bundle."""
        with self._lock:
            if self._bundle is None:
                bundle = checkpoint.load(self.model_dir)
                self._bundle = dataclasses.replace(bundle, model=quantize(bundle.model)) if self.quantized else bundle
            return self._bundle

    def reply(self, history: Sequence[Turn]) -> str | None:
        """The reply to a conversation's recent turns (oldest first), or None when its confidence (geometric-mean
        piece probability) is below the decode config's ``min_confidence``."""
        text, confidence = self.generate_scored([history_context(history, self.context.history_turns)])[0]
        return text if confidence >= self.decode_config.min_confidence else None

    def generate(self, contexts: Sequence[str]) -> list[str]:
        """Replies for several context texts at once, decoded as one batch."""
        return [text for text, _ in self.generate_scored(contexts)]

    def generate_scored(self, contexts: Sequence[str]) -> list[tuple[str, float]]:
        """Replies for several context texts at once, decoded as one batch, each with its confidence."""
        bundle = self.load()
        tokenizer = bundle.tokenizer
        rows = [tokenizer.encode(text)[-self.context.max_source_tokens :] or [tokenizer.unk_id] for text in contexts]
        neutral = tokenizer.encode(OTHER_TURN)  # a context that says nothing: MMI's language model
        with torch.inference_mode():
            hypotheses = generate(
                bundle.model,
                pad(rows, tokenizer.pad_id),
                tokenizer.bos_id,
                tokenizer.eos_id,
                self.decode_config,
                neutral=neutral,
            )
        return [(" ".join(tokenizer.decode(best[0].tokens).split()), best[0].confidence) for best in hypotheses]
