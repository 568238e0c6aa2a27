"""Fuzzed dialogue logs: every reader turns any bytes into conversations of clean text or a one-line DataError.

Each format gets arbitrary bytes, valid documents cut short or with bytes overwritten, valid JSON and YAML with a
wrong type (or no value) in any field, megabyte lines and odd encodings. The contract: ``load_corpus`` either yields
conversations whose ids, speakers and texts are str that UTF-8 can write, or raises DataError whose message is one
line starting with the file (and, for the line-based JSONL/CSV/TSV, the line); nothing else escapes.
"""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, reject
from hypothesis import strategies as st

from chatbot.cli import cli
from chatbot.corpora import load_corpus
from chatbot.corpora.types import Conversation
from chatbot.errors import DataError

FILE_NAMES = ("log.jsonl", "pairs.csv", "pairs.tsv", "dialogues.yml", "result.json")
LINE_BASED = (".jsonl", ".csv", ".tsv")
MEGABYTE = 2**20


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the whole module: every example overwrites its format's file there."""
    return tmp_path_factory.mktemp("fuzz")


def read(path: Path, data: bytes) -> list[Conversation] | DataError:
    """Write ``data`` to ``path``, read it back and check that the outcome keeps the contract."""
    path.write_bytes(data)
    try:
        conversations = list(load_corpus(str(path)))
    except DataError as error:
        check_error(path, data, error)
        return error
    for conversation in conversations:
        check_conversation(conversation)
    return conversations


def check_error(path: Path, data: bytes, error: DataError) -> None:
    message = str(error)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}:") and error.path == str(path), message
    if path.suffix in LINE_BASED:
        assert error.line is not None, message
    if error.line is not None:
        # splitlines counts every line break any of the formats knows (YAML's include \r, U+0085, U+2028).
        assert 1 <= error.line <= len(data.decode("utf-8", "replace").splitlines()) + 1, message


def check_conversation(conversation: Conversation) -> None:
    assert isinstance(conversation, Conversation) and writable(conversation.id)
    for turn in conversation.turns:
        assert writable(turn.speaker) and writable(turn.text) and turn.text.strip() == turn.text != ""


def writable(text: object) -> bool:
    """A str that UTF-8 can encode: the split hashes ids and the tokenizer writes texts as UTF-8."""
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ---- valid documents, as Python values, and how each format writes them ----

texts = st.text(max_size=20)
# A raw NUL is not text (JSON escapes it), and the CSV writer leaves it raw.
cells = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
ids = st.integers(min_value=0, max_value=2**40)
turn_values = texts | st.fixed_dictionaries({"speaker": texts, "text": texts})
jsonl_records = st.lists(
    st.fixed_dictionaries({"turns": st.lists(turn_values, max_size=4)}, optional={"id": texts | ids}),
    min_size=1,
    max_size=4,
)
table_rows = st.lists(st.lists(cells, min_size=3, max_size=3), min_size=1, max_size=5)
yaml_documents = st.fixed_dictionaries(
    {"conversations": st.lists(st.lists(texts | st.integers() | st.floats(), max_size=4), max_size=4)},
    optional={"categories": st.lists(texts, max_size=2)},
)
seconds = st.integers(min_value=0, max_value=2**31)
fragments = st.lists(texts | st.fixed_dictionaries({"type": st.just("bold"), "text": texts}), max_size=3)
telegram_messages = st.fixed_dictionaries(
    {"id": ids, "type": st.sampled_from(["message", "service"]), "text": texts | fragments},
    optional={"from": texts, "from_id": texts, "date_unixtime": seconds.map(str)},
).map(lambda message: {"from_id": "user1", "date": "2024-05-01T12:00:00", **message})
telegram_chats = st.fixed_dictionaries(
    {"id": ids, "name": texts, "type": st.just("personal_chat"), "messages": st.lists(telegram_messages, max_size=4)}
)
telegram_exports = telegram_chats | st.fixed_dictionaries(
    {"chats": st.fixed_dictionaries({"list": st.lists(telegram_chats, max_size=3)})}
)
DOCUMENTS: dict[str, st.SearchStrategy[Any]] = {
    ".jsonl": jsonl_records,
    ".csv": table_rows,
    ".tsv": table_rows,
    ".yml": yaml_documents,
    ".json": telegram_exports,
}


