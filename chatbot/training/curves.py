"""Curves: a training run's history as a PNG (loss, and validation perplexity) and as JSON lines.

Matplotlib's object API (a Figure with the Agg canvas) draws without pyplot's global state or a display.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def history_jsonl(history: Sequence[dict[str, Any]]) -> bytes:
    """One JSON object per validation, in order: easy to load into pandas or jq."""
    return "".join(json.dumps(entry) + "\n" for entry in history).encode("utf-8")


def plot_history(history: Sequence[dict[str, Any]]) -> bytes:
    """A PNG with the training and validation loss per piece, and the validation word perplexity, by step."""
    figure = Figure(figsize=(9, 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, perplexity_axes = figure.subplots(1, 2)
    steps = [entry["step"] for entry in history]
    loss_axes.plot(steps, [entry["train_loss"] for entry in history], label="train (mean since last validation)")
    validated = [entry for entry in history if "valid_loss" in entry]
    if validated:
        valid_steps = [entry["step"] for entry in validated]
        loss_axes.plot(valid_steps, [entry["valid_loss"] for entry in validated], marker="o", label="valid")
        perplexity_axes.plot(valid_steps, [entry["valid_word_ppl"] for entry in validated], marker="o")
        perplexity_axes.set_yscale("log")
    else:
        perplexity_axes.text(0.5, 0.5, "no validation data", ha="center", va="center")
    loss_axes.set(xlabel="step", ylabel="loss per piece", title="loss")
    loss_axes.legend()
    perplexity_axes.set(xlabel="step", ylabel="word perplexity", title="validation word perplexity")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
