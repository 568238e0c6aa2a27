"""Cleaning: the pair filters applied after the split — reply length limits, exact duplicates, and leakage.

Duplicates are judged on the exact (context, response) text. Within a split only the first copy is kept; a valid or
test pair that also occurs in train is dropped, so held-out scores never reward memorising a training pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.config import DataConfig
from chatbot.text.pairs import Pair


@dataclass(frozen=True)
class CleaningReport:
    """How many pairs each filter removed, over all splits."""

    too_short: int = 0
    too_long: int = 0
    duplicates: int = 0
    also_in_train: int = 0

    def describe(self) -> str:
        return (
            f"removed {self.too_short:,} short and {self.too_long:,} long replies, {self.duplicates:,} duplicates, "
            f"{self.also_in_train:,} held-out pairs also in train"
        )


def clean_splits(splits: dict[str, list[Pair]], config: DataConfig) -> tuple[dict[str, list[Pair]], CleaningReport]:
    """The pairs of each split that pass ``config``'s filters, and a count of what was removed."""
    too_short = too_long = duplicates = 0
    cleaned: dict[str, list[Pair]] = {}
    for name, pairs in splits.items():
        words = [len(pair.response.split()) for pair in pairs]
        short = [count < config.min_reply_words for count in words]
        long = [bool(config.max_reply_words) and count > config.max_reply_words for count in words]
        kept = [pair for pair, s, g in zip(pairs, short, long, strict=True) if not (s or g)]
        too_short, too_long = too_short + sum(short), too_long + sum(long)
        unique = _first_copies(kept) if config.dedupe else kept
        duplicates += len(kept) - len(unique)
        cleaned[name] = unique
    also_in_train = 0
    if config.dedupe and "train" in cleaned:
        seen = {(pair.context, pair.response) for pair in cleaned["train"]}
        for name in cleaned.keys() - {"train"}:
            held_out = [pair for pair in cleaned[name] if (pair.context, pair.response) not in seen]
            also_in_train += len(cleaned[name]) - len(held_out)
            cleaned[name] = held_out
    return cleaned, CleaningReport(too_short, too_long, duplicates, also_in_train)


def _first_copies(pairs: list[Pair]) -> list[Pair]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for pair in pairs:
        key = (pair.context, pair.response)
        if key not in seen:
            seen.add(key)
            unique.append(pair)
    return unique
