"""The project's Trainer against a tutorial-style seq2seq trainer (bench/tutorial_seq2seq.py), measured in one run.

Both train the default model size (chatbot.config.ModelShape) with the shipped model's tokenizer on the chitchat
pairs, cleaned and encoded the way ``chatbot train`` does, and see the same bucketed batches in the same order.

1. Throughput: rounds alternate three trainers — the project's Trainer with ``TrainConfig()`` (precision auto: bf16
   autocast on a CPU with native bf16), the same in fp32, and the tutorial-style one (fp32, one decoder position per
   Python loop iteration). In each round every trainer starts at the same batch and trains for ``--round-seconds``;
   the median over rounds of target tokens/s (real pieces of ``target_out``) is reported, with the project model's
   analytic matmul FLOP/s (see ``training_flops``) as a fraction of the matmul peak measured in the same rounds.
2. Quality for the same wall clock: a fresh project model and a fresh tutorial model each train for
   ``--budget-minutes`` on the same batch stream, then their word perplexity on a fixed subset of the valid split is
   measured the same way (total NLL / ``chatbot.evaluation.reference_words``).

    python bench/trainer_vs_tutorial.py [--threads 2] [--rounds 3] [--round-seconds 20] [--budget-minutes 10]
        [--train-pairs 0] [--valid-pairs 2000]
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import torch
from tutorial_seq2seq import TutorialSeq2Seq, TutorialTrainer, tutorial_nll

from chatbot.config import ContextConfig, DataConfig, ModelConfig, ModelShape, TokenizerConfig, TrainConfig, from_dict
from chatbot.corpora import load_corpora
from chatbot.evaluation import batches_nll, reference_words
from chatbot.model.seq2seq import Seq2Seq
from chatbot.text.batching import Batch, EncodedPair, bucketed_batches, encode_pair
from chatbot.text.cleaning import clean_splits
from chatbot.text.pairs import split_pairs
from chatbot.text.tokenizer import Tokenizer
from chatbot.training.checkpoint import read_config
from chatbot.training.trainer import Trainer

MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "default-model"  # the shipped model: its tokenizer
BATCH_SIZE = 64
MATMUL_SIZE, MATMUL_REPEATS = 2048, 5
Step = Callable[[Batch], object]


@dataclass(frozen=True)
class Data:
    """The tokenizer and the encoded pairs both trainers use."""

    tokenizer: Tokenizer
    train: list[EncodedPair]
    valid: list[EncodedPair]


def load_data(train_pairs: int, valid_pairs: int, seed: int) -> Data:
    """Chitchat pairs as ``chatbot train`` gets them, encoded with the shipped model's tokenizer; ``train_pairs``
    (0: all) is a seeded sample of the train split, ``valid_pairs`` a fixed sample of the valid split."""
    config = read_config(MODEL_DIR)
    tokenizer = Tokenizer.load(MODEL_DIR / "tokenizer.model", from_dict(TokenizerConfig, config["tokenizer"]))
    context = ContextConfig()
    splits, _ = clean_splits(split_pairs(load_corpora(["chitchat"]), context.history_turns), DataConfig())
    train, valid = splits["train"], splits["valid"]
    if train_pairs and train_pairs < len(train):
        train = random.Random(seed).sample(train, train_pairs)
    if valid_pairs and valid_pairs < len(valid):
        valid = random.Random(0).sample(valid, valid_pairs)
    return Data(
        tokenizer,
        [encode_pair(pair, tokenizer, context) for pair in train],
        [encode_pair(pair, tokenizer, context) for pair in valid],
    )


def model_config(tokenizer: Tokenizer) -> ModelConfig:
    return ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, **asdict(ModelShape()))


def batch_stream(data: Data, seed: int) -> Iterator[Batch]:
    """Epoch after epoch of bucketed training batches; the same seed gives the same sequence."""
    rng = random.Random(seed)
    while True:
        yield from bucketed_batches(data.train, BATCH_SIZE, data.tokenizer, rng)


def target_tokens(batch: Batch, pad_id: int) -> int:
    return int((batch.target_out != pad_id).sum())


def training_flops(config: ModelConfig, batch_size: int, source_len: int, target_len: int, real_targets: int) -> int:
    """Matmul FLOPs of one training step of the project's Seq2Seq on a padded batch: B rows, S source and T target
    positions, embedding E, hidden H, vocabulary V. Forward multiply-accumulates (MACs):

        encoder   B·S · Σ_layers 2 directions · 3H(in + H)     in = E, then 2H
                  + B·S · 2H·H (join directions) + B · 2H·H (bridge) + B·S · H·H (attention keys; not for dot)
        decoder   B·T · Σ_layers 3H(in + H)                    in = E, then H
                  + B·T · 2·S·H (scores and context bmm) + B·T · 2H·H (combine) + R · H·V (output layer)

    (concat attention adds B·T · H·H for the query and B·T·S · H for its score vector). FLOPs = 2 · MACs, and a
    training step ≈ 3 × forward (the backward pass costs about twice the forward). Padded positions count where the
    dense kernels compute them (the RNNs, attention, combine), but the output layer runs at the R real target pieces
    only. Embedding lookups, softmax and elementwise work are not matmuls and are left out.
    """
    hidden, vocab = config.hidden_size, config.vocab_size
    encoder_inputs = [config.embedding_size] + [2 * hidden] * (config.encoder_layers - 1)
    decoder_inputs = [config.embedding_size] + [hidden] * (config.decoder_layers - 1)
    per_source = sum(2 * 3 * hidden * (size + hidden) for size in encoder_inputs) + 2 * hidden * hidden
    per_source += hidden * hidden if config.attention != "dot" else 0
    per_target = sum(3 * hidden * (size + hidden) for size in decoder_inputs)
    per_target += 2 * source_len * hidden + 2 * hidden * hidden
    if config.attention == "concat":
        per_target += hidden * hidden + source_len * hidden
    forward_macs = batch_size * (source_len * per_source + 2 * hidden * hidden + target_len * per_target)
    forward_macs += real_targets * hidden * vocab
    return 3 * 2 * forward_macs


def batch_flops(config: ModelConfig, batch: Batch) -> int:
    real_targets = int((batch.target_out != config.pad_id).sum())
    return training_flops(config, batch.source.size(0), batch.source.size(1), batch.target_in.size(1), real_targets)


def matmul_flops_per_second(dtype: torch.dtype, size: int = MATMUL_SIZE, repeats: int = MATMUL_REPEATS) -> float:
    """2n³ / t for ``torch.matmul`` of two n×n matrices of ``dtype``, after a warm-up call."""
    left, right = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.matmul(left, right)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(left, right)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


@dataclass
class Totals:
    """What one trainer did in one timed stretch."""

    steps: int = 0
    tokens: int = 0
    flops: int = 0
    seconds: float = 0.0


def train_for(step: Step, batches: Iterator[Batch], seconds: float, config: ModelConfig) -> Totals:
    """Step through ``batches`` until ``seconds`` have passed; ``flops`` are the project model's count per batch."""
    totals = Totals()
    started = time.perf_counter()
    while totals.seconds < seconds:
        batch = next(batches)
        step(batch)
        totals.steps += 1
        totals.tokens += target_tokens(batch, config.pad_id)
        totals.flops += batch_flops(config, batch)
        totals.seconds = time.perf_counter() - started
    return totals


