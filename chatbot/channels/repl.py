"""The terminal REPL: lines in, replies out, through the DialogueManager.

Two modes. Piped (stdin is not a terminal): one message per input line and exactly one reply line per message on
stdout, so scripts can pair them up (a reply's line breaks become spaces); blank lines are skipped, ``/quit`` ends.
Interactive (a terminal): prompt_toolkit gives line editing and a persistent input history; Ctrl-C clears the line
and Ctrl-D quits; replies keep their line breaks (the tables of /why and /history), and ``show`` may colour them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from chatbot.dialogue.commands import parse_command
from chatbot.dialogue.manager import DialogueManager

CHANNEL = "terminal"
QUIT_COMMANDS = ("quit", "exit")
REPL_HELP = " /quit leaves."


def answer(manager: Callable[[], DialogueManager], user: str, line: str) -> str | None:
    """The answer to an input line, or None when the line asks to quit; ``manager`` gives the DialogueManager,
    waiting for it if it is still being built (the interactive REPL loads the model while the prompt shows)."""
    command = parse_command(line)
    if command is not None and command.name in QUIT_COMMANDS:
        return None
    reply = manager().respond(CHANNEL, user, line, admin=True)  # whoever runs the terminal owns the database
    return reply.text + (REPL_HELP if command is not None and command.name == "help" else "")


def run_piped(manager: DialogueManager, user: str, lines: Iterable[str], out: TextIO) -> None:
    """Answer each non-blank line with exactly one line on ``out``, until the input ends or ``/quit``."""
    for line in lines:
        message = line.strip()
        if not message:
            continue
        text = answer(lambda: manager, user, message)
        if text is None:
            return
        out.write(" ".join(text.splitlines()) + "\n")  # one line per reply, whatever the generator produced
        out.flush()


def run_interactive(
    manager: Callable[[], DialogueManager], user: str, history_file: Path, show: Callable[[str], None], greeting: str
) -> None:
    """A prompt_toolkit loop with line editing and history; ``show`` prints a reply. ``manager`` is called for each
    message and may block until the model has loaded (the prompt shows before); whatever it raises ends the loop."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    _create_private(history_file)
    session: PromptSession[str] = PromptSession(history=FileHistory(str(history_file)))
    show(greeting)
    while True:
        try:
            line = session.prompt("you> ").strip()
        except KeyboardInterrupt:
            continue  # Ctrl-C abandons the line being typed
        except EOFError:
            return  # Ctrl-D
        if not line:
            continue
        text = answer(manager, user, line)
        if text is None:
            return
        show(text)


def _create_private(path: Path) -> None:
    """Create ``path`` (and its folder) readable by the owner only: the input history holds what the user typed."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
