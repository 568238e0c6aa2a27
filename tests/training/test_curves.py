"""Curves: the PNG renders with and without validation data; the JSONL holds one history entry per line."""

from __future__ import annotations

import json

from chatbot.training.curves import history_jsonl, plot_history

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"step": 10, "train_loss": 5.0, "valid_loss": 4.8, "valid_word_ppl": 300.0},
    {"step": 20, "train_loss": 4.0, "valid_loss": 4.2, "valid_word_ppl": 150.0},
]


def test_plot_with_and_without_validation() -> None:
    assert plot_history(HISTORY).startswith(PNG_SIGNATURE)
    assert plot_history([{"step": 1, "train_loss": 3.0}]).startswith(PNG_SIGNATURE)
    assert plot_history([]).startswith(PNG_SIGNATURE)


def test_history_jsonl_round_trips() -> None:
    assert [json.loads(line) for line in history_jsonl(HISTORY).decode().splitlines()] == HISTORY
