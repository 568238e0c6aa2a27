"""Cleaning: reply length limits, exact duplicates within a split, and held-out pairs that leak from train."""

from __future__ import annotations

from chatbot.config import DataConfig
from chatbot.text.cleaning import CleaningReport, clean_splits
from chatbot.text.pairs import Pair


def pair(context: str, response: str, conversation: str = "c") -> Pair:
    return Pair(context, response, conversation)


SPLITS = {
    "train": [pair("hi", "hello there"), pair("hi", "hello there", "d"), pair("ok", ""), pair("q", "a b c d e f")],
    "valid": [pair("hi", "hello there", "v"), pair("new", "fresh reply", "v")],
    "test": [pair("x", "y z", "t"), pair("x", "y z", "t2")],
}


def test_default_cleaning() -> None:
    cleaned, report = clean_splits(SPLITS, DataConfig())
    assert cleaned["train"] == [pair("hi", "hello there"), pair("q", "a b c d e f")]
    assert cleaned["valid"] == [pair("new", "fresh reply", "v")]
    assert cleaned["test"] == [pair("x", "y z", "t")]
    assert report == CleaningReport(too_short=1, too_long=0, duplicates=2, also_in_train=1)
    assert "2 duplicates" in report.describe()


def test_reply_length_limits() -> None:
    cleaned, report = clean_splits(SPLITS, DataConfig(min_reply_words=2, max_reply_words=3))
    assert [p.response for p in cleaned["train"]] == ["hello there"]
    assert (report.too_short, report.too_long) == (1, 1)


def test_unfiltered_keeps_everything() -> None:
    cleaned, report = clean_splits(SPLITS, DataConfig.unfiltered())
    assert cleaned == SPLITS
    assert report == CleaningReport()
