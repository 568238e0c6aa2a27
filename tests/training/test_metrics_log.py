"""The metrics log: JSONL lines written as they happen, a resumed run's history first, and TensorBoard scalars."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.training.metrics_log import MetricsLog

from .dialogues import write_dialogues


def test_entries_are_on_disk_as_soon_as_they_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    earlier = [{"step": 1, "train_loss": 3.0}]
    with MetricsLog(path, earlier) as log:
        log.record({"step": 2, "train_loss": 2.5, "valid_word_ppl": 40.0})
        assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


def test_tensorboard_gets_every_numeric_field_by_step(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLog(tmp_path / "metrics.jsonl", tensorboard=tmp_path / "tb") as log:
        log.record({"step": 5, "train_loss": 2.5, "valid_word_ppl": 40.0, "note": "text is skipped"})
        log.record({"step": 10, "train_loss": 2.0, "valid_word_ppl": 30.0})
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["train_loss", "valid_word_ppl"]
    assert [(e.step, e.value) for e in events.Scalars("valid_word_ppl")] == [(5, 40.0), (10, 30.0)]


def test_train_logs_to_tensorboard(tmp_path: Path) -> None:
    data = write_dialogues(tmp_path / "log.jsonl", conversations=20)
    args = ["train", str(data), "--out", str(tmp_path / "m"), "--epochs", "2", "--batch-size", "8"]
    args += ["--vocab-size", "60", "--hidden-size", "8", "--embedding-size", "8", "--tensorboard", str(tmp_path / "tb")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
