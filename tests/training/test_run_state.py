"""Run state: state.pt round trips exactly, an earlier state of the same format loads, and any other format is a
one-line error that says to start over."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from chatbot.errors import ChatbotError
from chatbot.training import run_state
from chatbot.training.run_state import LossWindow, Position, Progress, RunState, TrainSummary
from chatbot.training.schedule import LearningRateSchedule


def tiny_state() -> RunState:
    """The state of a 5 -> 7 linear layer after one AdamW step, with a history, a position and RNG states."""
    torch.manual_seed(3)
    model = nn.Linear(5, 7)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = LearningRateSchedule(optimizer, 2, "plateau")
    model(torch.randn(3, 5)).sum().backward()
    optimizer.step()
    schedule.after_step()
    summary = TrainSummary(steps=1, epochs=0.25, seconds=1.5, target_tokens=21, best_valid_loss=2.5)
    summary.history.append({"step": 1, "valid_loss": 2.5})
    progress = Progress(summary, copy.deepcopy(model.state_dict()), stalled=1, window=LossWindow(6.0, 3))
    return RunState(
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        schedule=schedule.state_dict(),
        scaler=torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        progress=progress,
        position=Position(epoch=0, batch=1, epoch_rng=random.Random(3).getstate()),
        torch_rng=[torch.get_rng_state()],
        cuda_rng=None,
        tokenizer_sha256="ab" * 32,
    )


def same(first: object, second: object) -> bool:
    """Equal all the way down, tensors by value."""
    if isinstance(first, torch.Tensor):
        return isinstance(second, torch.Tensor) and torch.equal(first, second)
    if isinstance(first, dict):
        return (
            isinstance(second, dict) and first.keys() == second.keys() and all(same(first[k], second[k]) for k in first)
        )
    if isinstance(first, (list, tuple)):
        return isinstance(second, type(first)) and len(first) == len(second) and all(map(same, first, second))
    return first == second


def test_a_saved_state_loads_equal(tmp_path: Path) -> None:
    state = tiny_state()
    run_state.save(tmp_path / "state.pt", state)
    loaded = run_state.load(tmp_path / "state.pt")
    assert same(loaded.to_dict(), state.to_dict())
    assert loaded.progress.summary == state.progress.summary and loaded.position == state.position
    assert loaded.progress.window == LossWindow(6.0, 3) and loaded.position.stop is None
    assert [path.name for path in tmp_path.iterdir()] == ["state.pt"]  # no temporary file left behind


def test_a_state_saved_before_the_tokenizer_was_recorded_still_loads(tmp_path: Path) -> None:
    old = tiny_state().to_dict()
    del old["tokenizer_sha256"]
    torch.save(old, tmp_path / "state.pt")
    assert run_state.load(tmp_path / "state.pt").tokenizer_sha256 is None


@pytest.mark.parametrize("version", [0, 2, None])
def test_another_format_is_a_one_line_error(tmp_path: Path, version: int | None) -> None:
    torch.save({**tiny_state().to_dict(), "format": version}, tmp_path / "state.pt")
    with pytest.raises(ChatbotError) as caught:
        run_state.load(tmp_path / "state.pt")
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "state.pt") in message
    assert f"training state format {version!r}" in message and message.endswith("; start over with --force")
