"""Per-user decoding settings: what ``/mode``, ``/beam``, ``/temperature`` and ``/topp`` choose, stored with the
user as a JSON object, and laid over the model's own decoding defaults for each of their replies.

A field left None means "as the model's defaults say". Values are bounded (a beam of 1,000 would tie up the CPU
for every other user), and a value stored by an older or hand-edited database that is out of bounds is dropped
rather than trusted.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

MODES = ("greedy", "beam", "sample")
MAX_BEAM = 16
MAX_TEMPERATURE = 5.0


class SettingError(ValueError):
    """A settings command with a value out of bounds; its message is what the user is told."""


@dataclass(frozen=True)
class DecodeSettings:
    """How one user's replies are decoded: ``mode`` greedy|beam|sample, ``beam_size`` for beam search, and
    ``temperature`` and nucleus ``top_p`` for sampling (None: the model's default)."""

    mode: str | None = None
    beam_size: int | None = None
    temperature: float | None = None
    top_p: float | None = None

    def over(self, defaults: DecodeSettings) -> DecodeSettings:
        """These settings where given, ``defaults`` elsewhere."""
        chosen = {key: value for key, value in dataclasses.asdict(self).items() if value is not None}
        return dataclasses.replace(defaults, **chosen)

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, for the users.settings column."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> DecodeSettings:
        """Settings from the users.settings column, keeping only known fields with values in bounds."""
        settings = cls()
        for name, value in stored.items():
            try:
                settings = _with(settings, name, str(value))
            except (SettingError, KeyError):
                continue
        return settings

    def describe(self) -> str:
        """One line for ``/settings``: the mode and the numbers it uses."""
        if self.mode == "beam":
            return f"mode beam, beam {self.beam_size}"
        if self.mode == "sample":
            return f"mode sample, temperature {self.temperature:g}, top-p {self.top_p:g}"
        return "mode greedy"


def _number(text: str, kind: type[int] | type[float], low: float, high: float, what: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # a NaN fails this too
        raise SettingError(
            f"{what} must be {'a whole number' if kind is int else 'a number'} from {low:g} to {high:g}."
        )
    return value


def _with(settings: DecodeSettings, name: str, text: str) -> DecodeSettings:
    """``settings`` with field ``name`` parsed from ``text``; SettingError when out of bounds, KeyError when the
    field is unknown."""
    if name == "mode":
        if text not in MODES:
            raise SettingError(f"The mode must be one of {', '.join(MODES)}.")
        return dataclasses.replace(settings, mode=text)
    if name == "beam_size":
        return dataclasses.replace(settings, beam_size=int(_number(text, int, 1, MAX_BEAM, "The beam width")))
    if name == "temperature":
        return dataclasses.replace(settings, temperature=_number(text, float, 0.05, MAX_TEMPERATURE, "The temperature"))
    if name == "top_p":
        return dataclasses.replace(settings, top_p=_number(text, float, 0.01, 1.0, "Top-p"))
    raise KeyError(name)


# Command name -> (the field it sets, the mode it switches to: a beam width means beam search, a temperature or
# top-p means sampling).
COMMAND_FIELDS = {
    "mode": ("mode", None),
    "beam": ("beam_size", "beam"),
    "temperature": ("temperature", "sample"),
    "topp": ("top_p", "sample"),
}


def apply_command(settings: DecodeSettings, name: str, argument: str) -> DecodeSettings:
    """The settings after command ``/name argument`` (one of COMMAND_FIELDS); SettingError for a bad value."""
    field, mode = COMMAND_FIELDS[name]
    if not argument:
        raise SettingError(f"Write a value after /{name}, such as {EXAMPLES[name]}.")
    changed = _with(settings, field, argument.lower() if field == "mode" else argument)
    return dataclasses.replace(changed, mode=mode) if mode else changed


EXAMPLES = {"mode": "/mode beam", "beam": "/beam 5", "temperature": "/temperature 0.8", "topp": "/topp 0.9"}
