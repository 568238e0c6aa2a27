"""Resume: a run killed at any point and resumed ends with exactly the weights of an uninterrupted run.

In-process from a saved state, and for real: a `chatbot train` process is SIGKILLed after it saved a state, then
`chatbot train --resume` finishes it. Also the guards: nothing to resume, a changed setting, an unfinished run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.config import ModelConfig, TrainConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.training import run_state
from chatbot.training.run_state import RunState
from chatbot.training.trainer import Trainer

from .dialogues import write_dialogues
from .test_trainer import encoded_sample

# Dropout and scheduled sampling draw random numbers, so the RNG states must come back too.
RESUMABLE = TrainConfig(
    epochs=3,
    batch_size=8,
    learning_rate=1e-2,
    valid_every=4,
    checkpoint_every=3,
    precision="fp32",
    scheduled_sampling="linear",
    sampling_decay_steps=20,
    lr_schedule="plateau",
    warmup_steps=5,
)


def test_resuming_from_any_saved_state_ends_with_the_same_weights(sample_path: Path, tmp_path: Path) -> None:
    tokenizer, pairs = encoded_sample(sample_path)
    train, valid = pairs[:60], pairs[60:]

    def trainer(seed: int) -> Trainer:
        torch.manual_seed(seed)
        config = ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=16, hidden_size=16, dropout=0.2)
        return Trainer(Seq2Seq(config), tokenizer, RESUMABLE)

    saved: list[Path] = []

    def save(state: RunState) -> None:
        saved.append(tmp_path / f"state-{len(saved)}.pt")
        run_state.save(saved[-1], state)

    whole = trainer(seed=0)
    expected = whole.fit(train, valid, save=save)
    assert len(saved) > 4
    for index in (1, len(saved) // 2, len(saved) - 1):  # early, middle, and after the run already ended
        state = run_state.load(saved[index])
        resumed = trainer(seed=123)  # other initial weights and RNG: the state must overrule them all
        summary = resumed.fit(train, valid, resume=state)
        for name, tensor in whole.model.state_dict().items():
            assert torch.equal(tensor, resumed.model.state_dict()[name]), name
        assert summary.steps == expected.steps
        assert [e.get("valid_loss") for e in summary.history] == [e.get("valid_loss") for e in expected.history]


def cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "5",
        "--batch-size",
        "4",
        "--vocab-size",
        "80",
        "--hidden-size",
        "24",
        "--embedding-size",
        "16",
        "--dropout",
        "0.2",
        "--precision",
        "fp32",
        "--valid-every",
        "25",
        "--checkpoint-every",
        "10",
        "--threads",
        "1",
        *extra,
    ]


def run_chatbot(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "chatbot", *args], env=environment, text=True, stderr=subprocess.PIPE, **kwargs
    )


@pytest.mark.reliability
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    data = write_dialogues(tmp_path / "log.jsonl")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = run_chatbot(cli_args(data, whole))
    victim = run_chatbot(cli_args(data, killed))
    state = killed.with_name("killed.partial") / "state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # let it train on past the saved state, so the kill loses work the resume must redo
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not killed.exists() and state.exists()
    _, errors = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, errors

    resumed = run_chatbot(cli_args(data, killed, "--resume"))
    _, errors = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, errors
    expected = torch.load(whole / "model.pt", weights_only=True)
    actual = torch.load(killed / "model.pt", weights_only=True)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert not killed.with_name("killed.partial").exists()  # a finished run leaves no unfinished state behind
    history = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [e["valid_loss"] for e in history] == [
        json.loads(line)["valid_loss"] for line in (whole / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return CliRunner()


def test_resume_guards(runner: CliRunner, tmp_path: Path) -> None:
    data = write_dialogues(tmp_path / "log.jsonl", conversations=30)
    out = tmp_path / "model"
    short = ["--epochs", "1", "--max-steps", "4"]
    result = runner.invoke(cli, [*cli_args(data, out, *short), "--resume"])
    assert result.exit_code == 2 and "nothing to resume" in result.output

    partial = tmp_path / "model.partial"
    partial.mkdir()
    (partial / "run.json").write_text("{}")
    torch.save({"format": 1}, partial / "state.pt")
    result = runner.invoke(cli, cli_args(data, out, *short))
    assert result.exit_code == 2 and "unfinished run" in result.output and "--resume" in result.output

    result = runner.invoke(cli, [*cli_args(data, out, *short), "--resume", "--force"])
    assert result.exit_code == 2

    result = runner.invoke(cli, [*cli_args(data, out, *short), "--force"])  # discards the unfinished run
    assert result.exit_code == 0, result.output
    assert (out / "model.pt").is_file() and not partial.exists()

    shutil.rmtree(out)
    partial.mkdir()  # a run that died before its first save has nothing to lose: a new run just starts over
    (partial / "run.json").write_text("{}")
    result = runner.invoke(cli, cli_args(data, out, *short))
    assert result.exit_code == 0, result.output


def test_resume_refuses_other_settings_but_accepts_a_longer_run(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_dialogues(tmp_path / "log.jsonl", conversations=30)
    out = tmp_path / "model"
    args = cli_args(data, out, "--epochs", "1", "--max-steps", "10")

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C after training, before the model directory is written

    with monkeypatch.context() as patch:
        patch.setattr("chatbot.training.checkpoint.save", interrupted)
        assert runner.invoke(cli, args).exit_code != 0
    assert not out.exists() and (tmp_path / "model.partial" / "state.pt").is_file()

    result = runner.invoke(cli, [*args, "--resume", "--hidden-size", "32", "--learning-rate", "0.5"])
    assert result.exit_code == 2
    assert "differs in model.hidden_size, train.learning_rate" in result.output

    result = runner.invoke(cli, [*args, "--resume", "--epochs", "2", "--max-steps", "14"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["training"]["steps"] == 14
