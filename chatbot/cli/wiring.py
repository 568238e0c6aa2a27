"""Wiring: where the commands find the shipped model and the default database, and how they build the dialogue
manager (model, database, locks, micro-batching) from their flags. The only place objects are put together."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import platformdirs

from chatbot.cli.config_file import APP_NAME

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from chatbot.config import DecodeConfig
    from chatbot.dialogue.manager import DialogueManager

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def default_model_dir() -> Path:
    """The shipped model: inside an installed wheel, or in data/default-model of this checkout."""
    installed = PACKAGE_DIR / "default_model"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "data" / "default-model"


def default_db_url() -> str:
    from chatbot.storage.engine import default_database_url

    return default_database_url(Path(platformdirs.user_data_dir(APP_NAME)))


def decode_config(model_dir: Path, options: dict[str, Any]) -> DecodeConfig:
    """The model's stored DecodeConfig with the decode flags that were given (popped from ``options``) applied."""
    from chatbot.config import DecodeConfig, from_dict
    from chatbot.training import config_json

    given = {f.name: options.pop(f.name, None) for f in dataclasses.fields(DecodeConfig)}
    stored = config_json.read_config(model_dir).get("decode", {})
    return from_dict(DecodeConfig, {**stored, **{k: v for k, v in given.items() if v is not None}})


def check_model(model_dir: Path | None, decode: dict[str, Any], persona: str | None) -> None:
    """Reject what ``build_manager`` would reject before it loads the weights (the model directory and its
    config.json, the decoding flags, a reply index that retrieval needs, the persona file) without importing torch,
    so that a command can show its prompt while the weights load; damaged weights still fail only at the load."""
    from chatbot.dialogue.persona import persona_for
    from chatbot.training.config_json import check_reply_index

    model_dir = model_dir or default_model_dir()
    check_reply_index(model_dir, decode_config(model_dir, dict(decode)))
    persona_for(model_dir, persona)


def set_threads(threads: int) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def session_timeout(text: str) -> timedelta | None:
    """``--session-timeout``: a duration, or None for 0, off or never."""
    from chatbot.storage.maintenance import parse_duration

    return None if text.strip() in ("0", "off", "never") else parse_duration(text)


def report(line: str) -> None:
    """Progress for the person running a command: stderr, so stdout stays machine-readable."""
    click.echo(line, err=True)


def open_db(db_url: str | None) -> sessionmaker[Session]:
    """The database at ``db_url`` (default: ``default_db_url``), migrated to the newest schema."""
    from chatbot.storage.engine import open_database

    return open_database(db_url or default_db_url())


def build_manager(
    model_dir: Path | None,
    database: sessionmaker[Session],
    decode: dict[str, Any],
    quantize: bool,
    idle_timeout: str,
    batching: tuple[int, int, contextlib.ExitStack] | None = None,
    cross_process_lock: bool = True,
    persona: str | None = None,
) -> DialogueManager:
    """The DialogueManager over the model and ``database`` (``open_db``), both checked before the first message;
    ``decode`` holds the decoding flags (None where not given). With ``batching`` (max batch above 1, torch threads, and
    the stack that stops what it starts), replies asked for at the same moment are generated together
    (micro_batch.py), by the model in a process of its own (model_process.py). ``cross_process_lock``: hold each
    conversation's advisory lock on Postgres (a connection for the whole turn, generation included) so that
    processes sharing the database answer it one message at a time; off where the channel orders each chat
    across processes itself (the Telegram inbox). ``persona``: the --persona option (dialogue/persona.py)."""
    from chatbot.dialogue.generator import Generator
    from chatbot.dialogue.manager import DialogueManager
    from chatbot.dialogue.persona import PersonaGenerator, persona_for
    from chatbot.generation import ResponseGenerator
    from chatbot.micro_batch import MicroBatchGenerator
    from chatbot.model_process import ModelProcess
    from chatbot.storage.locking import conversation_lock
    from chatbot.storage.store import sql_transaction
    from chatbot.storage.transactions import engine_of

    model_dir = model_dir or default_model_dir()
    identity = persona_for(model_dir, persona)  # a bad file fails here, before the weights load
    generator = ResponseGenerator(model_dir, decode_config(model_dir, decode), quantize)
    if batching is None:
        generator.load()  # it makes the replies: a broken model fails now, not at the first message
    shared_lock = conversation_lock(engine_of(database)) if cross_process_lock else None
    answerer: Generator = generator
    if batching is not None:
        max_batch, threads, resources = batching
        model_process = ModelProcess(model_dir, generator.decode_config, quantize, threads)
        resources.callback(model_process.close)
        # The model process makes the replies (a broken model failed as it started); this process loads the
        # weights only if someone asks /why.
        batcher = MicroBatchGenerator(generator, max_batch, model_process.replies, model_process.model_name)
        resources.callback(batcher.close)  # callbacks run last first: the batcher drains before the process stops
        answerer = batcher
    if identity is not None:
        answerer = PersonaGenerator(answerer, identity)
    return DialogueManager(answerer, sql_transaction(database), session_timeout(idle_timeout), shared_lock=shared_lock)
