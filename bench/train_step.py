"""Training-step throughput of the choices behind the defaults, measured side by side in one run.

1. Encoder variants for right-padded batches (forward + backward pass, same embedded input): a plain bidirectional
   nn.GRU (padding leaks into the backward direction), pack_padded_sequence (exact), and the project's mechanism
   (exact: a second GRU reads each row reversed within its length); then the whole project Encoder, which also
   embeds and projects, for scale.
2. The whole Seq2Seq training step at the default size, fp32 vs bf16 autocast (what --precision auto picks).

Rounds alternate the variants so machine noise hits all of them; the median of the rounds is reported.

    python bench/train_step.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from chatbot.config import ModelConfig, ModelShape
from chatbot.evaluation import masked_nll
from chatbot.model.encoder import Encoder, reverse_within_length
from chatbot.model.seq2seq import Seq2Seq

BATCH, SOURCE_LEN, TARGET_LEN, VOCAB = 64, 40, 20, 4000
SHAPE = ModelShape()


def seconds_per_call(function: Callable[[], None], repeats: int) -> float:
    function()  # warm-up: allocations and oneDNN primitive caches
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def encoder_variants() -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    hidden, embedding = SHAPE.hidden_size, SHAPE.embedding_size
    lengths = torch.randint(SOURCE_LEN * 3 // 4, SOURCE_LEN + 1, (BATCH,))
    lengths[0] = SOURCE_LEN
    tokens = torch.randint(4, VOCAB, (BATCH, SOURCE_LEN))
    tokens[torch.arange(SOURCE_LEN).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    embedded = torch.randn(BATCH, SOURCE_LEN, embedding, requires_grad=True)
    bidirectional = nn.GRU(embedding, hidden, batch_first=True, bidirectional=True)
    ahead, behind = nn.GRU(embedding, hidden, batch_first=True), nn.GRU(embedding, hidden, batch_first=True)
    ours = Encoder(ModelConfig(vocab_size=VOCAB, pad_id=0, dropout=0.0))

    def plain() -> None:
        outputs, _ = bidirectional(embedded)
        outputs.sum().backward()

    def packed() -> None:
        sequence = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        outputs, _ = bidirectional(sequence)
        padded, _ = pad_packed_sequence(outputs, batch_first=True, total_length=SOURCE_LEN)
        padded.sum().backward()

    def reversed_within_length() -> None:
        forward_states, _ = ahead(embedded)
        backward_states, _ = behind(reverse_within_length(embedded, lengths))
        both = torch.cat([forward_states, reverse_within_length(backward_states, lengths)], dim=-1)
        both.sum().backward()

    def whole_encoder() -> None:
        memory, initial = ours(tokens)
        (memory.sum() + initial.sum()).backward()

    return {
        "bidirectional nn.GRU (inexact)": plain,
        "packed (exact)": packed,
        "two GRUs, reversed within length (exact)": reversed_within_length,
        "whole chatbot Encoder (+ embedding, projections)": whole_encoder,
    }


def full_step(precision: str) -> Callable[[], None]:
    torch.manual_seed(0)
    model = Seq2Seq(
        ModelConfig(vocab_size=VOCAB, pad_id=0, embedding_size=SHAPE.embedding_size, hidden_size=SHAPE.hidden_size)
    )
    optimizer = torch.optim.Adam(model.parameters())
    source = torch.randint(4, VOCAB, (BATCH, SOURCE_LEN))
    target_in, target_out = torch.randint(4, VOCAB, (2, BATCH, TARGET_LEN))

    def step() -> None:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(source, target_in)
        total, pieces = masked_nll(logits, target_out, 0)
        (total / pieces).backward()
        optimizer.step()

    return step


def measure(cases: dict[str, Callable[[], None]], rounds: int, repeats: int) -> dict[str, float]:
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, function in cases.items():
            timings[name].append(seconds_per_call(function, repeats))
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {date.today()} · {platform.processor() or platform.machine()} · torch {torch.__version__} · "
        f"{args.threads} threads · batch {BATCH}, source {SOURCE_LEN}, target {TARGET_LEN}, vocab {VOCAB}, "
        f"hidden {SHAPE.hidden_size}, embedding {SHAPE.embedding_size}"
    )
    encoders = measure(encoder_variants(), args.rounds, repeats=10)
    baseline = encoders["bidirectional nn.GRU (inexact)"]
    print("\n| encoder forward+backward | ms | vs bidirectional nn.GRU |\n|---|---|---|")
    for name, seconds in encoders.items():
        print(f"| {name} | {seconds * 1000:.1f} | {seconds / baseline:.2f}× |")
    steps = measure({"fp32": full_step("fp32"), "bf16": full_step("bf16")}, args.rounds, repeats=5)
    print("\n| full training step | ms | target tokens/s | vs fp32 |\n|---|---|---|---|")
    for name, seconds in steps.items():
        print(
            f"| {name} | {seconds * 1000:.1f} | {BATCH * TARGET_LEN / seconds:,.0f} | {steps['fp32'] / seconds:.2f}× |"
        )


if __name__ == "__main__":
    main()
