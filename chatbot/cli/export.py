"""``chatbot export`` (stored conversations as JSONL that ``chatbot train`` reads) and ``chatbot export-model``
(the model and its beam search as one TorchScript file)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from chatbot.cli.options import db_option, decode_options, model_option
from chatbot.cli.wiring import decode_config, default_db_url, default_model_dir
from chatbot.errors import ChatbotError


@click.command()
@db_option()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSONL file to write.")
@click.option("--user", "who", metavar="CHANNEL[:ID]", help="Only this channel's conversations, or one user's/chat's.")
@click.option("--since", metavar="DATE", help="Only conversations started at or after this ISO date/time (UTC).")
@click.option("--until", metavar="DATE", help="Only conversations started before this ISO date/time (UTC).")
def export(db: str | None, out: Path, who: str | None, since: str | None, until: str | None) -> None:
    """Write stored conversations (all, or those --user/--since/--until pick) as JSONL in the format `chatbot
    train` reads, to retrain on the bot's own conversations."""
    from chatbot.storage.engine import open_database
    from chatbot.storage.export import export_conversations
    from chatbot.storage.records import Selection
    from chatbot.storage.store import sql_transaction

    channel, _, external_id = (who or "").partition(":")
    selection = Selection(channel or None, external_id or None, _moment(since, "--since"), _moment(until, "--until"))
    count = export_conversations(sql_transaction(open_database(db or default_db_url())), out, selection)
    click.echo(f"wrote {count} conversations to {out}", err=True)


def _moment(text: str | None, flag: str) -> datetime | None:
    """An ISO date or date-time as an aware datetime (UTC unless it names a zone); None stays None."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise ChatbotError(
            f"{flag} {text!r} is not an ISO date or date-time, such as 2026-11-01 or 2026-11-01T08:00"
        ) from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


@click.command("export-model")
@model_option()
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="TorchScript file to write."
)
@decode_options()
def export_model(model: Path | None, out: Path, **decode: Any) -> None:
    """Write the model and its beam search as one TorchScript file that runs with torch alone.

    Load it with torch.jit.load(FILE); calling it with one context's piece ids, a (1, length) int64 tensor, returns
    the n-best replies (piece ids) and their scores, decoded with the model's settings and the decoding flags
    (sampling is exported as greedy, and retrieved candidates are not exported: the reply is the beam's). The
    file carries the sentencepiece model as the buffer tokenizer_model and
    the context cap as max_source_tokens: build the context text as "<usr> message" (earlier turns before it).
    """
    from chatbot.scripting import script
    from chatbot.training import checkpoint

    model_dir = model or default_model_dir()
    config = decode_config(model_dir, decode)
    bundle = checkpoint.load(model_dir)
    scripted = script(bundle.model, config, bundle.tokenizer, bundle.context.max_source_tokens)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    scripted.save(str(partial))
    partial.replace(out)  # atomically: a crash never leaves half a file at --out
    click.echo(json.dumps({"model": str(model_dir), "out": str(out), "decode": dataclasses.asdict(config)}, indent=2))
