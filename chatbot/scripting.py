"""Scripting: the model and its beam search compiled with TorchScript into one file that runs without this package.

``chatbot export-model`` writes it. ``torch.jit.load(FILE)(source)`` takes one context's piece ids, shape (1, len),
and returns the n-best replies (piece ids, without bos/eos) and their scores. It follows the decoding settings of
the model directory: greedy or beam search, length penalty, n-gram blocking, min/max length. The sentencepiece model
travels inside, as the buffer ``tokenizer_model`` (its bytes), with ``max_source_tokens``, so a C++ or Python host
needs only torch and sentencepiece.

TorchScript compiles a subset of Python, so this file restates the forward pass of model/ and the search of
search/beam.py in that subset: no dataclasses, types fixed at compile time, a GRU or an LSTM behind one wrapper. A
test holds its replies equal to the eager model's.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import Tensor, nn

from chatbot.config import DecodeConfig
from chatbot.model.encoder import reverse_within_length
from chatbot.model.seq2seq import Seq2Seq
from chatbot.text.tokenizer import Tokenizer


class _Recurrent(nn.Module):
    """A GRU or LSTM with its state as one tensor (layers, batch, state_size), as model/rnn.py keeps it."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.is_lstm: bool = getattr(rnn, "mode", "") == "LSTM"
        self.gru = rnn if not self.is_lstm else None
        self.lstm = rnn if self.is_lstm else None

    def forward(self, inputs: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.lstm is not None:
            if state is None:
                outputs, (hidden, cell) = self.lstm(inputs)
            else:
                hidden, cell = state.chunk(2, dim=-1)
                outputs, (hidden, cell) = self.lstm(inputs, (hidden.contiguous(), cell.contiguous()))
            return outputs, torch.cat([hidden, cell], dim=-1)
        assert self.gru is not None
        outputs, new_state = self.gru(inputs, state)
        result: tuple[Tensor, Tensor] = (outputs, new_state)
        return result


class _EncoderLayer(nn.Module):
    """One encoder layer: the forward RNN and, when bidirectional, the backward one over rows reversed in length."""

    def __init__(self, ahead: nn.Module, behind: nn.Module | None) -> None:
        super().__init__()
        self.ahead = _Recurrent(ahead)
        self.behind = _Recurrent(behind) if behind is not None else None

    def forward(self, states: Tensor, lengths: Tensor) -> Tensor:
        outputs: Tensor = self.ahead(states, None)[0]
        if self.behind is not None:
            back, _ = self.behind(reverse_within_length(states, lengths), None)
            outputs = torch.cat([outputs, reverse_within_length(back, lengths)], dim=-1)
        return outputs


class ScriptedSearch(nn.Module):
    """The eager model's weights, restated for TorchScript, with beam search (greedy: width 1) as ``forward``."""

    def __init__(self, model: Seq2Seq, decode: DecodeConfig, tokenizer: Tokenizer, max_source_tokens: int) -> None:
        super().__init__()
        bos_id, eos_id = tokenizer.bos_id, tokenizer.eos_id
        self.max_source_tokens = max_source_tokens
        config, encoder, decoder = model.config, model.encoder, model.decoder
        self.pad_id, self.bos_id, self.eos_id, self.hidden_size = config.pad_id, bos_id, eos_id, config.hidden_size
        self.decoder_layers, self.attend_first = config.decoder_layers, decoder.attend_first
        self.source_embedding, self.target_embedding = encoder.embedding, decoder.embedding
        behind: list[nn.Module | None] = [*encoder.backward_layers] or [None] * len(encoder.forward_layers)
        self.layers = nn.ModuleList(_EncoderLayer(a, b) for a, b in zip(encoder.forward_layers, behind, strict=True))
        self.join_directions, self.bridge = encoder.join_directions, encoder.bridge
        self.rnn, self.attention = _Recurrent(decoder.rnn), decoder.attention
        self.combine, self.output = decoder.combine, decoder.output
        width = 1 if decode.strategy == "greedy" else decode.beam_size
        self.width, self.n_best = width, min(decode.n_best, width)
        self.max_length, self.min_length, self.alpha = decode.max_length, decode.min_length, decode.length_penalty
        self.block_ngram, self.block_context_ngram = decode.block_ngram, decode.block_context_ngram
        self.block_repeat = decode.block_repeat
        self.register_buffer("tokenizer_model", torch.tensor(list(tokenizer.model_proto), dtype=torch.uint8))

    def encode(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """source (1, src_len) -> memory (1, src_len, hidden) and the decoder's first state (layers, 1, state)."""
        lengths = (source != self.pad_id).sum(dim=1).clamp(min=1)
        states = self.source_embedding(source)
        for layer in self.layers:
            states = layer(states, lengths)
        memory = torch.tanh(self.join_directions(states))
        rows = torch.arange(states.size(0))
        summary = states[rows, lengths - 1, : self.hidden_size]
        if states.size(-1) > self.hidden_size:
            summary = torch.cat([summary, states[:, 0, self.hidden_size :]], dim=-1)
        initial = torch.tanh(self.bridge(summary))
        return memory, initial.unsqueeze(0).repeat(self.decoder_layers, 1, 1).contiguous()

    def step(
        self, previous: Tensor, state: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """previous (rows, 1) -> log-probabilities of the next piece (rows, vocab) and the new state."""
        embedded = self.target_embedding(previous)
        if self.attend_first:
            query = state[-1, :, : self.hidden_size].unsqueeze(1)
            context, _ = self.attention(query, keys, memory, mask)
            outputs, state = self.rnn(torch.cat([embedded, context], dim=-1), state)
        else:
            outputs, state = self.rnn(embedded, state)
            context, _ = self.attention(outputs, keys, memory, mask)
        logits = self.output(torch.tanh(self.combine(torch.cat([outputs, context], dim=-1))))
        return torch.log_softmax(logits[:, -1].float(), dim=-1), state

    def penalty(self, length: int) -> float:
        """search/beam.py's length_penalty."""
        result: float = ((5.0 + length) / 6.0) ** self.alpha
        return result

    def forward(self, source: Tensor) -> tuple[list[list[int]], list[float]]:
        """source (1, src_len) of piece ids -> the n-best replies (ids without bos/eos) and their scores."""
        width = self.width
        memory, state = self.encode(source)
        keys, mask = self.attention.keys(memory), source != self.pad_id
        rows = torch.zeros(width, dtype=torch.long)
        memory, keys, mask, state = memory[rows], keys[rows], mask[rows], state[:, rows]
        scores = torch.full((width,), float("-inf"))
        scores[0] = 0.0
        replies: list[list[int]] = []
        for _ in range(width):
            replies.append(torch.jit.annotate(list[int], []))  # type: ignore[no-untyped-call]
        done_tokens: list[list[int]] = []
        done_scores: list[float] = []
        context: list[int] = source[0][source[0] != self.pad_id].tolist()
        previous = torch.full((width, 1), self.bos_id, dtype=torch.long)
        ended = False
        for step in range(self.max_length):
            log_probs, state = self.step(previous, state, keys, memory, mask)
            log_probs = self.constrain(log_probs, replies, context, step)
            chosen = self.choose(scores.unsqueeze(1) + log_probs, replies, done_tokens, done_scores, step)
            if len(chosen) == 0:
                ended = True
                break
            keep = torch.tensor([beam for beam, _, _ in chosen], dtype=torch.long)
            replies = [replies[beam] + [token] for beam, token, _ in chosen]
            scores = torch.tensor([score for _, _, score in chosen])
            state, keys, memory, mask = state[:, keep], keys[keep], memory[keep], mask[keep]
            previous = torch.tensor([token for _, token, _ in chosen], dtype=torch.long).unsqueeze(1)
        if not ended:
            for row in range(len(replies)):
                score = float(scores[row])
                if score > float("-inf"):
                    done_tokens.append(replies[row])
                    done_scores.append(score / self.penalty(len(replies[row])))
        order: list[int] = torch.sort(torch.tensor(done_scores), descending=True, stable=True).indices.tolist()
        best = order[: self.n_best]
        return [done_tokens[i] for i in best], [done_scores[i] for i in best]

    def constrain(self, log_probs: Tensor, replies: list[list[int]], context: list[int], step: int) -> Tensor:
        """search/constraints.py: no padding or bos, no end before min_length, n-gram and repeat blocking."""
        log_probs[:, self.pad_id] = float("-inf")
        log_probs[:, self.bos_id] = float("-inf")
        if step < self.min_length:
            log_probs[:, self.eos_id] = float("-inf")
        for row in range(len(replies)):
            banned: list[int] = []
            if self.block_ngram > 0:
                banned += self.banned(replies[row], replies[row], self.block_ngram)
            if self.block_context_ngram > 0:
                banned += self.banned(replies[row], context, self.block_context_ngram)
            if self.block_repeat:
                banned += self.repeats(replies[row])
            for token in banned:
                log_probs[row, token] = float("-inf")
        stuck = torch.isinf(log_probs).all(dim=-1)
        log_probs[stuck, self.eos_id] = 0.0
        return log_probs

    def banned(self, prefix: list[int], tokens: list[int], n: int) -> list[int]:
        """The pieces that would complete, after ``prefix``, an n-gram that occurs in ``tokens``."""
        found: list[int] = []
        if len(prefix) < n - 1:
            return found
        key = prefix[len(prefix) - n + 1 :]
        for start in range(len(tokens) - n + 1):
            if tokens[start : start + n - 1] == key:
                found.append(tokens[start + n - 1])
        return found

    def repeats(self, reply: list[int]) -> list[int]:
        """The pieces that would end ``reply`` with a stretch said twice in a row, or one piece three times."""
        n = len(reply)
        found: list[int] = []
        if n >= 2 and reply[n - 1] == reply[n - 2]:
            found.append(reply[n - 1])
        for size in range(2, (n + 1) // 2 + 1):
            if reply[n - size + 1 :] == reply[n - 2 * size + 1 : n - size]:
                found.append(reply[n - size])
        return found

    def choose(
        self,
        totals: Tensor,
        replies: list[list[int]],
        done_tokens: list[list[int]],
        done_scores: list[float],
        step: int,
    ) -> list[tuple[int, int, float]]:
        """search/beam.py's step for one context: finish the candidates that end, keep ``width`` that go on; an
        empty list when the context is done."""
        vocab, width = totals.size(1), self.width
        top_scores, top_ids = totals.view(1, -1).topk(min(2 * width, width * vocab), dim=1)
        chosen: list[tuple[int, int, float]] = []
        candidate_scores: list[float] = top_scores[0].tolist()
        candidate_ids: list[int] = top_ids[0].tolist()
        for score, flat in zip(candidate_scores, candidate_ids):  # noqa: B905 (TorchScript has no strict=)
            if score == float("-inf") or len(chosen) == width:
                break
            beam, token = flat // vocab, flat % vocab
            if token == self.eos_id:
                done_tokens.append(replies[beam])
                done_scores.append(score / self.penalty(len(replies[beam]) + 1))
            else:
                chosen.append((beam, token, score))
        if len(chosen) == 0 or self.is_done(done_scores, chosen[0][2], step):
            return []
        while len(chosen) < width:
            chosen.append((0, self.eos_id, float("-inf")))
        return chosen

    def is_done(self, done_scores: list[float], best_alive: float, step: int) -> bool:
        if len(done_scores) >= self.width:
            return True
        if len(done_scores) < self.n_best:
            return False
        ranked = list(done_scores)
        ranked.sort(reverse=True)
        return best_alive / self.penalty(step + 2) < ranked[self.n_best - 1]


def script(
    model: Seq2Seq, decode: DecodeConfig, tokenizer: Tokenizer, max_source_tokens: int
) -> torch.jit.ScriptModule:
    """The TorchScript module of ``model`` (fp32, eval mode) searching as ``decode`` says (sampling is not
    exported: greedy then), carrying ``tokenizer`` and the context cap ``max_source_tokens``."""
    if decode.strategy == "sample":
        decode = dataclasses.replace(decode, strategy="greedy")
    module = ScriptedSearch(model.cpu().eval(), decode, tokenizer, max_source_tokens).eval()
    with warnings.catch_warnings():
        # torch 2.13 calls TorchScript deprecated in favour of torch.export, which cannot express a search loop
        # whose length depends on the data; TorchScript still compiles and loads it, from Python or C++.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        scripted: torch.jit.ScriptModule = torch.jit.script(module)
    return scripted
