"""ModelProcess: a ResponseGenerator's batched replies, computed in a process of its own.

Why a process: in a bot serving many chats, the event loop and the handler threads hold Python's GIL most of the
time, and the model's decode loop gives up and retakes the GIL around each of its thousands of small torch
operations, waiting each time. Measured with the shipped model, a batch of 26 replies took 24 ms alone and
270-350 ms inside a busy bot; in a process of its own, with its own interpreter and GIL, it takes what it takes
alone, and the bot's process keeps its CPU for Telegram and the database.

Control flow: ``ModelProcess(...)`` starts the process (spawned, so nothing of the parent's threads or torch state
is inherited) and waits until it has loaded the model, so a broken model fails at start. ``replies`` sends one
batch of histories with its decode config down a pipe and waits for the replies, or for the error the process
met, raised again here. The caller is the micro-batcher's one worker thread (micro_batch.py); a lock keeps any
other caller's batch from interleaving. A process that dies (killed, out of memory) fails the batch it was
computing, and the next batch starts a fresh one. ``close`` stops it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from chatbot.config import DecodeConfig
from chatbot.dialogue.generator import Generated
from chatbot.dialogue.types import Role, Turn
from chatbot.errors import ModelError

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # importing torch and loading a model; generous for a slow disk
STOP_TIMEOUT_S = 10.0


class ModelProcess:
    """Replies from the model in ``model_dir`` (decoded by ``decode``, int8 when ``quantized``, on ``threads``
    CPU threads, 0 for PyTorch's default), computed in a child process; ``model_name`` is the loaded model's."""

    def __init__(self, model_dir: Path, decode: DecodeConfig, quantized: bool, threads: int = 0) -> None:
        self._arguments = (model_dir, decode, quantized, threads)
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self.model_name = ""
        self._start()

    def replies(self, histories: Sequence[Sequence[Turn]], config: DecodeConfig) -> list[Generated]:
        """``ResponseGenerator.replies(histories, config)``, computed in the model's process."""
        with self._lock:
            if self._connection is None:
                self._start()
            assert self._connection is not None
            try:
                self._connection.send((list(map(list, histories)), config))
                status, result = self._connection.recv()
            except (EOFError, OSError):
                code = self._stopped()
                raise ModelError(f"the model process stopped unexpectedly (exit code {code})") from None
        if status == "error":
            raise result
        replies: list[Generated] = result
        return replies

    @property
    def pid(self) -> int | None:
        """The process's id (None while none runs)."""
        return None if self._process is None else self._process.pid

    def close(self) -> None:
        """Stop the process once it has finished the batch it is on."""
        with self._lock:
            if self._connection is not None:
                with contextlib.suppress(OSError):  # already gone
                    self._connection.send(None)
            self._stopped()

    def _start(self) -> None:
        """Spawn the process and wait for it to report the model loaded (its error, if loading failed)."""
        spawn = multiprocessing.get_context("spawn")
        parent, child = spawn.Pipe()
        process = spawn.Process(target=serve, args=(child, *self._arguments), name="chatbot-model", daemon=True)
        process.start()
        child.close()
        self._process, self._connection = process, parent
        if not parent.poll(START_TIMEOUT_S):
            self._stopped()
            raise ModelError(f"the model process did not start within {START_TIMEOUT_S:.0f} s")
        try:
            status, result = parent.recv()
        except EOFError:
            code = self._stopped()
            raise ModelError(f"the model process stopped while loading the model (exit code {code})") from None
        if status == "error":
            self._stopped()
            raise result
        self.model_name = result
        logger.info("model %s loaded in process %s", result, process.pid)

    def _stopped(self) -> int | None:
        """Wait for the process to end (ending it if it will not), forget it, and return its exit code."""
        process, self._process = self._process, None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if process is None:
            return None
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join(STOP_TIMEOUT_S)
        return process.exitcode


# A full batch of everyday messages of every length, answered before the process reports ready.
_SAID = (
    "so what do you like to do on the weekends when you are not busy with work or school",
    "i just got back from a long trip to the mountains with my family and it was amazing",
)
WARM_UP = tuple(" ".join(_SAID[i % 2].split()[: 1 + (i * 7) % 18]) for i in range(32))


def serve(connection: Connection, model_dir: Path, decode: DecodeConfig, quantized: bool, threads: int) -> None:
    """The model process: load the model, report ("ready", its name), then answer each (histories, config) with
    ("ok", replies) or ("error", exception) until told None or the pipe closes."""
    import torch

    from chatbot.generation import ResponseGenerator

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent stops us
    # A batch of one reply runs on one thread: on two, the idle OpenMP thread spins after every step, which tripled
    # the model's CPU per reply at 50 msg/s (9 against 23 ms) and took the cores the bot's own process needed.
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = ResponseGenerator(model_dir, decode, quantized)
        generator.load()
        # Replies before "ready", on the thread that serves: the reply index opens, the kernels warm up and the
        # memory a full batch needs is taken now, not during the first users' batches (a process that grew to its
        # working set under load read as a leak in the soak: +40 MiB over the first minutes, then flat).
        generator.replies([[Turn(Role.USER, "hello")]], decode)
        earlier = [Turn(Role.USER, _SAID[0]), Turn(Role.BOT, _SAID[1])]  # contexts of one, two and three turns
        generator.replies([[*earlier[: i % 3], Turn(Role.USER, text)] for i, text in enumerate(WARM_UP)], decode)
    except Exception as error:  # handed to the parent, which raises it at start
        connection.send(("error", _sendable(error)))
        return
    connection.send(("ready", generator.model_name))
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            return
        histories, config = request
        torch.set_num_threads(1 if len(histories) == 1 else threads)
        try:
            connection.send(("ok", generator.replies(histories, config)))
        except Exception as error:  # handed to the waiting caller, who raises it in its own thread
            connection.send(("error", _sendable(error)))


def _sendable(error: Exception) -> Exception:
    """``error`` if it survives pickling, else a RuntimeError with its text (the parent raises what it gets)."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error
