"""``chatbot chat``: talk to the bot in the terminal (channels/repl.py), interactively or with piped input."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import platformdirs

from chatbot.cli.config_file import APP_NAME
from chatbot.cli.options import (
    db_option,
    decode_options,
    model_option,
    persona_option,
    quantize_option,
    session_timeout_option,
    threads_option,
)
from chatbot.cli.wiring import build_manager, check_model, open_db, set_threads

if TYPE_CHECKING:
    from chatbot.dialogue.manager import DialogueManager


@click.command()
@model_option()
@db_option()
@click.option(
    "--user",
    default=None,
    envvar="CHATBOT_USER",
    show_envvar=True,
    help="Whose conversation this is; each user has their own history. Default: your login name.",
)
@threads_option()
@quantize_option(default=True)
@session_timeout_option()
@persona_option()
@decode_options()
def chat(
    model: Path | None,
    db: str | None,
    user: str | None,
    threads: int,
    quantize: bool,
    session_timeout: str,
    persona: str | None,
    **decode: Any,
) -> None:
    """Talk to the bot in the terminal.

    With a terminal: the prompt shows while the model loads (a message sent sooner waits for it), line editing and
    input history, replies in colour (not with NO_COLOR set or TERM=dumb), Ctrl-C clears the line, Ctrl-D quits.
    With piped input: one message per line, exactly one reply line per message on stdout, exit 0 at the end of
    input. Lines starting with / are commands: /help, /reset (start a new conversation), /history [N] (the recent
    turns), /mode greedy|beam|sample, /beam N, /temperature T, /topp P and /settings [reset] (your decoding
    settings, stored with you; the decoding flags set the defaults), /why (how the last reply was made: model,
    decoding, score, then a table of the context pieces each reply piece attended to, its probability and the
    likeliest other pieces, and the replies a beam finds), /export (this conversation as text, on one line when
    piped), /forget (delete everything stored about you), /stats and /model (the database and the model), /quit.
    """
    from chatbot.channels import repl

    database = open_db(db)
    name = user or _login_name()

    def loaded() -> DialogueManager:
        set_threads(threads)
        return build_manager(model, database, decode, quantize, session_timeout, persona=persona)

    if not sys.stdin.isatty():
        repl.run_piped(loaded(), name, sys.stdin, sys.stdout)
        return
    # Importing torch and loading the weights take most of a start; they happen while the person types the first
    # message, and that message waits for them if it comes sooner. What can be checked without them fails first.
    check_model(model, decode, persona)
    history = Path(platformdirs.user_state_dir(APP_NAME)) / "repl-history"
    colour = sys.stdout.isatty() and os.environ.get("TERM") != "dumb" and "NO_COLOR" not in os.environ
    greeting = "Type a message; /help for commands, /quit to leave."
    with ThreadPoolExecutor(1, thread_name_prefix="model-load") as loading:
        manager = loading.submit(loaded)
        repl.run_interactive(manager.result, name, history, reply_printer(colour), greeting)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no $USER
        return "user"


def reply_printer(colour: bool) -> Callable[[str], None]:
    """Print a REPL reply, in the terminal's cyan when ``colour`` (a terminal that shows colour, and no NO_COLOR)."""

    def show(text: str) -> None:
        click.echo(click.style(text, fg="cyan") if colour else text, color=colour)

    return show
