"""The ``chatbot`` command: the one composition root. It reads flags, ``CHATBOT_*`` environment variables and the
TOML config file (in that order of precedence, then built-in defaults), builds the objects, and calls them.

This module is the group and its global options; each command or group of commands is a module of its own (chat,
train and index, eval, export and export-model, telegram, db), sharing the options in options.py and the wiring
in wiring.py. Heavy imports (torch, the model) happen inside the commands that need them, so ``--help`` stays
instant.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from chatbot import __version__
from chatbot.cli.chat import chat
from chatbot.cli.config_file import APP_NAME, config_map
from chatbot.cli.db import db_group
from chatbot.cli.evaluate import evaluate
from chatbot.cli.export import export, export_model
from chatbot.cli.group import ChatbotGroup
from chatbot.cli.telegram import telegram
from chatbot.cli.train import index, train
from chatbot.cli.wiring import default_model_dir

__all__ = ["cli", "default_model_dir", "main"]


@click.group(cls=ChatbotGroup, context_settings={"auto_envvar_prefix": "CHATBOT", "show_default": True})
@click.version_option(__version__, prog_name=APP_NAME)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CHATBOT_CONFIG",
    help="TOML config file. Top-level keys (db, model, threads) apply to every command; tables such as [train] "
    "to one. Default: config.toml in the user config directory, if present.",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """A generative chatbot on an attention seq2seq model: train it on your own dialogue logs, then talk to it in
    the terminal or on Telegram.

    Every option can also come from an environment variable (shown in each command's --help) or the config file;
    a flag beats the environment, which beats the config file, which beats the default.
    """
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.default_map = config_map(config_path, cli)


for command in (chat, train, index, export_model, evaluate, telegram, db_group, export):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``chatbot`` console script."""
    cli(prog_name=APP_NAME)
