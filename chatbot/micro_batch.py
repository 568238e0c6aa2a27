"""MicroBatchGenerator: replies that are asked for at the same moment, by different conversations, are generated
in one batched model call.

Each ``reply`` call (from a channel's worker thread) queues its request and waits. One worker thread takes the
first waiting request together with every other one already queued (up to ``max_batch``), groups them by decode
config (a batch decodes with one config), and runs one ``ResponseGenerator.replies`` call per group. Nothing
waits on purpose: under light load a request is served alone at once; under heavy load requests pile up while a
batch runs, and the next batch takes them all. The model runs in that one thread only, so concurrent chats no
longer compete for the CPU cores with several model calls at a time. Given ``replies`` (a ModelProcess's, see
model_process.py), the batches are computed there instead, in a process of its own.

Batched replies can differ from replies generated alone where the model is int8-quantized: dynamic quantization
scales each batch's activations together.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from chatbot.config import DecodeConfig
from chatbot.dialogue.generator import Generated, GeneratorInFront
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Turn
from chatbot.generation import ResponseGenerator

MAX_BATCH = 32
# ResponseGenerator.replies's signature: histories and one decode config in, one reply per history out.
Replies = Callable[[Sequence[Sequence[Turn]], DecodeConfig], list[Generated]]


@dataclass
class _Request:
    history: Sequence[Turn]
    config: DecodeConfig
    answer: Future[Generated] = field(default_factory=Future)


class MicroBatchGenerator(GeneratorInFront):
    """The Generator the dialogue manager uses when many conversations run at once: ``generator``'s replies, made
    in shared batches of at most ``max_batch`` by one worker thread (``close`` stops it) with ``replies``
    (default: ``generator.replies``, in that thread). ``model_name``, where ``replies`` has a model of its own (a
    model process), is its name; otherwise it is ``generator``'s, which loads the weights here."""

    generator: ResponseGenerator

    def __init__(
        self,
        generator: ResponseGenerator,
        max_batch: int = MAX_BATCH,
        replies: Replies | None = None,
        model_name: str | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.generator = generator
        self.max_batch = max_batch
        self._replies = replies
        self._model_name = model_name
        self.batch_sizes: list[int] = []  # of every model call, for tests and benchmarks
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._serve, name="micro-batch", daemon=True)
        self._worker.start()

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        """Queue the request and wait for the batch it joins (the model's errors are raised here)."""
        request = _Request(history, self.generator.decode_for(settings))
        self._requests.put(request)
        return request.answer.result()

    @property
    def model_name(self) -> str:
        return self._model_name if self._model_name is not None else self.generator.model_name

    def explain(self, history: Sequence[Turn], reply: str) -> str:
        """The generator's explanation, made in the calling thread (rare, and not worth a batch)."""
        return self.generator.explain(history, reply)

    def close(self) -> None:
        """Stop the worker once the requests queued before this call are answered."""
        self._requests.put(None)
        self._worker.join()

    def _serve(self) -> None:
        while True:
            first = self._requests.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    waiting = self._requests.get_nowait()
                except queue.Empty:
                    break
                if waiting is None:
                    self._requests.put(None)  # stop after this batch
                    break
                batch.append(waiting)
            self._answer(batch)

    def _answer(self, batch: list[_Request]) -> None:
        """One model call per decode config in ``batch``; each request gets its reply or the call's error."""
        by_config: dict[DecodeConfig, list[_Request]] = {}
        for request in batch:
            by_config.setdefault(request.config, []).append(request)
        for config, group in by_config.items():
            self.batch_sizes.append(len(group))
            try:
                generated = (self._replies or self.generator.replies)([request.history for request in group], config)
            except Exception as error:  # handed to the waiting callers, who raise it in their own threads
                for request in group:
                    request.answer.set_exception(error)
                continue
            for request, reply in zip(group, generated, strict=True):
                request.answer.set_result(reply)