@dataclass(frozen=True)
class Contender:
    """A trainer in the throughput rounds; ``peak`` names the matmul dtype its FLOP/s is compared with."""

    name: str
    step: Step
    peak: str | None  # "fp32", "bf16", or None: not the project's model, so no model FLOP count


def contenders(data: Data, seed: int) -> list[Contender]:
    """Fresh, identically seeded models: the project's Trainer (auto precision, then fp32) and the tutorial's."""
    config, defaults = model_config(data.tokenizer), TrainConfig()
    chosen: list[Contender] = []
    for precision in ("auto", "fp32"):
        torch.manual_seed(seed)
        trainer = Trainer(Seq2Seq(config), data.tokenizer, TrainConfig(precision=precision))
        peak = "fp32" if trainer.dtype is None else "bf16" if trainer.dtype == torch.bfloat16 else None
        chosen.append(Contender(f"chatbot Trainer, {precision_name(trainer.dtype)}", trainer.step, peak))
    torch.manual_seed(seed)
    tutorial = TutorialTrainer(TutorialSeq2Seq(config), defaults.learning_rate, defaults.clip_norm)
    chosen.append(Contender("tutorial-style, fp32", tutorial.step, None))
    return chosen


def precision_name(dtype: torch.dtype | None) -> str:
    return "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"


