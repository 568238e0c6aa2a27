"""A model directory's ``config.json``: its format, and reading and checking it without torch.

Every command that takes ``--model`` reads it first, so a wrong directory fails at once, before anything slow
(importing torch, loading the weights) starts; the weights themselves are checkpoint.py's.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from chatbot.config import ContextConfig, DataConfig, DecodeConfig, ModelConfig, TokenizerConfig, from_dict
from chatbot.errors import ChatbotError, ModelError, one_line

FORMAT_VERSION = 1
FILES = ("config.json", "model.pt", "tokenizer.model")
REPLY_INDEX = "reply_index.sqlite3"  # optional: written by `chatbot index` or `train --reply-index` (reply_index.py)
HOW_TO_GET_ONE = "train one with `chatbot train chitchat --out DIR` and pass `--model DIR`"
# The config.json sections a model runs with, and the dataclass each one fills; "train" only records its training.
SECTIONS: dict[str, type[Any]] = {
    "model": ModelConfig,
    "tokenizer": TokenizerConfig,
    "context": ContextConfig,
    "decode": DecodeConfig,
    "data": DataConfig,
}
REQUIRED_SECTIONS = ("model", "tokenizer")  # the others have defaults, for models saved before they existed


def read_config(directory: Path) -> dict[str, Any]:
    """Read and check ``config.json`` without loading weights (cheap: used to start fast): every section the model
    runs with builds its config dataclass, so code that reads them later cannot fail."""
    if not directory.is_dir():
        raise ModelError(f"no model directory at {directory}; {HOW_TO_GET_ONE}")
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise ModelError(
            f"{directory} is not a complete model directory (missing {', '.join(missing)}); {HOW_TO_GET_ONE}"
        )
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: not JSON, or not even UTF-8
        raise ModelError(f"{path} is unreadable ({one_line(error)}); {HOW_TO_GET_ONE}") from error
    if not isinstance(config, dict):
        raise ModelError(f"{path} holds a JSON {_json_type(config)}, not an object; {HOW_TO_GET_ONE}")
    check_version(directory, config.get("format_version"))
    for name, cls in SECTIONS.items():
        _check_section(path, config, name, cls)
    return config


def check_reply_index(directory: Path, decode: DecodeConfig) -> None:
    """Decoding that chooses among retrieved candidates needs the directory's reply index."""
    if decode.candidates != "generated" and not (directory / REPLY_INDEX).is_file():
        raise ModelError(
            f"{directory} has no reply index ({REPLY_INDEX}) to retrieve candidates from: build one with "
            f"`chatbot index DATA --model {directory}`, or decode with --candidates generated"
        )


def check_version(directory: Path, version: object) -> None:
    if type(version) is not int:  # JSON true would pass as 1, to isinstance and to ==
        found = one_line(json.dumps(version))[:40]
        raise ModelError(f"{directory / 'config.json'} has no valid format_version ({found}); {HOW_TO_GET_ONE}")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{directory} was written by a newer chatbot (model format {version}; this one reads format "
            f"{FORMAT_VERSION}): upgrade chatbot to use it"
        )
    if version != FORMAT_VERSION:
        raise ModelError(f"{directory} has model format {version}; this chatbot reads format {FORMAT_VERSION}")


def _check_section(path: Path, config: dict[str, Any], name: str, cls: type[Any]) -> None:
    """Check that section ``name`` of config.json is an object with values of the types of ``cls``'s fields, and
    builds one (its checks pass); absent optional sections and fields mean the defaults."""
    if name not in config:
        if name in REQUIRED_SECTIONS:
            raise ModelError(f"{path} has no {name!r} section; {HOW_TO_GET_ONE}")
        return
    values = config[name]
    if not isinstance(values, dict):
        raise ModelError(f"{path}: {name} should be an object, not a JSON {_json_type(values)}; {HOW_TO_GET_ONE}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    kinds = typing.get_type_hints(cls)
    problems = [f"{name}.{key} is missing" for key in fields if key not in values and _required(fields[key])]
    problems += [
        f"{name}.{key} should be {kinds[key].__name__}, not {one_line(json.dumps(value))[:40]}"
        for key, value in values.items()
        if key in fields and not _has_type(value, kinds[key])
    ]
    if problems:
        raise ModelError(f"{path}: {'; '.join(problems)}; {HOW_TO_GET_ONE}")
    try:
        from_dict(cls, values)
    except ChatbotError as error:
        raise ModelError(f"{path}: {name}: {error}; {HOW_TO_GET_ONE}") from error


def unknown_settings(config: dict[str, Any]) -> list[str]:
    """The sections and settings of config.json this chatbot does not know (a newer one's, of the same format)."""
    unknown = sorted(config.keys() - {"format_version", "train", "sha256", *SECTIONS})
    for name, cls in SECTIONS.items():
        known = {field.name for field in dataclasses.fields(cls)}
        unknown += sorted(f"{name}.{key}" for key in config.get(name, {}).keys() - known)
    return unknown


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _has_type(value: object, kind: object) -> bool:
    """Whether a JSON value fits a config field of type ``kind`` (a bool is no number here, an int is a float)."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")