@dataclass(frozen=True)
class RawJson:
    """A JSON literal that json.dumps does not write: a 5000-digit number, a lone surrogate escape, deep nesting."""

    text: str

    def marker(self, ensure_ascii: bool) -> str:
        return json.dumps(f"\x00raw:{self.text}", ensure_ascii=ensure_ascii)


RAW_JSON = [
    RawJson(text)
    for text in ("1" * 5000, "-" + "9" * 400, "1" * 400, "1e400", "NaN", "-Infinity", '"\\ud83d"', '"a\\udc00"')
] + [RawJson("[" * 5000 + "]" * 5000), RawJson('{"a":' * 3000 + "0" + "}" * 3000)]


def to_json(value: Any, ensure_ascii: bool) -> str:
    text = json.dumps(value, ensure_ascii=ensure_ascii, default=lambda raw: f"\x00raw:{raw.text}")
    for raw in RAW_JSON:
        text = text.replace(raw.marker(ensure_ascii), raw.text)
    return text


def render(suffix: str, document: Any, ensure_ascii: bool = False) -> str:
    """The text a file of format ``suffix`` holding ``document`` would have."""
    if suffix == ".jsonl":
        return "".join(to_json(record, ensure_ascii) + "\n" for record in document)
    if suffix in (".csv", ".tsv"):
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",")
        writer.writerows(document)
        return buffer.getvalue()
    if suffix == ".yml":
        return yaml.safe_dump(document, allow_unicode=not ensure_ascii)
    return to_json(document, ensure_ascii)


@st.composite
def valid_files(draw: st.DrawFn, suffix: str) -> str:
    return render(suffix, draw(DOCUMENTS[suffix]), ensure_ascii=draw(st.booleans()))


# ---- the properties ----


@pytest.mark.parametrize("name", FILE_NAMES)
@given(data=st.binary(max_size=3000))
def test_arbitrary_bytes(scratch: Path, name: str, data: bytes) -> None:
    read(scratch / name, data)


@pytest.mark.parametrize("name", FILE_NAMES)
@given(draw=st.data())
def test_valid_documents_read_and_every_truncation_keeps_the_contract(
    scratch: Path, name: str, draw: st.DataObject
) -> None:
    data = draw.draw(valid_files(Path(name).suffix)).encode("utf-8")
    assert isinstance(read(scratch / name, data), list)
    cut = draw.draw(st.integers(min_value=0, max_value=len(data)), label="cut")
    read(scratch / name, data[:cut])


@pytest.mark.parametrize("name", FILE_NAMES)
@given(draw=st.data())
def test_valid_documents_with_bytes_overwritten(scratch: Path, name: str, draw: st.DataObject) -> None:
    data = bytearray(draw.draw(valid_files(Path(name).suffix)).encode("utf-8"))
    for _ in range(draw.draw(st.integers(min_value=1, max_value=4), label="flips")):
        position = draw.draw(st.integers(min_value=0, max_value=len(data)), label="position")
        data[position : position + 1] = draw.draw(st.binary(min_size=1, max_size=3), label="bytes")
    read(scratch / name, bytes(data))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
