"""ResponseGenerator: a model directory in, replies out — the Generator the dialogue manager uses.

Reading ``config.json`` is cheap and happens at construction, so a broken path fails at start; the weights load
on the first reply (or ``load()``) and stay cached, so a REPL or bot starts quickly. Each reply is decoded with
the user's DecodeSettings laid over the model's decode config, and comes back with what the dialogue manager
stores as its provenance: the model's name and weights hash, the decode config used, the confidence, and where
the reply came from. With ``candidates`` retrieved or both, the model's reply index (reply_index.py) opens with the
weights, and the reply is the model's choice among its n-best and the retrieved replies (candidates.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from chatbot.candidates import GENERATED, Candidate, Choice, choose, pool, scored
from chatbot.config import ContextConfig, DecodeConfig, from_dict
from chatbot.dialogue.generator import Generated
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Turn
from chatbot.errors import ModelError
from chatbot.explanation import explain, render
from chatbot.quantization import quantize
from chatbot.reply_index import FILE_NAME, ReplyIndex, ReplyVectors, Retrieved
from chatbot.search import Hypothesis, generate
from chatbot.text.batching import pad
from chatbot.text.pairs import OTHER_TURN, history_context, last_turn
from chatbot.text.tokenizer import Tokenizer
from chatbot.training import checkpoint, config_json

HASH_CHARS = 12  # of the weights' SHA-256: enough to tell models apart, short enough to read


class ResponseGenerator:
    """Generates replies with the model in ``model_dir``, decoding as ``decode`` says (default: as trained), with
    int8 weights when ``quantized`` (quantization.py)."""

    def __init__(self, model_dir: Path, decode: DecodeConfig | None = None, quantized: bool = False) -> None:
        self.model_dir = model_dir
        self.quantized = quantized
        config = config_json.read_config(model_dir)
        self.context = from_dict(ContextConfig, config.get("context", {}))
        self.decode_config = decode or from_dict(DecodeConfig, config.get("decode", {}))
        config_json.check_reply_index(model_dir, self.decode_config)
        self._bundle: checkpoint.ModelBundle | None = None
        self._index: Future[ReplyIndex] | None = None
        self._model_name = ""
        self._lock = threading.Lock()

    @property
    def history_turns(self) -> int:
        return self.context.history_turns

    @property
    def default_settings(self) -> DecodeSettings:
        config = self.decode_config
        return DecodeSettings(config.strategy, config.beam_size, config.temperature, config.top_p)

    @property
    def model_name(self) -> str:
        """The model's directory name and the start of its weights' SHA-256 (``int8`` added when quantized)."""
        self.load()
        return self._model_name

    def load(self) -> checkpoint.ModelBundle:
        """Load the weights once; later calls return the cached bundle."""
        with self._lock:
            if self._bundle is None:
                bundle = checkpoint.load(self.model_dir)
                self._bundle = dataclasses.replace(bundle, model=quantize(bundle.model)) if self.quantized else bundle
                if (self.model_dir / FILE_NAME).is_file():  # its digest was checked with the weights
                    self._index = _open_in_background(self.model_dir / FILE_NAME)
                digest = hashlib.sha256((self.model_dir / "model.pt").read_bytes()).hexdigest()[:HASH_CHARS]
                self._model_name = f"{self.model_dir.resolve().name}@{digest}" + ("+int8" if self.quantized else "")
            return self._bundle

    def decode_for(self, settings: DecodeSettings) -> DecodeConfig:
        """The model's decode config with a user's settings laid over it."""
        chosen = {"strategy" if name == "mode" else name: value for name, value in settings.to_json().items()}
        return dataclasses.replace(self.decode_config, **chosen)

    def reply(self, history: Sequence[Turn], settings: DecodeSettings | None = None) -> Generated:
        """The reply to a conversation's recent turns (oldest first), decoded with ``settings`` (default: the
        model's own). Its text is None when its confidence (geometric-mean piece probability) is below the decode
        config's ``min_confidence``."""
        return self.replies([history], self.decode_for(settings or DecodeSettings()))[0]

    def replies(self, histories: Sequence[Sequence[Turn]], config: DecodeConfig) -> list[Generated]:
        """Replies to several conversations at once, decoded as one batch with ``config`` (micro_batch.py)."""
        contexts = [history_context(history, self.context.history_turns) for history in histories]
        choices = self.choices(contexts, config)  # loads the weights, and with them the model's name
        settings, model, tokenizer = dataclasses.asdict(config), self._model_name, self.load().tokenizer
        return [
            Generated(
                tokenizer.decode_clean(choice.tokens) if choice.confidence >= config.min_confidence else None,
                choice.confidence,
                model,
                settings,
                choice.source,
            )
            for choice in choices
        ]

    def explain(self, history: Sequence[Turn], reply: str) -> str:
        """Why the model answered ``history`` with ``reply``: a table of what it attended to and weighed at each
        piece, and the replies a beam finds (explanation.py)."""
        bundle = self.load()
        source = self._source_ids(bundle.tokenizer, history_context(history, self.context.history_turns))
        return render(explain(bundle.model, bundle.tokenizer, source, reply, self.decode_config))

    def _source_ids(self, tokenizer: Tokenizer, context: str) -> list[int]:
        """What the model reads of a context text: its last ``max_source_tokens`` piece ids (unk for none)."""
        return tokenizer.encode(context)[-self.context.max_source_tokens :] or [tokenizer.unk_id]

    def generate(self, contexts: Sequence[str]) -> list[str]:
        """Replies for several context texts at once, decoded as one batch."""
        return [text for text, _ in self.generate_scored(contexts)]

    def generate_scored(self, contexts: Sequence[str], config: DecodeConfig | None = None) -> list[tuple[str, float]]:
        """Replies for several context texts at once, decoded as one batch (with ``config``, default the
        generator's), each with its confidence."""
        tokenizer = self.load().tokenizer
        return [(tokenizer.decode_clean(c.tokens), c.confidence) for c in self.choices(contexts, config)]

    def choices(self, contexts: Sequence[str], config: DecodeConfig | None = None) -> list[Choice]:
        """The chosen reply of each context text (as piece ids, with its score, confidence and source): the
        search's best, or with ``config.candidates`` retrieved or both the model's choice among candidates."""
        tokenizer = self.load().tokenizer
        rows = [self._source_ids(tokenizer, text) for text in contexts]
        return self.choices_for(rows, [last_turn(text) for text in contexts], config)

    def choices_for(
        self,
        rows: Sequence[list[int]],
        messages: Sequence[str],
        config: DecodeConfig | None = None,
        draws: torch.Generator | None = None,
    ) -> list[Choice]:
        """``choices`` for contexts already as piece ids (``rows``) with their newest turns' text (``messages``,
        what the reply index is searched by); sampling draws from ``draws`` (default: torch's global generator)."""
        config = config or self.decode_config
        bundle = self.load()
        tokenizer, limit = bundle.tokenizer, self.context.max_target_tokens
        retrieved = self._retrieve(messages, config)
        retrieved_ids = [[tokenizer.encode(each.text) for each in found] for found in retrieved]
        usable = [pool([], *each, limit, config.min_length) for each in zip(retrieved, retrieved_ids, strict=True)]
        # Retrieved alone still searches for a context that retrieves nothing it can use.
        searched = [i for i, found in enumerate(usable) if config.candidates != "retrieved" or not found]
        neutral = tokenizer.encode(OTHER_TURN)  # a context that says nothing: MMI's language model
        with torch.inference_mode():
            hypotheses = self._search(rows, searched, config, neutral, draws)
            if config.candidates == GENERATED:
                return [Choice(h[0].tokens, GENERATED, h[0].score, h[0].confidence) for h in hypotheses]
            # A context that was not searched has the retrieved candidates alone: those pooled above.
            pools = [
                pool(generated, retrieved[i], retrieved_ids[i], limit, config.min_length) if generated else usable[i]
                for i, generated in enumerate(hypotheses)
            ]
            if config.semantic_weight:
                pools = self._with_similarity([tokenizer.encode(message) for message in messages], pools)
            chosen = choose(scored(bundle.model, rows, pools, neutral, tokenizer.bos_id, tokenizer.eos_id, config))
        return [c if c is not None else Choice([], GENERATED, 0.0, 0.0) for c in chosen]

    def _search(
        self,
        rows: Sequence[list[int]],
        searched: Sequence[int],
        config: DecodeConfig,
        neutral: list[int],
        draws: torch.Generator | None,
    ) -> list[list[Hypothesis]]:
        """The search's hypotheses for the rows numbered in ``searched`` (others: none), in one batch."""
        hypotheses: list[list[Hypothesis]] = [[] for _ in rows]
        if not searched:
            return hypotheses
        tokenizer = self.load().tokenizer
        # Pooled candidates are all rescored (MMI included) by scored(): the search need not rerank its n-best.
        search = config if config.candidates == GENERATED else dataclasses.replace(config, mmi_weight=0.0)
        source = pad([rows[i] for i in searched], tokenizer.pad_id)
        found = generate(self.load().model, source, tokenizer.bos_id, tokenizer.eos_id, search, draws, neutral)
        for i, best in zip(searched, found, strict=True):
            hypotheses[i] = best
        return hypotheses

    def _with_similarity(self, messages: Sequence[list[int]], pools: list[list[Candidate]]) -> list[list[Candidate]]:
        """Each candidate with its cosine to its context's newest turn (``messages``: their piece ids, one per
        pool). A retrieved reply's vector is the encoder's, read from the reply index; the message and any
        generated reply are put on the same axes by the index's student of the encoder (semantic.PieceVectors)."""
        vectors = self._reply_vectors()
        message_vectors = vectors.pieces.encode(messages)
        written_vectors = iter(vectors.pieces.encode([c.tokens for found in pools for c in found if c.row < 0]))
        return [
            [
                dataclasses.replace(
                    c,
                    similarity=float(
                        message_vectors[i] @ (vectors.replies[c.row] if c.row >= 0 else next(written_vectors))
                    ),
                )
                for c in found
            ]
            for i, found in enumerate(pools)
        ]

    def _reply_vectors(self) -> ReplyVectors:
        index = self._index.result() if self._index is not None else None
        if index is None or index.vectors is None:
            raise ModelError(
                f"{self.model_dir}: --semantic-weight needs a reply index with sentence vectors (format 4): "
                f"rebuild it with `chatbot index DATA --model {self.model_dir}`"
            )
        return index.vectors

    def _retrieve(self, messages: Sequence[str], config: DecodeConfig) -> list[list[Retrieved]]:
        """The training replies closest to each message (none when candidates are generated only)."""
        if config.candidates == GENERATED or self._index is None:
            return [[] for _ in messages]
        index = self._index.result()  # waits for the opening, or raises what went wrong in it
        return [index.retrieve(message, config.retrieved, config.last_sentence_retrieved) for message in messages]


def _open_in_background(path: Path) -> Future[ReplyIndex]:
    """Open the reply index in a thread of its own: reading its replies, vectors and word index into memory takes
    most of a second, which a chat's first reply need not wait for."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reply-index")
    opening = executor.submit(ReplyIndex, path)
    executor.shutdown(wait=False)  # the submitted opening still runs; the thread ends with it
    return opening
