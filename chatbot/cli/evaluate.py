"""``chatbot eval``: perplexity and generated-reply quality of a model (and of a second one beside it) on
dialogue logs, as JSON. The measuring is in evaluation.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from chatbot.cli.options import decode_options, model_option, quantize_option, threads_option
from chatbot.cli.wiring import decode_config, default_model_dir, report, set_threads


@click.command("eval")
@model_option()
@click.argument("data", nargs=-1, required=True)
@click.option(
    "--split",
    type=click.Choice(["all", "train", "valid", "test"]),
    default="all",
    help="Which conversations of DATA to use (the split `train` makes).",
)
@click.option("--limit", type=click.IntRange(min=0), default=0, help="Evaluate at most this many pairs (0: all).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64)
@click.option(
    "--replies",
    type=click.IntRange(min=0),
    default=200,
    help="Generate replies for the first N pairs, one at a time, and report their quality and latency (0: skip).",
)
@click.option(
    "--compare",
    "other",
    type=click.Path(file_okay=False, path_type=Path),
    help="A second model directory to measure the same way; the JSON gets both, a table on stderr shows them.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the random draws of --strategy sample, so that a run's replies and figures can be reproduced.",
)
@threads_option()
@quantize_option(default=False)
@decode_options()
def evaluate(
    model: Path | None,
    data: tuple[str, ...],
    split: str,
    limit: int,
    batch_size: int,
    replies: int,
    other: Path | None,
    seed: int,
    threads: int,
    quantize: bool,
    **decode: Any,
) -> None:
    """Measure a model on dialogue logs and print the metrics as JSON: mean loss, token- and word-level
    perplexity (word perplexity is comparable across vocabularies), and under "replies" the quality of replies it
    generates with the decoding flags (BLEU, unigram F1, distinct-1/2, average length, the shares of generic, empty
    and looping replies, latency p50/p95 in ms)."""
    from chatbot.evaluation import EvaluationRequest, evaluate_model_dir, side_by_side

    set_threads(threads)
    request = EvaluationRequest(data, split, limit, batch_size, replies, seed)

    def measure(model_dir: Path) -> dict[str, Any]:  # each model decodes as it stores, with the flags applied
        return evaluate_model_dir(model_dir, decode_config(model_dir, dict(decode)), quantize, request)

    result = measure(model or default_model_dir())
    if other is not None:
        result["compare"] = measure(other)
        report(side_by_side(result, result["compare"]))
    click.echo(json.dumps(result, indent=2))