@dataclass(frozen=True)
class Throughput:
    """Medians over the rounds: target tokens/s and model FLOP/s per trainer, and the matmul peaks."""

    tokens_per_second: dict[str, float]
    flops_per_second: dict[str, float]
    peaks: dict[str, float]  # "fp32" / "bf16" -> FLOP/s


def measure_throughput(
    data: Data, contenders: list[Contender], rounds: int, round_seconds: float, seed: int
) -> Throughput:
    """Alternating rounds; in each, every trainer starts at the same batch of one shared sequence, and the matmul
    peaks are measured once, so machine noise hits everything alike."""
    config = model_config(data.tokenizer)
    sequence = bucketed_batches(data.train, BATCH_SIZE, data.tokenizer, random.Random(seed))  # one epoch
    for contender in contenders:  # warm-up: allocations and oneDNN primitive caches
        for batch in sequence[:2]:
            contender.step(batch)
    tokens: dict[str, list[float]] = {contender.name: [] for contender in contenders}
    flops: dict[str, list[float]] = {contender.name: [] for contender in contenders}
    peaks: dict[str, list[float]] = {"fp32": [], "bf16": []}
    start = 2
    for _ in range(rounds):
        reached = start
        for contender in contenders:
            totals = train_for(contender.step, cycle_from(sequence, start), round_seconds, config)
            tokens[contender.name].append(totals.tokens / totals.seconds)
            flops[contender.name].append(totals.flops / totals.seconds)
            reached = max(reached, start + totals.steps)
        peaks["fp32"].append(matmul_flops_per_second(torch.float32))
        peaks["bf16"].append(matmul_flops_per_second(torch.bfloat16))
        start = reached
    return Throughput(medians(tokens), medians(flops), medians(peaks))


def cycle_from(sequence: Sequence[Batch], start: int) -> Iterator[Batch]:
    """``sequence`` from index ``start`` on, wrapping around at its end."""
    for index in itertools.count(start):
        yield sequence[index % len(sequence)]


def medians(values: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(series) for name, series in values.items()}


@dataclass(frozen=True)
class Quality:
    """A model trained for the time budget, and its fit to the validation pairs."""

    name: str
    totals: Totals
    epochs: float
    nll: float
    pieces: int
    words: int


