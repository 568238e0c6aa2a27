"""Security properties not tied to one channel: no SQL is built by string formatting anywhere in the product, text
that looks like SQL is stored as text, and one user never sees another's history through /history or /export."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from chatbot.storage.engine import open_database
from chatbot.storage.store import sql_transaction
from tests.database import ScratchDatabase

REPO = Path(__file__).resolve().parents[2]
PRODUCT = [*sorted((REPO / "chatbot").rglob("*.py")), *sorted((REPO / "migrations").rglob("*.py"))]
SQL_CALLS = {"text", "execute", "exec_driver_sql", "executescript", "executemany"}


def _built_string(node: ast.expr) -> bool:
    """Whether ``node`` builds a string at run time: an f-string with a value in it, %, + or str.format."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


def _sql_built_by_formatting(path: Path) -> list[str]:
    """``file:line`` of each call that hands a database a string built at run time."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in SQL_CALLS and _built_string(node.args[0]):
            found.append(f"{path}:{node.lineno}")
    return found


def test_no_sql_is_built_by_string_formatting() -> None:
    assert len(PRODUCT) > 40  # the scan really reads the package
    assert [place for path in PRODUCT for place in _sql_built_by_formatting(path)] == []


def test_the_scan_catches_each_way_of_formatting_sql(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "session.execute(text(f'SELECT * FROM users WHERE name = {name}'))\n"
        "cursor.execute('DELETE FROM messages WHERE id = %s' % message_id)\n"
        "connection.exec_driver_sql('DROP TABLE ' + table)\n"
        "session.execute(text('SELECT {}'.format(column)))\n"
        "session.execute(text('SELECT 1'))\n"  # a constant is fine
    )
    assert sorted(place.rsplit(":", 1)[1] for place in _sql_built_by_formatting(bad)) == ["1", "2", "3", "4"]


SQL_LOOKING = st.sampled_from(
    ["'; DROP TABLE messages; --", "Robert'); DROP TABLE users;--", "1 OR 1=1", '" OR ""="', "%s %(x)s {0} \\x00"]
)


@given(text=SQL_LOOKING, name=SQL_LOOKING)
def test_text_that_looks_like_sql_is_stored_as_text(text: str, name: str) -> None:
    database = ScratchDatabase()
    manager = DialogueManager(EchoGenerator(), database.transaction)
    assert manager.respond("test", name, text, display_name=name).text == f"echo: {text}"
    manager.respond("test", "other", "still here")
    assert manager.respond("test", name, "/export").text == f"you: {text}\nbot: echo: {text}"
    assert [(talk.external_id, len(talk.turns)) for talk in database.conversations()] == [(name, 2), ("other", 2)]


MESSAGES = st.lists(
    st.tuples(st.sampled_from(["ann", "bob", "cy"]), st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)),
    max_size=12,
)


@given(messages=MESSAGES)
def test_history_and_export_show_only_the_askers_own_turns(messages: list[tuple[str, str]]) -> None:
    manager = DialogueManager(EchoGenerator(history_turns=1000), ScratchDatabase().transaction)
    said: dict[str, list[str]] = {"ann": [], "bob": [], "cy": []}
    for user, text in messages:
        marked = f"<{user}> {text}"  # each user's words carry their name, so a leak shows
        manager.respond("test", user, marked)
        said[user].append(marked)
    for user, own in said.items():
        for command in ("/export", "/history", "/history 1000"):
            shown = manager.respond("test", user, command).text
            assert all(line in shown for line in own)
            assert not any(f"<{other}>" in shown for other in said if other != user)


def test_the_sqlite_file_and_its_wal_and_shm_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "new" / "chat.sqlite3"
    old_umask = os.umask(0o022)  # the common default: files readable by everyone
    try:
        transaction = sql_transaction(open_database(f"sqlite:///{path}"))
        with transaction() as store:
            store.user("test", "ann")
        with transaction() as store:  # the connection stays open in the pool, so the WAL and SHM files exist
            assert store.user("test", "ann").id
        modes = {file.name: stat.S_IMODE(file.stat().st_mode) for file in path.parent.iterdir()}
    finally:
        os.umask(old_umask)
    assert modes == {"chat.sqlite3": 0o600, "chat.sqlite3-wal": 0o600, "chat.sqlite3-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
