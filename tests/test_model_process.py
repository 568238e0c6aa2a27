"""ModelProcess: the model's batched replies computed in a child process are the replies computed here; its errors,
a broken model and a killed process become errors in the caller, and the process is replaced or stopped."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from chatbot.config import DecodeConfig
from chatbot.dialogue.types import Role, Turn
from chatbot.errors import ModelError
from chatbot.generation import ResponseGenerator
from chatbot.model_process import ModelProcess

HISTORIES = [
    [Turn(Role.USER, "do you have any pets?")],
    [Turn(Role.USER, "hello"), Turn(Role.BOT, "hi"), Turn(Role.USER, "what do you do for fun?")],
]


def test_replies_in_the_process_are_the_replies_made_here(tiny_model_dir: Path) -> None:
    here = ResponseGenerator(tiny_model_dir)
    config = DecodeConfig(strategy="beam", beam_size=3)
    expected, alone = here.replies(HISTORIES, config), here.replies(HISTORIES[:1], config)
    model_process = ModelProcess(tiny_model_dir, here.decode_config, quantized=False, threads=1)
    try:
        assert model_process.model_name == here.model_name
        assert model_process.replies(HISTORIES, config) == expected
        with pytest.raises(AttributeError):  # a bug in a batch is raised here, and the process serves on
            model_process.replies([["not a turn"]], config)  # type: ignore[list-item]
        assert model_process.replies(HISTORIES[:1], config) == alone
    finally:
        model_process.close()
    assert model_process._process is None


@pytest.mark.reliability
def test_a_killed_process_fails_its_batch_and_the_next_batch_gets_a_new_one(tiny_model_dir: Path) -> None:
    config = DecodeConfig()
    model_process = ModelProcess(tiny_model_dir, config, quantized=False, threads=1)
    try:
        expected = model_process.replies(HISTORIES, config)
        assert model_process._process is not None and model_process._process.pid is not None
        os.kill(model_process._process.pid, signal.SIGKILL)
        with pytest.raises(ModelError, match="stopped unexpectedly"):
            model_process.replies(HISTORIES, config)
        assert model_process.replies(HISTORIES, config) == expected
    finally:
        model_process.close()


def test_a_broken_model_fails_at_start_with_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.model"):
        (broken / name).write_bytes((tiny_model_dir / name).read_bytes())
    (broken / "model.pt").write_bytes((tiny_model_dir / "model.pt").read_bytes()[:1000])
    with pytest.raises(ModelError):
        ModelProcess(broken, DecodeConfig(), quantized=False, threads=1)


def test_with_a_model_process_the_serving_process_loads_no_weights(tiny_model_dir: Path) -> None:
    from chatbot.dialogue.settings import DecodeSettings
    from chatbot.micro_batch import MicroBatchGenerator

    here = ResponseGenerator(tiny_model_dir)
    model_process = ModelProcess(tiny_model_dir, here.decode_config, quantized=False, threads=1)
    batcher = MicroBatchGenerator(here, 4, model_process.replies, model_process.model_name)
    try:
        assert batcher.model_name == model_process.model_name
        assert batcher.reply(HISTORIES[0], DecodeSettings()).model == model_process.model_name
        assert here._bundle is None  # the weights were loaded in the model process only
    finally:
        batcher.close()
        model_process.close()
