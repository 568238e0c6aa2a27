"""Reading YAML a user wrote: every way PyYAML can fail is a one-line DataError naming the file and, where PyYAML
knows it, the line (and column), never a traceback. Used by the ChatterBot corpus reader and the persona file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from chatbot.errors import DataError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but a scalar it cannot build a value from is a YAMLError with its line, not a crash."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, AttributeError) as error:
            # PyYAML lets these through for a plain scalar that matches a pattern but not its range (2001-13-45, an
            # integer of 5000 digits, a +99:00 offset) and for explicit tags on the wrong text (!!bool maybe).
            kind = node.tag.rpartition(":")[2]
            problem = f"cannot read {str(node.value)[:40]!r} as {kind} (quote it to keep it as text)"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from error


def load_yaml(path: Path, text: str) -> Any:
    """``yaml.safe_load`` of ``text`` (read from ``path``) whose every failure is a DataError naming the line."""
    return _parsed(path, text, lambda loader: loader.get_single_data())


def compose_yaml(path: Path, text: str) -> yaml.Node | None:
    """The node tree of ``text`` (read from ``path``), each node with its line, for a reader that reports where a
    value is wrong; None for an empty document. Every failure is a DataError naming the line."""
    node: yaml.Node | None = _parsed(path, text, lambda loader: loader.get_single_node())
    return node


def _parsed(path: Path, text: str, parse: Callable[[_Loader], Any]) -> Any:
    try:
        loader = _Loader(text)  # its reader rejects unprintable characters here, before parsing starts
        try:
            return parse(loader)
        except ValueError as error:  # the scanner's chr() and int() on "\U7fffffff" or a %YAML version of 5000 digits
            raise DataError(path, "invalid YAML: an escape or number out of range", loader.line + 1) from error
        except RecursionError as error:  # the composer recurses once per level of nesting
            raise DataError(path, "invalid YAML: nested too deeply", loader.line + 1) from error
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise _yaml_error(path, text, error) from error


def _yaml_error(path: Path, text: str, error: yaml.YAMLError) -> DataError:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        # PyYAML counts lines and columns from 0.
        mark, context = error.problem_mark, ""
        if error.context and error.context_mark is not None:
            # An unclosed bracket is reported where the file ends; the context says where it opened.
            context = f", {error.context} from line {error.context_mark.line + 1}"
        return DataError(path, f"invalid YAML: {error.problem} (column {mark.column + 1}{context})", mark.line + 1)
    if isinstance(error, yaml.reader.ReaderError):
        # Its str() spans two lines and counts characters from the start of the file, not lines.
        line = text.count("\n", 0, error.position) + 1
        return DataError(path, f"invalid YAML: unacceptable character #x{error.character:04x}: {error.reason}", line)
    return DataError(path, f"invalid YAML: {' '.join(str(error).split())}")
