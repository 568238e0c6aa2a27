"""Tokenizer: a sentencepiece subword model plus the normalisation and special ids the network relies on.

Ids 0-3 are fixed (pad, unk, bos, eos) and the speaker markers are single pieces, so the model and the tokenizer can
never disagree about them. The serialized sentencepiece model is kept as bytes and stored in the model directory.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from chatbot.config import TokenizerConfig
from chatbot.errors import ChatbotError
from chatbot.text.pairs import SPEAKER_TOKENS

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_IDS = (PAD_ID, UNK_ID, BOS_ID, EOS_ID)


class Tokenizer:
    """Text <-> subword ids, with the normalisation (lowercasing) the model was trained with."""

    pad_id = PAD_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID

    def __init__(self, model_proto: bytes, config: TokenizerConfig) -> None:
        """Raises ValueError (RuntimeError from sentencepiece) for bytes that are not a tokenizer trained here."""
        if not model_proto:  # sentencepiece accepts empty bytes and then answers every call with a logged error
            raise ValueError("empty sentencepiece model")
        self.config = config
        self.model_proto = model_proto
        self._processor = processor = spm.SentencePieceProcessor(model_proto=model_proto)
        special = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
        if special != SPECIAL_IDS:  # another program's sentencepiece model: the network's special ids would be wrong
            raise ValueError(f"special ids (pad, unk, bos, eos) are {special}, not {SPECIAL_IDS}")

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig) -> Tokenizer:
        """Train a sentencepiece model on ``texts`` (one sentence or turn each)."""
        normalise = str.lower if config.lowercase else str
        buffer = io.BytesIO()
        spm.set_random_generator_seed(config.seed)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=(normalise(text) for text in texts),
                model_writer=buffer,
                model_type=config.model_type,
                vocab_size=config.vocab_size,
                hard_vocab_limit=False,  # a small corpus gets a smaller vocabulary instead of an error
                character_coverage=config.character_coverage,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                user_defined_symbols=list(SPEAKER_TOKENS),
                input_sentence_size=2_000_000,
                shuffle_input_sentence=True,
                num_threads=2,  # fixed, not the machine's count: the thread count changes the trained model
                minloglevel=2,
            )
        except RuntimeError as error:
            raise ChatbotError(f"cannot train the tokenizer: {error}") from error
        return cls(buffer.getvalue(), config)

    @classmethod
    def load(cls, path: Path, config: TokenizerConfig) -> Tokenizer:
        return cls(path.read_bytes(), config)

    def save(self, path: Path) -> None:
        path.write_bytes(self.model_proto)

    @property
    def vocab_size(self) -> int:
        return int(self._processor.get_piece_size())

    def encode(self, text: str) -> list[int]:
        """Normalise and split ``text`` into subword ids (no bos/eos)."""
        normalised = text.lower() if self.config.lowercase else text
        return list(self._processor.encode(normalised, out_type=int))

    def decode(self, ids: Sequence[int]) -> str:
        """Join subword ids back into text, dropping special ids."""
        return str(self._processor.decode([i for i in ids if i > EOS_ID]))

    def decode_clean(self, ids: Sequence[int]) -> str:
        """``decode``, with runs of whitespace collapsed to one space and none at the ends: a reply as shown."""
        return " ".join(self.decode(ids).split())

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [str(self._processor.id_to_piece(i)) for i in ids]
