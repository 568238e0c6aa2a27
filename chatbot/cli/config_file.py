"""The TOML config file as click's default_map: each command's table, plus the top-level keys for every command
that has an option of that name, found by walking the command tree (never from a hand-kept list)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import platformdirs

from chatbot.config import read_config_file

APP_NAME = "chatbot"
# Top-level keys of the config file that apply to every command with an option of the same name.
SHARED_KEYS = ("db", "model", "threads", "persona")


def config_map(path: Path | None, group: click.Group) -> dict[str, Any]:
    """Turn the TOML file at ``path`` (default: config.toml in the user config directory, if present) into click's
    default_map for ``group``'s commands."""
    if path is None:
        candidate = Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"
        path = candidate if candidate.is_file() else None
    if path is None:
        return {}
    raw = _underscore_keys(read_config_file(path))
    return command_defaults(group, {key: raw[key] for key in SHARED_KEYS if key in raw}, raw)


def command_defaults(group: click.Group, shared: dict[str, Any], tables: dict[str, Any]) -> dict[str, Any]:
    """The default_map of ``group``: ``tables`` (its part of the config file) with, for each command found in the
    group itself, the ``shared`` keys that command has an option for (a command's own table wins)."""
    defaults = dict(tables)
    for name, command in group.commands.items():
        table = tables.get(name)
        table = table if isinstance(table, dict) else {}
        if isinstance(command, click.Group):
            defaults[name] = command_defaults(command, shared, table)
        else:
            options = {param.name for param in command.params}
            defaults[name] = {**{key: value for key, value in shared.items() if key in options}, **table}
    return defaults


def _underscore_keys(table: dict[str, Any]) -> dict[str, Any]:
    """Config keys may be written like the flags (max-steps) or like Python names (max_steps)."""
    return {
        key.replace("-", "_"): _underscore_keys(value) if isinstance(value, dict) else value
        for key, value in table.items()
    }