def budget_quality(data: Data, minutes: float, seed: int) -> list[Quality]:
    """Train a fresh project model, then a fresh tutorial model, each for ``minutes`` on the same batch stream, and
    measure both on the validation pairs in eval mode and fp32."""
    config, defaults, seconds = model_config(data.tokenizer), TrainConfig(), 60 * minutes
    valid_batches = bucketed_batches(data.valid, BATCH_SIZE, data.tokenizer, rng=None)
    words, epoch = reference_words(data.tokenizer, data.valid), math.ceil(len(data.train) / BATCH_SIZE)
    torch.manual_seed(seed)
    ours = Seq2Seq(config)
    trainer = Trainer(ours, data.tokenizer, defaults)
    totals = train_for(trainer.step, batch_stream(data, seed), seconds, config)
    nll, pieces = batches_nll(ours, valid_batches, config.pad_id)
    name = f"chatbot Trainer, {precision_name(trainer.dtype)}"
    results = [Quality(name, totals, totals.steps / epoch, nll, pieces, words)]
    torch.manual_seed(seed)
    theirs = TutorialSeq2Seq(config)
    tutorial = TutorialTrainer(theirs, defaults.learning_rate, defaults.clip_norm)
    totals = train_for(tutorial.step, batch_stream(data, seed), seconds, config)
    nll, pieces = tutorial_nll(theirs, valid_batches)
    results.append(Quality("tutorial-style, fp32", totals, totals.steps / epoch, nll, pieces, words))
    return results


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_setup(data: Data) -> None:
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    config = model_config(data.tokenizer)
    print(f"# {datetime.now():%Y-%m-%d %H:%M} · {cpu_model()} ({platform.machine()}, native bf16: {native_bf16})")
    print(f"# torch {torch.__version__} · {torch.get_num_threads()} threads · python {platform.python_version()}")
    print(f"# command: python {shlex.join(sys.argv)}")
    pieces = sum(len(pair.target) + 1 for pair in data.train) / max(len(data.train), 1)
    print(
        f"# data: chitchat, {len(data.train):,} train pairs ({pieces:.1f} target pieces each), "
        f"{len(data.valid):,} valid pairs; batch {BATCH_SIZE}; vocabulary {config.vocab_size}, "
        f"embedding {config.embedding_size}, hidden {config.hidden_size}, layers {config.encoder_layers}+"
        f"{config.decoder_layers}, {config.attention} attention",
        flush=True,
    )


def print_throughput(result: Throughput, contenders: list[Contender], args: argparse.Namespace) -> None:
    baseline = result.tokens_per_second["tutorial-style, fp32"]
    print(
        f"\n| trainer (median of {args.rounds} rounds × {args.round_seconds:g} s) | target tokens/s | vs tutorial "
        "| model GFLOP/s | of matmul peak |\n|---|---|---|---|---|"
    )
    for contender in contenders:
        speed = result.tokens_per_second[contender.name]
        flops = result.flops_per_second[contender.name]
        model = f"{flops / 1e9:.1f}" if contender.peak else "—"
        share = f"{flops / result.peaks[contender.peak]:.0%} of {contender.peak}" if contender.peak else "—"
        print(f"| {contender.name} | {speed:,.0f} | {speed / baseline:.2f}× | {model} | {share} |")
    print(f"\n| torch.matmul {MATMUL_SIZE}×{MATMUL_SIZE} (median of rounds) | GFLOP/s |\n|---|---|")
    for dtype, peak in result.peaks.items():
        print(f"| {dtype} | {peak / 1e9:.0f} |")


def print_quality(results: list[Quality], minutes: float) -> None:
    print(
        f"\n| trainer ({minutes:g} min each) | steps | epochs | target tokens/s | valid loss/piece | token ppl "
        "| word ppl |\n|---|---|---|---|---|---|---|"
    )
    for result in results:
        loss = result.nll / max(result.pieces, 1)
        print(
            f"| {result.name} | {result.totals.steps:,} | {result.epochs:.2f} | "
            f"{result.totals.tokens / result.totals.seconds:,.0f} | {loss:.3f} | {math.exp(loss):.1f} | "
            f"{math.exp(result.nll / max(result.words, 1)):.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-seconds", type=float, default=20.0)
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="per trainer; 0 skips the quality part")
    parser.add_argument("--train-pairs", type=int, default=0, help="a seeded sample of the train split; 0: all")
    parser.add_argument("--valid-pairs", type=int, default=2000, help="a fixed sample of the valid split; 0: all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data(args.train_pairs, args.valid_pairs, args.seed)
    print_setup(data)
    if args.rounds:
        chosen = contenders(data, args.seed)
        print_throughput(measure_throughput(data, chosen, args.rounds, args.round_seconds, args.seed), chosen, args)
    if args.budget_minutes:
        print_quality(budget_quality(data, args.budget_minutes, args.seed), args.budget_minutes)


if __name__ == "__main__":
    main()
