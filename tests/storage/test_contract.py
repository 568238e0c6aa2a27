"""The store contract: SqlStore satisfies ConversationStore (statically, checked by mypy, and method by method at
run time), the protocol lists exactly what the dialogue manager calls, and the manager reaches no deeper."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

import chatbot.dialogue.manager
from chatbot.storage.contract import ConversationStore, Transaction
from chatbot.storage.store import SqlStore, sql_transaction

MANAGER = Path(chatbot.dialogue.manager.__file__)
CONTRACT_MODULES = {"chatbot.storage.contract", "chatbot.storage.records", "chatbot.storage.transactions"}


def as_contract(session: Session, sessions: sessionmaker[Session]) -> tuple[ConversationStore, Transaction]:
    """Never called: mypy checks that the SQL store and its transaction are what the manager is typed to take."""
    return SqlStore(session), sql_transaction(sessions)


def protocol_methods() -> set[str]:
    return {name for name, value in vars(ConversationStore).items() if callable(value) and not name.startswith("_")}


def test_the_sql_store_has_every_method_of_the_contract_with_its_signature() -> None:
    for name in protocol_methods():
        assert inspect.signature(getattr(SqlStore, name)) == inspect.signature(getattr(ConversationStore, name)), name


def test_the_contract_lists_exactly_what_the_manager_calls_on_a_store() -> None:
    tree = ast.parse(MANAGER.read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "store"
    }
    assert used == protocol_methods()


def test_the_manager_imports_only_the_contract_the_records_and_the_lock_from_storage() -> None:
    imported = {
        node.module
        for node in ast.walk(ast.parse(MANAGER.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    storage = {module for module in imported if module.startswith("chatbot.storage")}
    assert storage - {"chatbot.storage.locking"} <= CONTRACT_MODULES
    assert not any(module.startswith("sqlalchemy") for module in imported)
