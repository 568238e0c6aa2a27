"""Reply latency of the shipped model in one chat: its own decoding (and, where it uses semantic scoring or searches
by a message's last sentence too, the same without it), beam-5, and candidates chosen among retrieved replies
(retrieved alone, and with beam-5's n-best), fp32 and int8, measured side by side.

Each reply is timed the way ``chatbot chat`` produces it (``ResponseGenerator.generate_scored`` on one context:
tokenize, encode, search, retrieve and rescore candidates where asked, detokenize), over held-out chitchat contexts,
after a warm-up. The variants take turns on every context, so machine noise hits them alike. Reported: p50 and
p95 in milliseconds. The candidate variants need the model's reply index.

    python bench/reply_latency.py [--threads 2] [--contexts 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import time
from datetime import datetime

import torch

from chatbot.cli import default_model_dir
from chatbot.config import DecodeConfig
from chatbot.evaluation import held_out_pairs
from chatbot.generation import ResponseGenerator
from chatbot.training import checkpoint


def percentile(values: list[float], share: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1] * 1000


def describe(config: DecodeConfig) -> str:
    if config.candidates == "generated":
        return config.strategy
    semantic = f", semantic {config.semantic_weight:g}" if config.semantic_weight else ""
    last = f" + {config.last_sentence_retrieved} by last sentence" if config.last_sentence_retrieved else ""
    return f"{config.strategy}, candidates {config.candidates} {config.retrieved}{last}{semantic}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contexts", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = default_model_dir()
    chat_default = ResponseGenerator(model_dir).decode_config  # what `chatbot chat` decodes with, without flags
    no_semantic = dataclasses.replace(chat_default, semantic_weight=0.0, last_sentence_retrieved=0)
    beam = dataclasses.replace(no_semantic, strategy="beam", beam_size=5, n_best=5, candidates="generated")
    retrieved = dataclasses.replace(beam, candidates="retrieved", retrieved=10)
    both = dataclasses.replace(beam, candidates="both", retrieved=10)
    decodings = {f"chat default ({describe(chat_default)})": chat_default}
    if chat_default.last_sentence_retrieved:
        decodings["the same without the last sentence's search"] = dataclasses.replace(
            chat_default, last_sentence_retrieved=0
        )
    if chat_default.semantic_weight:
        decodings["the same without semantic scoring"] = dataclasses.replace(chat_default, semantic_weight=0.0)
    decodings["beam-5"] = beam
    decodings.update({"candidates: retrieved 10": retrieved, "candidates: both (beam-5 n-best + 10)": both})
    variants = {  # `chatbot chat` runs int8 unless --no-quantize
        f"{name}, {precision}": ResponseGenerator(model_dir, config, quantized=precision.startswith("int8"))
        for name, config in decodings.items()
        for precision in ("fp32", "int8")
    }
    bundle = checkpoint.load(model_dir)
    pairs = held_out_pairs(bundle, ["chitchat"], "test", args.contexts)
    contexts = [bundle.tokenizer.decode(pair.source) for pair in pairs]
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for generator in variants.values():
        generator.generate_scored(contexts[:5])  # warm-up: weights loaded, kernels primed
    for context in contexts:
        for name, generator in variants.items():
            started = time.perf_counter()
            generator.generate_scored([context])
            seconds[name].append(time.perf_counter() - started)
    print(
        f"# {datetime.now():%Y-%m-%d %H:%M} · {platform.processor() or platform.machine()} · torch {torch.__version__}"
    )
    print(f"# command: python {' '.join(sys.argv)}; {len(contexts)} chitchat test contexts, {args.threads} threads")
    print("| decoding | p50 ms | p95 ms | vs fp32 (p50) |\n|---|---|---|---|")
    for name, values in seconds.items():
        base = seconds[name.replace("int8", "fp32")]
        ratio = percentile(base, 50) / percentile(values, 50)
        print(f"| {name} | {percentile(values, 50):.1f} | {percentile(values, 95):.1f} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
