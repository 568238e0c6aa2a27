"""Broken artefacts give one clear error, and a SIGKILL in the middle of a save leaves the previous artefact loadable.

Part one damages copies of the session's tiny model, and of an unfinished run's ``OUT.partial``, in each way the
issue lists: ``model.pt`` cut short, overwritten or random; ``config.json`` cut short, not JSON, of wrong types,
with keys missing or unknown, or of a newer format; a corrupt tokenizer or another model's; each file missing;
weights whose shapes disagree with ``config.json``. The contract: ``checkpoint.load`` (and ResponseGenerator, int8
or not) raises a one-line ModelError naming the directory or the file; ``chatbot chat`` and ``chatbot eval`` print
one ``Error:`` line on stderr and exit 2, without a traceback; ``--resume`` of a damaged run says, in one line, to
start over.

Part two runs a save in a child process that writes half of a file, flushes, says so in a marker file and sleeps;
the parent SIGKILLs it there and checks that the previous model (or training state) still loads with its old
weights, and that what the child left behind is hidden and not a loadable model. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sentencepiece as spm
import torch
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from chatbot.cli import cli
from chatbot.config import ContextConfig, DecodeConfig, TokenizerConfig, TrainConfig, from_dict
from chatbot.corpora import load_corpus
from chatbot.errors import ChatbotError, ModelError
from chatbot.generation import ResponseGenerator
from chatbot.text.tokenizer import Tokenizer
from chatbot.training import checkpoint, config_json, resume
from tests.training.dialogues import write_dialogues

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample_dialogues.jsonl"
EMBEDDING = "encoder.embedding.weight"  # the tensor compared to tell old weights from new
STALL_TIMEOUT_S = 120.0  # importing torch and training a few steps on a busy 2-core machine
KILL_TIMEOUT_S = 30.0
# A run that trains a few steps in a second or two and saves its state along the way.
TRAIN_ARGS = shlex.split(
    "--epochs 1 --max-steps 6 --checkpoint-every 3 --batch-size 4 --vocab-size 80 --hidden-size 16 "
    "--embedding-size 16 --precision fp32 --threads 1"
)
Damage = Callable[[Path], object]


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's tiny model that a test may damage."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


def load_error(directory: Path, *expected: str) -> str:
    """The message of the ModelError that loading ``directory`` raises, after checking it is one line that names
    the directory and contains each of ``expected``."""
    with pytest.raises(ModelError) as caught:
        checkpoint.load(directory)
    message = str(caught.value)
    assert "\n" not in message and str(directory) in message, message
    for fragment in expected:
        assert fragment in message, message
    return message


def edit_config(directory: Path, change: Callable[[dict[str, Any]], object]) -> None:
    config = json.loads((directory / "config.json").read_text())
    change(config)
    (directory / "config.json").write_text(json.dumps(config))


def embedding(directory: Path) -> torch.Tensor:
    tensor: torch.Tensor = checkpoint.load(directory).model.state_dict()[EMBEDDING]
    return tensor


def sample_texts() -> list[str]:
    return [turn.text for conversation in load_corpus(str(SAMPLE)) for turn in conversation.turns]


# ---------------------------------------------------------------------------------------------------------------------
# model.pt


@pytest.mark.parametrize("kept", [0, 1, 10, 100, "half", -200, -30, -1])
def test_weights_cut_short_at_chosen_points(model_copy: Path, kept: int | str) -> None:
    weights = (model_copy / "model.pt").read_bytes()
    end = len(weights) // 2 if kept == "half" else int(kept)
    (model_copy / "model.pt").write_bytes(weights[:end])
    load_error(model_copy, "model.pt", "damaged")


@pytest.mark.parametrize("name", ["model.pt", "tokenizer.model"])
@given(data=st.data())
def test_weights_or_tokenizer_cut_short_anywhere(
    model_copy: Path, tiny_model_dir: Path, name: str, data: st.DataObject
) -> None:
    content = (tiny_model_dir / name).read_bytes()
    kept = data.draw(st.integers(min_value=0, max_value=len(content) - 1), label="kept bytes")
    (model_copy / name).write_bytes(content[:kept])
    load_error(model_copy, name)


@given(data=st.data())
def test_weights_with_bytes_overwritten(model_copy: Path, tiny_model_dir: Path, data: st.DataObject) -> None:
    """Most of model.pt is raw tensor data that torch reads without a check: only the SHA-256 in config.json tells
    a changed byte there."""
    weights = bytearray((tiny_model_dir / "model.pt").read_bytes())
    start = data.draw(st.integers(min_value=0, max_value=len(weights) - 1), label="start")
    changes = data.draw(st.binary(min_size=1, max_size=64), label="xor")
    for offset, mask in enumerate(changes[: len(weights) - start]):
        weights[start + offset] ^= mask or 0xFF  # never zero, so every drawn byte changes
    (model_copy / "model.pt").write_bytes(bytes(weights))
    load_error(model_copy, "model.pt")


@given(content=st.binary(max_size=4096))
@example(content=b"")
@example(content=b"PK\x03\x04" + bytes(200))  # looks like the start of a zip archive
def test_weights_of_random_bytes(model_copy: Path, content: bytes) -> None:
    (model_copy / "model.pt").write_bytes(content)
    load_error(model_copy, "model.pt", "damaged")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([1, 2, 3], "holds a list"),
        (torch.zeros(3), "holds a Tensor"),
        ({"weights": [torch.zeros(1)]}, "not named tensors"),
    ],
)
def test_weights_of_another_kind_of_object(model_copy: Path, content: object, expected: str) -> None:
    torch.save(content, model_copy / "model.pt")
    load_error(model_copy, "model.pt", expected)


# ---------------------------------------------------------------------------------------------------------------------
# Weights whose shapes disagree with config.json


def resized(name: str, rows: int) -> Damage:
    def damage(directory: Path) -> None:
        state = torch.load(directory / "model.pt", weights_only=True)
        state[name] = torch.zeros(rows, *state[name].shape[1:])
        torch.save(state, directory / "model.pt")

    return damage


def without(name: str) -> Damage:
    def damage(directory: Path) -> None:
        state = torch.load(directory / "model.pt", weights_only=True)
        del state[name]
        torch.save(state, directory / "model.pt")

    return damage


def with_extra(name: str) -> Damage:
    def damage(directory: Path) -> None:
        state = torch.load(directory / "model.pt", weights_only=True)
        torch.save({**state, name: torch.zeros(2)}, directory / "model.pt")

    return damage


def model_setting(key: str, value: object) -> Damage:
    return lambda directory: edit_config(directory, lambda config: config["model"].__setitem__(key, value))


MISFITS: dict[str, tuple[Damage, str]] = {
    "a tensor resized": (resized(EMBEDDING, 150), f"{EMBEDDING} is [150, 32] in model.pt but [200, 32] by config.json"),
    "a tensor missing": (without(EMBEDDING), f"no {EMBEDDING}"),
    "a tensor too many": (with_extra("decoder.extra.weight"), "unexpected decoder.extra.weight"),
    "hidden size": (model_setting("hidden_size", 64), "do not fit config.json"),
    "cell": (model_setting("cell", "lstm"), "do not fit config.json"),
    "one direction": (model_setting("bidirectional", False), "do not fit config.json"),
    "vocabulary": (model_setting("vocab_size", 300), "do not fit config.json"),
    "huge": (model_setting("hidden_size", 10**7), "do not fit config.json"),  # no 10**14 floats are allocated
    "too huge": (model_setting("hidden_size", 10**30), "cannot be built"),
    "layers": (model_setting("decoder_layers", 10**9), "do not fit config.json"),  # not built: that would hang
    "pad id": (model_setting("pad_id", 10**6), "cannot be built"),  # nn.Embedding asserts that it is in range
    "no vocabulary": (model_setting("vocab_size", 0), "cannot be built"),  # an IndexError, found by the fuzzing
}


@pytest.mark.parametrize("misfit", list(MISFITS))
def test_weights_that_do_not_fit_config_json(model_copy: Path, misfit: str) -> None:
    damage, expected = MISFITS[misfit]
    damage(model_copy)
    started = time.monotonic()
    load_error(model_copy, expected)
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------------------------------------------------------
# config.json


@given(data=st.data())
def test_config_cut_short_anywhere(model_copy: Path, tiny_model_dir: Path, data: st.DataObject) -> None:
    text = (tiny_model_dir / "config.json").read_text()
    kept = data.draw(st.integers(min_value=0, max_value=len(text.rstrip()) - 1), label="kept characters")
    (model_copy / "config.json").write_text(text[:kept])
    load_error(model_copy, "config.json", "unreadable")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "unreadable"),
        (b"{not json", "unreadable"),
        (b"\xff\xfe{\x00}", "unreadable"),  # not UTF-8
        (b"[]", "holds a JSON array, not an object"),
        (b"null", "holds a JSON null, not an object"),
        (b'"model"', "holds a JSON string, not an object"),
    ],
)
def test_config_that_is_not_a_json_object(model_copy: Path, content: bytes, expected: str) -> None:
    (model_copy / "config.json").write_bytes(content)
    load_error(model_copy, "config.json", expected)


def set_path(config: dict[str, Any], path: str, value: object) -> None:
    *sections, key = path.split(".")
    for section in sections:
        config = config[section]
    config[key] = value


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("model", "gru", "model should be an object, not a JSON string"),
        ("decode", [], "decode should be an object, not a JSON array"),
        ("model.hidden_size", "32", 'model.hidden_size should be int, not "32"'),
        ("model.hidden_size", 32.5, "model.hidden_size should be int, not 32.5"),
        ("model.bidirectional", "no", 'model.bidirectional should be bool, not "no"'),  # "no" is truthy
        ("model.dropout", None, "model.dropout should be float, not null"),
        ("tokenizer.lowercase", 1, "tokenizer.lowercase should be bool, not 1"),
        ("context.history_turns", "3", "context.history_turns should be int"),
        ("decode.beam_size", True, "decode.beam_size should be int, not true"),
        ("data.dedupe", "yes", "data.dedupe should be bool"),
        ("model.attention", "nope", "attention must be one of"),  # the dataclass's own check
        ("context.history_turns", 0, "history_turns must be at least 1"),
        ("decode.strategy", "shout", "strategy must be one of"),
    ],
)
def test_config_values_of_wrong_type_or_range(model_copy: Path, path: str, value: object, expected: str) -> None:
    edit_config(model_copy, lambda config: set_path(config, path, value))
    load_error(model_copy, "config.json", expected)
    with pytest.raises(ModelError, match=r"config\.json"):
        ResponseGenerator(model_copy)  # reads config.json at construction: fails at start, not at the first reply


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=4,
)
SETTINGS = [f"{name}.{field.name}" for name, cls in config_json.SECTIONS.items() for field in dataclasses.fields(cls)]


@given(path=st.sampled_from(SETTINGS), value=JSON_VALUES)
def test_any_value_of_any_setting_loads_or_is_a_model_error(
    model_copy: Path, tiny_model_dir: Path, path: str, value: object
) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    set_path(config, path, value)
    (model_copy / "config.json").write_text(json.dumps(config))
    try:
        ResponseGenerator(model_copy).load()
    except ModelError as error:
        assert "\n" not in str(error) and str(model_copy) in str(error)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("format_version", "has no valid format_version (null)"),
        ("model", "has no 'model' section"),
        ("tokenizer", "has no 'tokenizer' section"),
        ("model.vocab_size", "model.vocab_size is missing"),
        ("model.pad_id", "model.pad_id is missing"),
        ("model.hidden_size", "do not fit config.json"),  # the default, 256, is not what the weights have
    ],
)
def test_config_with_a_key_missing(model_copy: Path, path: str, expected: str) -> None:
    edit_config(model_copy, lambda config: remove(config, path))
    load_error(model_copy, expected)


def remove(config: dict[str, Any], path: str) -> None:
    *sections, key = path.split(".")
    for section in sections:
        config = config[section]
    del config[key]


@pytest.mark.parametrize("section", ["context", "decode", "data", "train", "sha256"])
def test_config_without_an_optional_section_loads_with_defaults(model_copy: Path, section: str) -> None:
    """Models saved before these sections existed still load: context and decode fall back to the defaults."""
    edit_config(model_copy, lambda config: config.pop(section))
    bundle = checkpoint.load(model_copy)
    if section == "context":
        assert bundle.context == ContextConfig()
    if section == "decode":
        assert bundle.decode == DecodeConfig()


@pytest.mark.parametrize("path", ["comment", "model.layer_norm", "decode.repetition_penalty"])
def test_unknown_keys_are_ignored_with_a_warning(
    model_copy: Path, tiny_model_dir: Path, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer chatbot of the same format may add settings: they are ignored, and said so; one that changed the
    network would change the weights too, and fail the shape check."""
    edit_config(model_copy, lambda config: set_path(config, path, True))
    with caplog.at_level(logging.WARNING, logger="chatbot.training.checkpoint"):
        bundle = checkpoint.load(model_copy)
    assert path in caplog.text
    assert torch.equal(bundle.model.state_dict()[EMBEDDING], embedding(tiny_model_dir))


