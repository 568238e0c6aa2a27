"""The REPL: the piped contract, and the interactive loop driven through prompt_toolkit's own pipe input."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from chatbot.channels.repl import run_interactive, run_piped
from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from tests.database import ScratchDatabase


@pytest.fixture
def manager() -> DialogueManager:
    return DialogueManager(EchoGenerator(), ScratchDatabase().transaction)


def test_piped_mode_answers_each_line_once(manager: DialogueManager) -> None:
    out = io.StringIO()
    run_piped(manager, "ann", ["hi\n", "   \n", "multi\n", "/help\n", "/quit\n", "never read\n"], out)
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["echo: hi", "echo: multi"]
    assert lines[2].startswith("Commands:") and lines[2].endswith("/quit leaves.")
    assert len(lines) == 3


@pytest.fixture
def keyboard() -> Iterator[PipeInput]:
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        yield pipe


def test_interactive_loop_keeps_history_and_quits_on_ctrl_d(
    manager: DialogueManager, keyboard: PipeInput, tmp_path: Path
) -> None:
    shown: list[str] = []
    keyboard.send_text("hello\r\r/reset\rsecond\r\x04")  # Enter after each line, a blank line, then Ctrl-D
    run_interactive(manager, "ann", tmp_path / "state" / "history", shown.append, "welcome")
    assert shown == ["welcome", "echo: hello", "Started a new conversation.", "echo: second"]
    history = tmp_path / "state" / "history"
    assert "+hello" in history.read_text() and "+second" in history.read_text()
    assert stat.S_IMODE(history.stat().st_mode) == 0o600


def test_ctrl_c_abandons_the_line_and_quit_leaves(
    manager: DialogueManager, keyboard: PipeInput, tmp_path: Path
) -> None:
    shown: list[str] = []
    keyboard.send_text("half a thought\x03/quit\r")  # Ctrl-C clears the line; the loop goes on
    run_interactive(manager, "ann", tmp_path / "history", shown.append, "welcome")
    assert shown == ["welcome"]
