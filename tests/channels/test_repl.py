"""The REPL: the piped contract, and the interactive loop driven through prompt_toolkit's own pipe input."""

from __future__ import annotations

import io
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from chatbot.channels.repl import run_interactive, run_piped
from chatbot.cli.chat import reply_printer
from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from chatbot.errors import ModelError
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
    run_interactive(lambda: manager, "ann", tmp_path / "state" / "history", shown.append, "welcome")
    assert shown == ["welcome", "echo: hello", "Started a new conversation.", "echo: second"]
    history = tmp_path / "state" / "history"
    assert "+hello" in history.read_text() and "+second" in history.read_text()
    assert stat.S_IMODE(history.stat().st_mode) == 0o600


def test_interactive_replies_keep_their_line_breaks(
    manager: DialogueManager, keyboard: PipeInput, tmp_path: Path
) -> None:
    shown: list[str] = []
    keyboard.send_text("hello\r/history\r\x04")
    run_interactive(lambda: manager, "ann", tmp_path / "history", shown.append, "welcome")
    assert shown[-1] == "you: hello\nbot: echo: hello"  # piped, the same reply is one line


def test_the_prompt_comes_before_the_model_and_the_first_message_waits_for_it(
    manager: DialogueManager, keyboard: PipeInput, tmp_path: Path
) -> None:
    shown: list[str] = []
    greeted = threading.Event()

    def show(text: str) -> None:
        shown.append(text)
        greeted.set()

    def load() -> DialogueManager:  # the model finishes loading only once the greeting is on the screen
        assert greeted.wait(timeout=10)
        return manager

    keyboard.send_text("hello\r\x04")
    with ThreadPoolExecutor(1) as loading:
        run_interactive(loading.submit(load).result, "ann", tmp_path / "history", show, "welcome")
    assert shown == ["welcome", "echo: hello"]


def test_a_model_that_fails_to_load_ends_the_loop_at_the_first_message(keyboard: PipeInput, tmp_path: Path) -> None:
    shown: list[str] = []

    def load() -> DialogueManager:
        raise ModelError("model.pt is damaged")

    keyboard.send_text("hello\r")
    with ThreadPoolExecutor(1) as loading, pytest.raises(ModelError, match="damaged"):
        run_interactive(loading.submit(load).result, "ann", tmp_path / "history", shown.append, "welcome")
    assert shown == ["welcome"]


@pytest.mark.parametrize("colour", [True, False])
def test_replies_are_coloured_only_when_asked(colour: bool, capsys: pytest.CaptureFixture[str]) -> None:
    reply_printer(colour)("hello")
    printed = capsys.readouterr().out
    assert printed == ("\x1b[36mhello\x1b[0m\n" if colour else "hello\n")


def test_ctrl_c_abandons_the_line_and_quit_leaves(
    manager: DialogueManager, keyboard: PipeInput, tmp_path: Path
) -> None:
    shown: list[str] = []
    keyboard.send_text("half a thought\x03/quit\r")  # Ctrl-C clears the line; the loop goes on
    run_interactive(lambda: manager, "ann", tmp_path / "history", shown.append, "welcome")
    assert shown == ["welcome"]


def test_chatbot_chat_in_a_real_terminal(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The installed command in a pseudo-terminal (TERM=dumb): a greeting and prompt, a reply, Ctrl-C abandoning
    a half-typed line, /history, the /why table, and Ctrl-D leaving with exit status 0."""
    import sys

    pexpect = pytest.importorskip("pexpect", reason="the terminal test needs pexpect (pip install -e '.[dev]')")
    environment = {**_terminal_environment(tmp_path), "CHATBOT_MODEL": str(tiny_model_dir)}
    child = pexpect.spawn(sys.executable, ["-m", "chatbot", "chat"], env=environment, encoding="utf-8", timeout=60)

    def at_prompt() -> None:
        """Wait for the prompt and for prompt_toolkit to take the terminal (echo off): keys sent earlier would
        reach the terminal driver's own line editing instead."""
        child.expect_exact("you> ")
        assert child.waitnoecho(timeout=10)

    try:
        child.expect_exact("Type a message; /help for commands, /quit to leave.")
        at_prompt()
        child.sendline("do you have any pets?")
        child.expect_exact("yes, a cat named pepper")
        at_prompt()
        child.send("half a thought")
        child.sendcontrol("c")  # abandons the line: nothing is sent
        at_prompt()
        child.sendline("/history 1")
        child.expect_exact("bot: yes, a cat named pepper")
        at_prompt()
        child.sendline("/why")
        child.expect_exact("looked at (attention)")
        child.expect_exact("Replies a beam search finds for this context")
        at_prompt()
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert "half a thought" not in (tmp_path / "state" / "chatbot" / "repl-history").read_text()


def test_chatbot_chat_in_a_terminal_checks_the_model_before_its_prompt(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A wrong --model fails before the prompt; weights damaged past what config.json shows fail at the first
    message (they load while the prompt shows): both one line on the terminal and exit status 2."""
    import shutil
    import sys

    pexpect = pytest.importorskip("pexpect", reason="the terminal test needs pexpect (pip install -e '.[dev]')")
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_model_dir, damaged)
    (damaged / "model.pt").write_bytes((damaged / "model.pt").read_bytes()[:1000])
    environment = _terminal_environment(tmp_path)
    for model, message in [(tmp_path / "missing", None), (damaged, "hello")]:
        child = pexpect.spawn(
            sys.executable,
            ["-m", "chatbot", "chat", "--model", str(model)],
            env=environment,
            encoding="utf-8",
            timeout=60,
        )
        try:
            if message is not None:
                child.expect_exact("you> ")
                assert child.waitnoecho(timeout=10)
                child.sendline(message)
            child.expect(r"Error: [^\r\n]*" + ("no model directory" if message is None else "model.pt is damaged"))
            output = child.before or ""
            child.expect(pexpect.EOF)
        finally:
            child.close()
        assert child.exitstatus == 2
        assert message is not None or "you> " not in output  # the missing directory: no prompt before the error


def _terminal_environment(tmp_path: Path) -> dict[str, str]:
    """A dumb terminal, and the state and database of a fresh user under ``tmp_path``, on one torch thread."""
    import os

    return {
        **os.environ,
        "TERM": "dumb",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "CHATBOT_DB": f"sqlite:///{tmp_path / 'chat.sqlite3'}",
        "CHATBOT_THREADS": "1",
    }
