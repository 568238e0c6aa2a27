"""Tokenizer: fixed special ids, speaker markers as single pieces, normalisation, and a byte-exact round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.config import TokenizerConfig
from chatbot.corpora import load_corpus
from chatbot.text.pairs import OTHER_TURN, OWN_TURN
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer


@pytest.fixture(scope="module")
def tokenizer(sample_path: Path) -> Tokenizer:
    texts = [turn.text for conversation in load_corpus(str(sample_path)) for turn in conversation.turns]
    return Tokenizer.train(texts, TokenizerConfig(vocab_size=150))


def test_special_ids_are_fixed(tokenizer: Tokenizer) -> None:
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (
        PAD_ID,
        UNK_ID,
        BOS_ID,
        EOS_ID,
    )
    assert tokenizer.pieces([PAD_ID, BOS_ID, EOS_ID]) == ["<pad>", "<s>", "</s>"]


def test_speaker_markers_are_single_pieces(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(f"{OTHER_TURN} hi {OWN_TURN} hello")
    assert tokenizer.pieces(ids).count(OTHER_TURN) == 1
    assert tokenizer.pieces(ids).count(OWN_TURN) == 1


def test_lowercases_and_round_trips(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("Hello THERE, how are you?")
    assert tokenizer.decode(ids) == "hello there, how are you?"
    assert tokenizer.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == "hello there, how are you?"


def test_saved_model_reloads_identically(tokenizer: Tokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path / "tok.model")
    again = Tokenizer.load(tmp_path / "tok.model", tokenizer.config)
    assert again.encode("what do you do for fun?") == tokenizer.encode("what do you do for fun?")
    assert again.vocab_size == tokenizer.vocab_size


def test_training_is_deterministic(sample_path: Path) -> None:
    texts = [turn.text for conversation in load_corpus(str(sample_path)) for turn in conversation.turns]
    first = Tokenizer.train(texts, TokenizerConfig(vocab_size=120))
    second = Tokenizer.train(texts, TokenizerConfig(vocab_size=120))
    assert first.model_proto == second.model_proto
