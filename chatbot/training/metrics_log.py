"""Metrics log: each history entry as it happens — a line in a JSONL file, and optionally TensorBoard scalars.

The JSONL file can be followed while training runs (``tail -f``, or pandas); TensorBoard needs the optional
``tensorboard`` package (``pip install 'chatbot[tensorboard]'``) and shows every numeric field by step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from chatbot.errors import ChatbotError


class MetricsLog:
    """Write history entries to ``jsonl`` (rewritten from ``history`` first, for a resumed run) and to a
    TensorBoard ``tensorboard`` directory when one is given. Use as a context manager, or call ``close``."""

    def __init__(self, jsonl: Path, history: Sequence[dict[str, Any]] = (), tensorboard: Path | None = None) -> None:
        self._writer = _summary_writer(tensorboard) if tensorboard is not None else None
        self._file: IO[str] = jsonl.open("w", encoding="utf-8")
        for entry in history:
            self.record(entry)

    def record(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        if self._writer is not None:
            for name, value in entry.items():
                if name != "step" and isinstance(value, (int, float)):
                    self._writer.add_scalar(name, value, global_step=entry["step"])
            self._writer.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _summary_writer(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ChatbotError("--tensorboard needs the tensorboard package: pip install 'chatbot[tensorboard]'") from error
    return SummaryWriter(log_dir=str(directory))