@pytest.mark.parametrize("version", [config_json.FORMAT_VERSION + 1, 99])
def test_a_newer_format_says_to_upgrade(model_copy: Path, version: int) -> None:
    edit_config(model_copy, lambda config: config.__setitem__("format_version", version))
    load_error(model_copy, f"model format {version}", "newer chatbot", "upgrade chatbot")


@pytest.mark.parametrize(
    ("version", "expected"), [(0, "model format 0"), ("1", 'format_version ("1")'), (True, "(true)"), (1.0, "(1.0)")]
)
def test_an_unknown_or_mistyped_format(model_copy: Path, version: object, expected: str) -> None:
    edit_config(model_copy, lambda config: config.__setitem__("format_version", version))
    load_error(model_copy, expected)


# ---------------------------------------------------------------------------------------------------------------------
# tokenizer.model


@given(content=st.binary(max_size=2048))
@example(content=b"")
def test_tokenizer_of_random_bytes(model_copy: Path, content: bytes) -> None:
    (model_copy / "tokenizer.model").write_bytes(content)
    load_error(model_copy, "tokenizer.model")


@given(data=st.data())
def test_tokenizer_with_a_byte_overwritten(model_copy: Path, tiny_model_dir: Path, data: st.DataObject) -> None:
    proto = bytearray((tiny_model_dir / "tokenizer.model").read_bytes())
    position = data.draw(st.integers(min_value=0, max_value=len(proto) - 1), label="position")
    proto[position] ^= data.draw(st.integers(min_value=1, max_value=255), label="xor")
    (model_copy / "tokenizer.model").write_bytes(bytes(proto))
    load_error(model_copy, "tokenizer.model")


