"""Resume: an unfinished run, kept on disk while it trains so that a killed run can continue exactly.

``OUT.partial/`` beside the model directory ``OUT`` holds ``run.json`` (the sources and every setting: a resumed
run must be the same run), ``tokenizer.model``, ``metrics.jsonl`` (the history so far, line by line) and
``state.pt`` (the run state: training/run_state.py writes, reads and checks it, atomically). This module owns the
directory: it starts one, and reopens one only for the same run (settings outside ``MAY_CHANGE`` equal, the
tokenizer the state trained with). The finished model directory is written, then ``OUT.partial`` is removed. A
directory that cannot be continued exactly is a one-line ChatbotError that says to start over.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from chatbot.config import TokenizerConfig
from chatbot.errors import ChatbotError
from chatbot.text.tokenizer import Tokenizer
from chatbot.training import run_state
from chatbot.training.run_state import START_OVER, RunState

STATE, RUN, TOKENIZER = "state.pt", "run.json", "tokenizer.model"
# Settings a resumed run may change: they extend or bound the run, say where it runs or how its result is stored,
# not what it computes.
MAY_CHANGE = frozenset(
    {"epochs", "max_steps", "time_budget_minutes", "patience", "device", "checkpoint_every", "weights"}
)


def partial_dir(out: Path) -> Path:
    """Where the unfinished run that will become ``out`` keeps its state."""
    return out.with_name(out.name + ".partial")


def has_state(directory: Path) -> bool:
    """Whether ``directory`` holds a run that trained far enough to save a state (one worth resuming)."""
    return (directory / STATE).is_file()


def begin(directory: Path, run: dict[str, Any], tokenizer: Tokenizer) -> None:
    """Start a fresh unfinished-run directory (replacing any old one) with the run's settings and tokenizer."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    _write_atomically(directory / TOKENIZER, tokenizer.model_proto)
    _write_atomically(directory / RUN, (json.dumps(run, indent=2) + "\n").encode())


def reopen(directory: Path, run: dict[str, Any], tokenizer_config: TokenizerConfig) -> tuple[Tokenizer, RunState]:
    """The tokenizer and run state of the unfinished run in ``directory``, after checking that ``run`` (this
    invocation's settings) is the same run."""
    if not has_state(directory):
        raise ChatbotError(f"nothing to resume: {directory / STATE} does not exist (it is written at each validation)")
    saved = run_state.read(directory / RUN, lambda content: json.loads(content.decode("utf-8")))
    tokenizer = run_state.read(directory / TOKENIZER, lambda content: _tokenizer(content, tokenizer_config))
    state = run_state.load(directory / STATE)
    if not isinstance(saved, dict):
        raise ChatbotError(f"{directory / RUN} is damaged (not a JSON object); {START_OVER}")
    if not state.trained_with(tokenizer):
        raise ChatbotError(
            f"{directory / TOKENIZER} is not the tokenizer {directory / STATE} was trained with; {START_OVER}"
        )
    changed = sorted(_differences(saved, run))
    if changed:
        raise ChatbotError(
            f"cannot resume {directory}: this run differs in {', '.join(changed)}; "
            "use the original settings, or --force to start over"
        )
    return tokenizer, state


def _tokenizer(content: bytes, config: TokenizerConfig) -> Tokenizer:
    try:
        return Tokenizer(content, config)
    except RuntimeError as error:  # sentencepiece's message names its own source line, not the problem
        raise ValueError("not a sentencepiece model") from error


def save_state(directory: Path, state: RunState) -> None:
    """Replace ``state.pt`` atomically: a kill leaves either the old state or the new one, never a torn file."""
    run_state.save(directory / STATE, state)


def finish(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> set[str]:
    """Dotted names of the settings that differ, ignoring those in MAY_CHANGE."""
    names: set[str] = set()
    for section in saved.keys() | current.keys():
        old, new = saved.get(section), current.get(section)
        if isinstance(old, dict) and isinstance(new, dict):
            names |= {
                f"{section}.{key}"
                for key in old.keys() | new.keys()
                if key not in MAY_CHANGE and old.get(key) != new.get(key)
            }
        elif old != new:
            names.add(section)
    return names


def _write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)
