"""Untrusted files: reading bytes that may be damaged or hostile, and saying in one line why a read failed.

Both a model directory (checkpoint.py) and an unfinished run (run_state.py, resume.py) are files a user can damage,
truncate or swap for someone else's; each reports the failure as one line naming the file, with the reason below.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import torch

from chatbot.errors import one_line


def load_torch(content: bytes) -> Any:
    """What a file ``torch.save`` wrote holds, on the CPU; only tensors and plain containers are unpickled, never
    code, so a hostile file cannot run anything. Raises whatever damaged bytes provoke (see ``reason``)."""
    with warnings.catch_warnings():  # damaged bytes can make torch.load warn (an odd pickle protocol) before it fails
        warnings.simplefilter("ignore")
        return torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)


def reason(error: BaseException) -> str:
    """The gist of a reader's error in one short line: torch.load's messages run to paragraphs of advice that does
    not apply here, so only their first sentence is kept."""
    text = one_line(error)
    _, marker, detail = text.partition("WeightsUnpickler error:")
    if marker:  # its advice is to load with weights_only=False, which would run whatever the file holds
        return "not a weights file: " + detail.split(" Check the documentation")[0].strip()[:120]
    return text.split(". ")[0][:160] or "it ends too early"