def test_another_models_tokenizer_with_another_vocabulary(model_copy: Path) -> None:
    other = Tokenizer.train(sample_texts(), TokenizerConfig(vocab_size=120))
    other.save(model_copy / "tokenizer.model")
    load_error(model_copy, "tokenizer.model", f"has {other.vocab_size} pieces", "trained with 200", "another model")


def test_a_sentencepiece_model_not_made_by_chatbot(model_copy: Path) -> None:
    """Sentencepiece's default special ids (unk 0, bos 1, eos 2, no pad) are not the ones the network was trained
    with: every id would be off."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sample_texts()),
        model_writer=buffer,
        vocab_size=200,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (model_copy / "tokenizer.model").write_bytes(buffer.getvalue())
    load_error(model_copy, "tokenizer.model", "special ids")


# ---------------------------------------------------------------------------------------------------------------------
# Missing files


@pytest.mark.parametrize("name", config_json.FILES)
def test_a_missing_file_is_named(model_copy: Path, name: str) -> None:
    (model_copy / name).unlink()
    load_error(model_copy, f"missing {name}", "chatbot train")
    with pytest.raises(ModelError, match=f"missing {name}"):
        ResponseGenerator(model_copy)


def test_a_directory_in_place_of_a_file(model_copy: Path) -> None:
    (model_copy / "model.pt").unlink()
    (model_copy / "model.pt").mkdir()
    load_error(model_copy, "missing model.pt")


def test_metrics_are_not_needed_to_run_the_model(model_copy: Path) -> None:
    (model_copy / "metrics.json").unlink()
    assert ResponseGenerator(model_copy).generate(["<usr> hi"])


@pytest.mark.parametrize("make", [lambda path: None, lambda path: path.write_text("not a directory")])
def test_no_model_directory_at_all(tmp_path: Path, make: Callable[[Path], object]) -> None:
    make(tmp_path / "model")
    load_error(tmp_path / "model", "no model directory", "chatbot train")


# ---------------------------------------------------------------------------------------------------------------------
# Through ResponseGenerator (fp32 and int8) and the CLI


def cut_weights(directory: Path) -> None:
    (directory / "model.pt").write_bytes((directory / "model.pt").read_bytes()[:1000])


def other_tokenizer(directory: Path) -> None:
    Tokenizer.train(sample_texts(), TokenizerConfig(vocab_size=120)).save(directory / "tokenizer.model")


DAMAGES: dict[str, Damage] = {
    "weights cut short": cut_weights,
    "weights of other bytes": lambda d: (d / "model.pt").write_bytes(bytes(range(256)) * 8),
    "context of wrong type": lambda d: edit_config(d, lambda c: set_path(c, "context.history_turns", "3")),
    "decode not an object": lambda d: edit_config(d, lambda c: set_path(c, "decode", "greedy")),
    "newer format": lambda d: edit_config(d, lambda c: set_path(c, "format_version", config_json.FORMAT_VERSION + 1)),
    "another tokenizer": other_tokenizer,
    "tokenizer missing": lambda d: (d / "tokenizer.model").unlink(),
    "weights of another shape": model_setting("hidden_size", 64),
}


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "int8"])
@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_the_generator_raises_a_model_error(model_copy: Path, damage: str, quantized: bool) -> None:
    DAMAGES[damage](model_copy)
    with pytest.raises(ModelError) as caught:
        ResponseGenerator(model_copy, quantized=quantized).load()
    assert "\n" not in str(caught.value) and str(model_copy) in str(caught.value)


def command_line(command: str, model: Path, tmp_path: Path) -> list[str]:
    if command.startswith("chat"):
        return [*command.split(), "--model", str(model), "--db", f"sqlite:///{tmp_path / 'chat.sqlite3'}"]
    return [*command.split(), "--model", str(model), str(SAMPLE), "--limit", "2", "--replies", "1"]


def check_one_line_error(result: Any, model: Path) -> None:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(model) in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


@pytest.mark.parametrize("command", ["chat", "eval"])
@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_cli_prints_one_line_and_exits_2(
    runner: CliRunner, model_copy: Path, tmp_path: Path, damage: str, command: str
) -> None:
    DAMAGES[damage](model_copy)
    result = runner.invoke(cli, command_line(command, model_copy, tmp_path), input="hi\n")
    check_one_line_error(result, model_copy)


@pytest.mark.parametrize("command", ["chat --no-quantize", "eval --quantize", "export-model"])
def test_cli_quantized_or_not_and_export(runner: CliRunner, model_copy: Path, tmp_path: Path, command: str) -> None:
    cut_weights(model_copy)
    if command == "export-model":
        arguments = [command, "--model", str(model_copy), "--out", str(tmp_path / "model.ts")]
    else:
        arguments = command_line(command, model_copy, tmp_path)
    check_one_line_error(runner.invoke(cli, arguments, input="hi\n"), model_copy)
    assert not (tmp_path / "model.ts").exists()


# ---------------------------------------------------------------------------------------------------------------------
# An unfinished run (OUT.partial) that is damaged


@pytest.fixture(scope="module")
def unfinished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A dialogue log and the OUT.partial of a run over it that trained, saved its state, and was interrupted
    just before writing the model directory."""
    root = tmp_path_factory.mktemp("unfinished")
    data = write_dialogues(root / "log.jsonl", conversations=30)
    with mock.patch("chatbot.training.checkpoint.save", side_effect=KeyboardInterrupt):
        result = CliRunner().invoke(cli, ["train", str(data), "--out", str(root / "model"), *TRAIN_ARGS])
    assert result.exit_code == 1, result.output  # click's "Aborted!"
    partial = resume.partial_dir(root / "model")
    assert resume.has_state(partial) and not (root / "model").exists()
    return data, partial


