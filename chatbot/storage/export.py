"""Export: stored conversations written as the JSONL training format, so the bot can be retrained on its own logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chatbot.corpora.jsonl import write_jsonl
from chatbot.storage.records import Selection, StoredConversation
from chatbot.storage.store import SqlStore, SqlTransaction


def conversation_record(conversation: StoredConversation) -> dict[str, Any]:
    """One JSONL line: a stable id, the start time, and the turns with ``user``/``bot`` as speakers."""
    return {
        "id": conversation.export_id,
        "started_at": conversation.started_at.isoformat(),
        "turns": [{"speaker": turn.role.value, "text": turn.text} for turn in conversation.turns],
    }


def export_conversations(transaction: SqlTransaction, out: Path, selection: Selection | None = None) -> int:
    """Write the stored conversations ``selection`` picks (default: all) to ``out`` (atomically); returns how many
    were written."""

    def records(store: SqlStore) -> Iterator[dict[str, Any]]:
        for conversation in store.conversations(selection):
            yield conversation_record(conversation)

    with transaction() as store:
        return write_jsonl(out, records(store))
