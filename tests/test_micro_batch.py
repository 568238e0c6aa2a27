"""MicroBatchGenerator: requests waiting at the same moment share one model call, per decode config, and get the
same replies as alone (fp32); errors reach the callers."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chatbot.config import DecodeConfig
from chatbot.dialogue.generator import Generated
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Role, Turn
from chatbot.generation import ResponseGenerator
from chatbot.micro_batch import MicroBatchGenerator

PROMPTS = ["do you have any pets?", "hello", "what do you do for fun?", "how are you?", "where do you live?"]


def gated(generator: ResponseGenerator) -> tuple[threading.Event, threading.Event]:
    """Make each of the generator's batches wait for ``gate``, so that later requests queue up; ``busy`` is set
    once the worker is inside the first batch."""
    gate, busy, original = threading.Event(), threading.Event(), generator.replies

    def replies(histories: Sequence[Sequence[Turn]], config: DecodeConfig) -> list[Generated]:
        busy.set()
        assert gate.wait(timeout=30)
        return original(histories, config)

    generator.replies = replies  # type: ignore[method-assign]
    return gate, busy


def wait_for_queue(batcher: MicroBatchGenerator, size: int) -> None:
    deadline = time.monotonic() + 30
    while batcher._requests.qsize() < size:
        assert time.monotonic() < deadline, "requests never queued"
        time.sleep(0.005)


def test_waiting_requests_share_a_batch_and_reply_as_they_would_alone(tiny_model_dir: Path) -> None:
    alone = ResponseGenerator(tiny_model_dir)
    expected = [alone.reply([Turn(Role.USER, prompt)]).text for prompt in ["first", *PROMPTS]]
    generator = ResponseGenerator(tiny_model_dir)
    batcher = MicroBatchGenerator(generator)
    gate, busy = gated(generator)
    with ThreadPoolExecutor(max_workers=6) as pool:
        first = pool.submit(batcher.reply, [Turn(Role.USER, "first")], DecodeSettings())
        assert busy.wait(timeout=30)  # the worker has taken "first" alone and waits at the gate
        rest = [pool.submit(batcher.reply, [Turn(Role.USER, prompt)], DecodeSettings()) for prompt in PROMPTS]
        wait_for_queue(batcher, len(PROMPTS))
        gate.set()
        replies = [first.result(timeout=30), *(future.result(timeout=30) for future in rest)]
    batcher.close()
    assert [reply.text for reply in replies] == expected
    assert batcher.batch_sizes == [1, len(PROMPTS)]


def test_a_batch_splits_by_decode_settings(tiny_model_dir: Path) -> None:
    generator = ResponseGenerator(tiny_model_dir)
    batcher = MicroBatchGenerator(generator)
    gate, busy = gated(generator)
    beam = DecodeSettings(mode="beam", beam_size=3)
    with ThreadPoolExecutor(max_workers=5) as pool:
        first = pool.submit(batcher.reply, [Turn(Role.USER, "first")], DecodeSettings())
        assert busy.wait(timeout=30)
        later = [
            pool.submit(batcher.reply, [Turn(Role.USER, prompt)], settings)
            for prompt, settings in zip(PROMPTS[:4], [beam, DecodeSettings(), beam, DecodeSettings()], strict=True)
        ]
        wait_for_queue(batcher, 4)
        gate.set()
        results = [first.result(timeout=30), *(future.result(timeout=30) for future in later)]
    batcher.close()
    assert sorted(batcher.batch_sizes) == [1, 2, 2]
    assert [reply.decoding["strategy"] for reply in results] == ["greedy", "beam", "greedy", "beam", "greedy"]


def test_a_failing_model_call_raises_in_every_waiting_caller(tiny_model_dir: Path) -> None:
    generator = ResponseGenerator(tiny_model_dir)

    def broken(histories: Sequence[Sequence[Turn]], config: DecodeConfig) -> list[Generated]:
        raise RuntimeError("model exploded")

    generator.replies = broken  # type: ignore[method-assign]
    batcher = MicroBatchGenerator(generator)
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher.reply([Turn(Role.USER, "hi")], DecodeSettings())
    batcher.close()
    assert not batcher._worker.is_alive()