@pytest.fixture
def partial_copy(unfinished_run: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the unfinished run for a model directory ``tmp_path / "model"``, which a test may damage."""
    copy = resume.partial_dir(tmp_path / "model")
    shutil.copytree(unfinished_run[1], copy)
    return copy


def reopen(partial: Path, original: Path) -> None:
    """Reopen ``partial`` as the run that saved ``original`` (its undamaged twin), so only damage can make it fail."""
    run = json.loads((original / resume.RUN).read_text())
    resume.reopen(partial, run, from_dict(TokenizerConfig, run["tokenizer"]))


def reopen_error(partial: Path, original: Path, *expected: str) -> str:
    with pytest.raises(ChatbotError) as caught:
        reopen(partial, original)
    message = str(caught.value)
    assert "\n" not in message and str(partial) in message and "start over with --force" in message, message
    for fragment in expected:
        assert fragment in message, message
    return message


@given(data=st.data())
def test_a_training_state_cut_short_anywhere(
    partial_copy: Path, unfinished_run: tuple[Path, Path], data: st.DataObject
) -> None:
    state = (unfinished_run[1] / resume.STATE).read_bytes()
    kept = data.draw(st.integers(min_value=0, max_value=len(state) - 1), label="kept bytes")
    (partial_copy / resume.STATE).write_bytes(state[:kept])
    reopen_error(partial_copy, unfinished_run[1], "state.pt is damaged")


@given(content=st.binary(max_size=2048))
@example(content=b"")
def test_a_training_state_of_random_bytes(
    partial_copy: Path, unfinished_run: tuple[Path, Path], content: bytes
) -> None:
    (partial_copy / resume.STATE).write_bytes(content)
    reopen_error(partial_copy, unfinished_run[1], "state.pt is damaged")


def edited_state(change: Callable[[dict[str, Any]], object]) -> Damage:
    def damage(partial: Path) -> None:
        state = torch.load(partial / resume.STATE, weights_only=True)
        change(state)
        torch.save(state, partial / resume.STATE)

    return damage


PARTIAL_DAMAGES: dict[str, tuple[Damage, str]] = {
    "state of a newer format": (edited_state(lambda s: s.__setitem__("format", 2)), "another version of chatbot"),
    "state not a dict": (lambda p: torch.save([1, 2], p / resume.STATE), "state.pt is damaged (it holds a list)"),
    "state without weights": (edited_state(lambda s: s.pop("model")), "state.pt is damaged (it has no model)"),
    "run.json not JSON": (lambda p: (p / resume.RUN).write_text("{run"), "run.json is damaged"),
    "run.json not an object": (lambda p: (p / resume.RUN).write_text("[]"), "run.json is damaged"),
    "run.json missing": (lambda p: (p / resume.RUN).unlink(), "run.json: No such file"),
    "tokenizer missing": (lambda p: (p / resume.TOKENIZER).unlink(), "tokenizer.model: No such file"),
    "tokenizer empty": (lambda p: (p / resume.TOKENIZER).write_bytes(b""), "tokenizer.model is damaged"),
    "tokenizer garbage": (lambda p: (p / resume.TOKENIZER).write_bytes(b"garbage"), "not a sentencepiece"),
    "another tokenizer": (other_tokenizer, "is not the tokenizer"),
}


@pytest.mark.parametrize("damage", list(PARTIAL_DAMAGES), ids=list(PARTIAL_DAMAGES))
def test_resuming_a_damaged_run_says_to_start_over(
    runner: CliRunner, partial_copy: Path, unfinished_run: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    change, expected = PARTIAL_DAMAGES[damage]
    change(partial_copy)
    reopen_error(partial_copy, unfinished_run[1], expected)
    arguments = ["train", str(unfinished_run[0]), "--out", str(tmp_path / "model"), *TRAIN_ARGS, "--resume"]
    result = runner.invoke(cli, arguments)
    assert result.exit_code == 2, (result.output, result.exception)
    last = result.stderr.strip().splitlines()[-1]  # after the corpus statistics the run reports first
    assert last.startswith("Error: ") and expected in last and "--force" in last, result.stderr
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------------------------------
# SIGKILL in the middle of a write

CHILD = r"""
import io
import sys
import time
from pathlib import Path

import torch

from chatbot.config import TrainConfig
from chatbot.training import checkpoint, resume, run_state

mode, marker, target = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
real_save = torch.save


def stall(note):
    marker.write_text(note)
    time.sleep(600)  # the parent kills this process long before


def save_half(content, path, *args, **kwargs):
    # torch.save that is killed halfway: half the bytes on disk, flushed, and nothing more.
    if mode == "train" and Path(path).name != "model.pt":
        return real_save(content, path, *args, **kwargs)  # let the training state be saved as usual
    buffer = io.BytesIO()
    real_save(content, buffer)
    with open(path, "wb") as handle:
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        handle.flush()
    stall(str(path))


def exchange_then_stall(first, second):
    stall("swapped" if exchange(first, second) else "no atomic swap here")


def save_new_weights():
    bundle = checkpoint.load(target)
    with torch.no_grad():
        for parameter in bundle.model.parameters():
            parameter.add_(1.0)
    checkpoint.save(target, bundle, TrainConfig(), {"new": True})


if mode == "swapped":
    exchange = checkpoint._exchange
    checkpoint._exchange = exchange_then_stall
else:
    torch.save = save_half
if mode in ("weights", "swapped"):
    save_new_weights()
elif mode == "state":
    state = run_state.load(target / resume.STATE)
    state.model = {name: tensor + 1 for name, tensor in state.model.items()}
    resume.save_state(target, state)
elif mode == "train":
    from chatbot.cli import main

    sys.argv = ["chatbot", *sys.argv[4:]]
    main()
"""


@contextlib.contextmanager
def stalled_child(mode: str, target: Path, *extra: str) -> Iterator[str]:
    """Run CHILD in ``mode`` on ``target`` until it stalls in the middle of its write; yields what it wrote there
    (its marker), then SIGKILLs it."""
    marker, log = target.parent / f"stalled-{mode}", target.parent / f"child-{mode}.log"
    with log.open("w") as output:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, str(marker), str(target), *extra],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + STALL_TIMEOUT_S
        while not (marker.exists() and marker.read_text()):
            assert child.poll() is None, f"the child ended before stalling:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the child did not stall within {STALL_TIMEOUT_S} s"
            time.sleep(0.02)
        yield marker.read_text()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=KILL_TIMEOUT_S)
        assert child.returncode == -signal.SIGKILL, log.read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=KILL_TIMEOUT_S)


def leftovers(directory: Path) -> list[Path]:
    """What a killed save left beside ``directory``."""
    return [path for path in directory.parent.iterdir() if path.name.startswith(f".{directory.name}.")]


def test_sigkill_while_writing_the_weights_keeps_the_previous_model(model_copy: Path, tiny_model_dir: Path) -> None:
    old = embedding(tiny_model_dir)
    with stalled_child("weights", model_copy) as written:
        staging = Path(written).parent
        assert staging.parent == model_copy.parent and staging.name.startswith(".model.")  # not in place
        assert torch.equal(embedding(model_copy), old)  # a reader meanwhile gets the old model
    assert torch.equal(embedding(model_copy), old)
    assert json.loads((model_copy / "metrics.json").read_text()) != {"new": True}
    assert leftovers(model_copy) == [staging]  # hidden, and not a model: config.json is written last
    with pytest.raises(ModelError, match=r"missing config\.json"):
        checkpoint.load(staging)


def test_sigkill_just_after_the_swap_leaves_the_new_model(model_copy: Path, tiny_model_dir: Path) -> None:
    """The old directory and the new one trade places in one step: there is no moment without a model."""
    with stalled_child("swapped", model_copy) as note:
        if note != "swapped":
            pytest.skip(f"{note}: this system cannot swap two directories atomically")
    assert torch.equal(embedding(model_copy), embedding(tiny_model_dir) + 1)
    assert json.loads((model_copy / "metrics.json").read_text()) == {"new": True}
    assert len(leftovers(model_copy)) == 1  # the old model, hidden, which the killed save did not get to delete


def test_without_an_atomic_swap_a_save_still_replaces_the_model(
    model_copy: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where renameat2 is missing (not Linux, an old C library or filesystem) the two-rename path is taken."""
    monkeypatch.setattr(checkpoint, "_exchange", lambda first, second: False)
    bundle = checkpoint.load(model_copy)
    with torch.no_grad():
        bundle.model.state_dict()[EMBEDDING].add_(1.0)
    checkpoint.save(model_copy, bundle, TrainConfig(), {})
    assert torch.equal(embedding(model_copy), embedding(tiny_model_dir) + 1)
    assert leftovers(model_copy) == []


def test_sigkill_while_saving_the_training_state_keeps_the_previous_state(
    runner: CliRunner, partial_copy: Path, unfinished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    before = (partial_copy / resume.STATE).read_bytes()
    with stalled_child("state", partial_copy) as written:
        assert Path(written).parent == partial_copy and Path(written).name.startswith(".state.pt.")
    assert (partial_copy / resume.STATE).read_bytes() == before
    reopen(partial_copy, unfinished_run[1])
    out = tmp_path / "model"
    result = runner.invoke(cli, ["train", str(unfinished_run[0]), "--out", str(out), *TRAIN_ARGS, "--resume"])
    assert result.exit_code == 0, result.output
    checkpoint.load(out)
    assert not partial_copy.exists()  # the finished run removes its state, the half-written file with it


def test_sigkill_while_train_force_writes_the_model_keeps_the_old_one(
    runner: CliRunner, model_copy: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """``chatbot train --force`` over an existing model writes it with checkpoint.save too; killed there, the old
    model stays, and ``--resume`` finishes the run from its saved state."""
    data = write_dialogues(tmp_path / "log.jsonl", conversations=30)
    arguments = ["train", str(data), "--out", str(model_copy), *TRAIN_ARGS]
    with stalled_child("train", model_copy, *arguments, "--force") as written:
        assert Path(written).parent.name.startswith(".model.")
    assert torch.equal(embedding(model_copy), embedding(tiny_model_dir))
    partial = resume.partial_dir(model_copy)
    assert resume.has_state(partial)
    result = runner.invoke(cli, arguments)
    assert result.exit_code == 2 and "already exists" in result.stderr
    result = runner.invoke(cli, [*arguments, "--resume"])
    assert result.exit_code == 0, result.output
    assert checkpoint.load(model_copy).model.config.hidden_size == 16  # the new model, not the tiny one
    assert not partial.exists()
