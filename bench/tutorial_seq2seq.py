"""A tutorial-style attention seq2seq trainer: the design of the PyTorch chatbot tutorial, rewritten as a reference.

What it keeps from the tutorial, because that is what is being compared:
  - one embedding shared by the encoder and the decoder;
  - an encoder of a bidirectional ``nn.GRU`` over packed sequences whose two directions' outputs are summed, and
    whose final states (the first ``decoder_layers`` of them) start the decoder;
  - a Luong decoder run one target position per Python loop iteration: embedding -> GRU step -> ``general``
    attention over the encoder outputs (the key projection recomputed at every step, as the tutorial does) ->
    concat layer with tanh -> output projection; the loss is a masked NLL computed step by step;
  - Adam, gradient clipping, and plain fp32.
What it changes, so the comparison measures the design rather than a bug or a tuning choice: attention masks the
padding (the tutorial's does not), the loss is log-softmax + NLL (not softmax then ``-log``), the loss is the mean
per real target piece like the project's (the tutorial sums per-step means), and the learning rate and clip norm are
the caller's. It reads the project's ``Batch`` objects, so both trainers can see identical batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from chatbot.config import ModelConfig
from chatbot.text.batching import Batch


class TutorialEncoder(nn.Module):
    """Bidirectional GRU over packed rows; the two directions' outputs are summed into one vector per position."""

    def __init__(self, embedding: nn.Embedding, config: ModelConfig) -> None:
        super().__init__()
        self.embedding = embedding
        self.pad_id = config.pad_id
        self.rnn = nn.GRU(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.encoder_layers,
            dropout=config.dropout if config.encoder_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )

    def forward(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """source (batch, src_len) -> outputs (batch, src_len, hidden), final states (2 * layers, batch, hidden)."""
        lengths = (source != self.pad_id).sum(dim=1).clamp(min=1).cpu()  # packing wants lengths on the CPU
        packed = pack_padded_sequence(self.embedding(source), lengths, batch_first=True, enforce_sorted=False)
        packed_outputs, hidden = self.rnn(packed)
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=source.size(1))
        half = outputs.size(-1) // 2
        return outputs[..., :half] + outputs[..., half:], hidden  # (batch, src_len, hidden)


class GeneralAttention(nn.Module):
    """Luong's ``general`` score q·Wm, softmaxed over the real source positions."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(hidden_size, hidden_size)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """query (batch, 1, hidden), memory (batch, src_len, hidden), mask (batch, src_len) True at real tokens
        -> weights (batch, 1, src_len)."""
        energy = self.projection(memory)  # (batch, src_len, hidden); the tutorial recomputes it at every step
        scores = torch.sum(query * energy, dim=2)  # (batch, src_len)
        scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=1).unsqueeze(1)


class TutorialDecoder(nn.Module):
    """One target position at a time: GRU step, attention, concat layer, projection to log-probabilities."""

    def __init__(self, embedding: nn.Embedding, config: ModelConfig) -> None:
        super().__init__()
        self.embedding = embedding
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.rnn = nn.GRU(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.decoder_layers,
            dropout=config.dropout if config.decoder_layers > 1 else 0.0,
            batch_first=True,
        )
        self.attention = GeneralAttention(config.hidden_size)
        self.concat = nn.Linear(2 * config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(
        self, step_input: torch.Tensor, hidden: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """step_input (batch, 1) ids, hidden (layers, batch, hidden), memory (batch, src_len, hidden), mask
        (batch, src_len) -> log-probabilities (batch, vocab) and the new hidden (layers, batch, hidden)."""
        embedded = self.embedding_dropout(self.embedding(step_input))  # (batch, 1, emb)
        rnn_output, hidden = self.rnn(embedded, hidden)  # (batch, 1, hidden)
        weights = self.attention(rnn_output, memory, mask)  # (batch, 1, src_len)
        context = torch.bmm(weights, memory)  # (batch, 1, hidden)
        joined = torch.tanh(self.concat(torch.cat([rnn_output, context], dim=2).squeeze(1)))  # (batch, hidden)
        return F.log_softmax(self.output(joined), dim=1), hidden


class TutorialSeq2Seq(nn.Module):
    """The tutorial's encoder and decoder around one shared embedding, sized by the project's ModelConfig."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.decoder_layers > 2 * config.encoder_layers:
            raise ValueError("the decoder starts from the encoder's final states: at most 2 * encoder_layers")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.encoder = TutorialEncoder(self.embedding, config)
        self.decoder = TutorialDecoder(self.embedding, config)


def masked_step_nll(log_probs: torch.Tensor, target: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Summed NLL of one position: log_probs (batch, vocab), target (batch,) -> a scalar; padding counts zero."""
    picked = log_probs.gather(1, target.unsqueeze(1)).squeeze(1)  # (batch,)
    return -(picked * (target != pad_id)).sum()


def teacher_forced_nll(model: TutorialSeq2Seq, batch: Batch) -> tuple[torch.Tensor, int]:
    """Total NLL of ``batch.target_out`` with the reply fed in one position per loop iteration, and its piece count."""
    pad_id = model.config.pad_id
    memory, final_states = model.encoder(batch.source)  # (batch, src_len, hidden), (2 * layers, batch, hidden)
    hidden = final_states[: model.config.decoder_layers].contiguous()  # (decoder_layers, batch, hidden)
    mask = batch.source != pad_id
    total = memory.new_zeros(())
    for position in range(batch.target_in.size(1)):
        log_probs, hidden = model.decoder(batch.target_in[:, position : position + 1], hidden, memory, mask)
        total = total + masked_step_nll(log_probs, batch.target_out[:, position], pad_id)
    return total, int((batch.target_out != pad_id).sum())


class TutorialTrainer:
    """Adam with gradient clipping over ``teacher_forced_nll``, in fp32."""

    def __init__(self, model: TutorialSeq2Seq, learning_rate: float, clip_norm: float) -> None:
        self.model = model
        self.clip_norm = clip_norm
        self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

    def step(self, batch: Batch) -> tuple[float, int]:
        """One optimisation step; returns the mean loss per target piece and the piece count."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, pieces = teacher_forced_nll(self.model, batch)
        loss = total / max(pieces, 1)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.optimizer.step()
        return float(loss.detach()), pieces


@torch.no_grad()
def tutorial_nll(model: TutorialSeq2Seq, batches: list[Batch]) -> tuple[float, int]:
    """Total NLL and piece count over ``batches`` in eval mode (restores the previous mode); word perplexity is
    exp(total / ``chatbot.evaluation.reference_words``), as for the project's model."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        nll, pieces = teacher_forced_nll(model, batch)
        total, count = total + float(nll), count + pieces
    model.train(was_training)
    return total, count