DELETE = object()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Where a value can be replaced: the document itself and every key or index below it."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from paths(child, (*prefix, key))


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``document`` with ``value`` at ``path`` (DELETE removes the key or item there)."""
    if not path:
        return {} if value is DELETE else value
    copied = copy.deepcopy(document)
    parent = copied
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copied


@pytest.mark.parametrize("name", ["log.jsonl", "dialogues.yml", "result.json"])
@given(draw=st.data())
def test_wrong_types_and_missing_keys_in_any_field(scratch: Path, name: str, draw: st.DataObject) -> None:
    suffix = Path(name).suffix
    document = draw.draw(DOCUMENTS[suffix], label="document")
    # A JSONL document is the list of its lines, not a value in the file.
    path = draw.draw(st.sampled_from([path for path in paths(document) if path or suffix != ".jsonl"]), label="path")
    wrong = json_values | st.just(DELETE) | (st.sampled_from(RAW_JSON) if suffix != ".yml" else st.nothing())
    read(scratch / name, render(suffix, replaced(document, path, draw.draw(wrong, label="value"))).encode("utf-8"))


@pytest.mark.parametrize("name", ["pairs.csv", "pairs.tsv"])
@given(
    rows=st.lists(st.lists(texts | st.sampled_from(["context", "response", "conversation_id"]), max_size=4)),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONE]),
)
def test_tables_of_any_shape(scratch: Path, name: str, rows: list[list[str]], quoting: int) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter="\t" if name.endswith(".tsv") else ",", quoting=quoting, escapechar="\\")
    try:
        writer.writerows(rows)
    except csv.Error:  # QUOTE_NONE has no way to write a row of one empty cell
        reject()
    read(scratch / name, buffer.getvalue().encode("utf-8"))


# Plain scalars YAML resolves to a type and then fails to build, explicit tags, aliases, flow collections.
TRICKY_YAML = [
    "2001-13-45",
    "2001-02-30 10:00:00 +99:00",
    "0000-01-01",
    "1" * 5000,
    "0x" + "f" * 5000,
    "yes",
    "~",
    ".nan",
    "-.inf",
    "1:30:00",
    "!!binary not*base64",
    "!!timestamp nope",
    "!!bool maybe",
    "!!int x",
    "!!float x",
    "!!python/object/apply:os.system ['true']",
    "!!set {a, b}",
    "!!omap [a]",
    "&anchor [*anchor]",
    "*undefined",
    "{a: b}",
    "[a, [b]]",
    "'single ''quoted'''",
    '"\\ud83d\\ude00 and a lone \\ud83d"',
    '"\\U7fffffff"',
    "a control \x01 character",
    "|\n    literal\n    block",
    "<<: *undefined",
    "? [a]\n    : b",
]
yaml_scalars = st.sampled_from(TRICKY_YAML) | texts.map(json.dumps)


@given(conversations=st.lists(st.lists(yaml_scalars, min_size=1, max_size=3), max_size=3))
def test_tricky_yaml_scalars(scratch: Path, conversations: list[list[str]]) -> None:
    body = "".join(f"- - {items[0]}\n" + "".join(f"  - {item}\n" for item in items[1:]) for items in conversations)
    read(scratch / "dialogues.yml", f"conversations:\n{body}".encode())


surrogates = st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)
texts_with_surrogates = st.text(alphabet=st.characters() | surrogates, min_size=1, max_size=10)


@pytest.mark.parametrize("name", ["log.jsonl", "result.json", "dialogues.yml"])
@given(text=texts_with_surrogates)
def test_lone_surrogates_escaped_in_json_and_yaml(scratch: Path, name: str, text: str) -> None:
    if name.endswith(".jsonl"):
        content = json.dumps({"turns": [text, "ok"]})
    elif name.endswith(".yml"):
        content = f"conversations:\n- - {json.dumps(text)}\n  - ok\n"
    else:
        message = {"id": 1, "type": "message", "text": text, "from_id": "u", "date_unixtime": "0"}
        content = json.dumps({"id": 1, "messages": [message]})
    outcome = read(scratch / name, content.encode("ascii"))  # json.dumps escapes every surrogate
    assert isinstance(outcome, list), outcome


ENCODINGS = ["utf-8-sig", "crlf", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "nul"]


def encoded(text: str, encoding: str, position: int) -> bytes:
    if encoding == "crlf":
        return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    if encoding == "nul":
        data = text.encode("utf-8")
        return data[:position] + b"\x00" + data[position:]
    return text.encode(encoding, errors="replace")


@pytest.mark.parametrize("name", FILE_NAMES)
@given(draw=st.data())
def test_odd_encodings(scratch: Path, name: str, draw: st.DataObject) -> None:
    text = draw.draw(valid_files(Path(name).suffix), label="document")
    encoding = draw.draw(st.sampled_from(ENCODINGS), label="encoding")
    data = encoded(text, encoding, draw.draw(st.integers(min_value=0, max_value=len(text)), label="position"))
    outcome = read(scratch / name, data)
    if encoding in ("utf-8-sig", "crlf"):
        assert outcome == read(scratch / name, text.encode("utf-8"))  # the same conversations as plain UTF-8
    elif encoding in ("utf-16", "utf-32"):
        assert isinstance(outcome, DataError) and outcome.reason == "not UTF-8 text but UTF-16; save it as UTF-8"
    elif not decodes(data) or b"\x00" in data:
        assert isinstance(outcome, DataError) and outcome.reason.startswith("not UTF-8 text"), outcome


def megabyte_document(suffix: str) -> str:
    long_text = "word " * (MEGABYTE // 5)
    message = {"id": 1, "type": "message", "text": long_text, "from_id": "u", "date_unixtime": "0"}
    documents: dict[str, Any] = {
        ".jsonl": [{"turns": [long_text, "short"]}],
        ".csv": [["context", "response"], [long_text, "short"]],
        ".tsv": [["context", "response"], [long_text, "short"]],
        ".yml": {"conversations": [[long_text, "short"]]},
        ".json": {"id": 1, "messages": [message]},
    }
    return render(suffix, documents[suffix])


@pytest.mark.parametrize("name", FILE_NAMES)
def test_a_megabyte_line(scratch: Path, name: str) -> None:
    suffix = Path(name).suffix
    outcome = read(scratch / name, megabyte_document(suffix).encode("utf-8"))
    if suffix in (".csv", ".tsv"):  # the csv module's field size limit (128 KiB) is a clear error at its line
        assert isinstance(outcome, DataError) and outcome.line == 2 and "field limit" in outcome.reason
    else:
        assert isinstance(outcome, list) and len(outcome[0].turns[0].text) > MEGABYTE // 2
    read(scratch / name, b"x" * MEGABYTE)  # a megabyte of one line that means nothing


# ---- through the CLI: the kinds of file the fuzzing found, as `chatbot train` reports them ----

# Each format's file and the one line `train` must print for it; {path} stands for the file.
FOUND_BY_FUZZING = {
    "log.jsonl": (
        '{"turns": ["hi", "hello"]}\n' + "[" * 100_000 + "\n",
        "{path}:2: invalid JSON: nested too deeply",
    ),
    "pairs.csv": (
        "context,response\nhi,hello\nbonjour,\udce7a va\n",  # a latin-1 byte on line 3
        "{path}:3: not UTF-8 text (byte 0xe7); save it as UTF-8",
    ),
    "pairs.tsv": (
        "\udcff\udcfec\x00o\x00n\x00t\x00e\x00x\x00t\x00",  # the start of "context" in UTF-16
        "{path}:1: not UTF-8 text but UTF-16; save it as UTF-8",
    ),
    "dialogues.yml": (
        "conversations:\n- - hi\n  - 2001-13-45\n",
        "{path}:3: invalid YAML: cannot read '2001-13-45' as timestamp (quote it to keep it as text) (column 5)",
    ),
    "result.json": (
        '{"id": 1, "messages": [{"id": 1, "type": "message", "text": "hi", "from_id": "u", "date_unixtime": 1'
        + "0" * 400  # an integer JSON reads but a float cannot hold
        + "}]}",
        '{path}: chat 1, message 1: expected an ISO "date" or a "date_unixtime"',
    ),
}


@pytest.mark.parametrize("name", FILE_NAMES)
def test_train_reports_a_fuzz_found_file_on_one_line_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for variable in ("CHATBOT_DB", "CHATBOT_MODEL", "CHATBOT_CONFIG", "CHATBOT_USER"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    content, expected = FOUND_BY_FUZZING[name]
    bad = tmp_path / name
    bad.write_bytes(content.encode("utf-8", "surrogateescape"))
    result = CliRunner().invoke(cli, ["train", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr == "Error: " + expected.format(path=bad) + "\n"
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
