"""Frozen, typed configuration: what a model is, how it was trained, how it decodes, and the TOML file reader.

Every dataclass here round-trips through ``dataclasses.asdict`` so a checkpoint can store it and rebuild it with
``from_dict``; nothing else is needed to load a model.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from chatbot.errors import ChatbotError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ATTENTION_SCORES = ("dot", "general", "concat", "additive")
CELLS = ("gru", "lstm")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
WEIGHT_FORMATS = ("fp32", "fp16")  # how model.pt stores the weights (training/checkpoint.py)
LR_SCHEDULES = ("constant", "plateau", "inverse_sqrt", "cosine")
SAMPLING_SCHEDULES = ("off", "linear", "inverse_sigmoid")


@dataclass(frozen=True)
class TokenizerConfig:
    """How the sentencepiece subword model is trained and how text is normalised before it."""

    vocab_size: int = 4000
    model_type: str = "unigram"
    lowercase: bool = True
    character_coverage: float = 0.9995
    seed: int = 0


@dataclass(frozen=True)
class ContextConfig:
    """How a conversation becomes model input: the history window and the length caps, in subword pieces."""

    history_turns: int = 3
    max_source_tokens: int = 64
    max_target_tokens: int = 32

    def __post_init__(self) -> None:
        if self.history_turns < 1:
            raise ChatbotError("history_turns must be at least 1")


@dataclass(frozen=True)
class DataConfig:
    """Which (context, response) pairs are kept, for training and for evaluating the model trained on them.

    ``max_reply_words`` of 0 means no limit. Models saved before this setting existed were trained on every pair:
    ``unfiltered()`` describes them. ``short_context_share`` of the training pairs whose context has two or more
    turns are also trained on with their context cut to its last turn (text/pairs.py): in a conversation log only
    an opening greeting has a one-turn context, so without them a user's first message reads as "say hello".
    """

    dedupe: bool = True
    min_reply_words: int = 1
    max_reply_words: int = 0
    short_context_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.short_context_share <= 1.0:
            raise ChatbotError(f"short_context_share must be between 0 and 1, not {self.short_context_share}")

    @classmethod
    def unfiltered(cls) -> DataConfig:
        return cls(dedupe=False, min_reply_words=0, max_reply_words=0)


@dataclass(frozen=True)
class ModelShape:
    """The user-chosen shape of the network; ModelConfig adds what the trained tokenizer decides.

    ``attention`` dot, general and concat are Luong's (attention after the decoder RNN step); additive is
    Bahdanau's (attention before it, from the previous state). ``tie_embeddings`` makes the decoder's output
    projection reuse its input embedding matrix; ``share_embeddings`` gives encoder and decoder one embedding.
    """

    embedding_size: int = 256
    hidden_size: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    dropout: float = 0.1
    attention: str = "general"
    cell: str = "gru"
    bidirectional: bool = True
    tie_embeddings: bool = False
    share_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_SCORES:
            raise ChatbotError(f"attention must be one of {', '.join(ATTENTION_SCORES)}, not {self.attention!r}")
        if self.cell not in CELLS:
            raise ChatbotError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ChatbotError("dropout must be in [0, 1)")
        if min(self.embedding_size, self.hidden_size, self.encoder_layers, self.decoder_layers) < 1:
            raise ChatbotError("model sizes and layer counts must be positive")


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ModelShape):
    """The whole shape of the attention seq2seq network: the chosen sizes plus the vocabulary they serve."""

    vocab_size: int
    pad_id: int


@dataclass(frozen=True)
class TrainConfig:
    """How the trainer runs. ``max_steps``, ``time_budget_minutes`` and ``valid_every`` of 0 mean no limit / once
    per epoch; ``precision`` auto picks bf16 autocast where the hardware does bf16 natively; ``device`` auto picks
    CUDA when present, else the CPU. ``batch_tokens`` (0: no limit) also caps a batch's padded source and target
    positions. ``patience`` stops after that many validations without improvement (0: never);
    ``lr_schedule`` follows ``warmup_steps``: constant, plateau (halve the rate when validation stalls),
    inverse_sqrt or cosine decay (see training/schedule.py).
    ``scheduled_sampling`` lowers the teacher-forcing ratio from 1 towards ``min_teacher_forcing`` over about
    ``sampling_decay_steps`` steps (see training/sampling.py). ``checkpoint_every`` saves the resumable training
    state every N steps besides each validation (0: at validations only). ``weights`` is how the finished model's
    ``model.pt`` stores them: fp16 halves the file, and the run rounds its weights to fp16 before its held-out
    metrics and reply index, so those describe the weights a load gives back (fp32 tensors of fp16 values)."""

    epochs: int = 10
    batch_size: int = 64
    batch_tokens: int = 0
    learning_rate: float = 1e-3
    clip_norm: float = 5.0
    seed: int = 0
    max_steps: int = 0
    time_budget_minutes: float = 0.0
    valid_every: int = 0
    precision: str = "auto"
    device: str = "auto"
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    patience: int = 0
    scheduled_sampling: str = "off"
    sampling_decay_steps: int = 10_000
    min_teacher_forcing: float = 0.5
    checkpoint_every: int = 0
    weights: str = "fp32"

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_FORMATS:
            raise ChatbotError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, not {self.weights!r}")
        if self.scheduled_sampling not in SAMPLING_SCHEDULES:
            raise ChatbotError(
                f"scheduled_sampling must be one of {', '.join(SAMPLING_SCHEDULES)}, not {self.scheduled_sampling!r}"
            )
        if not 0.0 <= self.min_teacher_forcing <= 1.0 or self.sampling_decay_steps < 1:
            raise ChatbotError("min_teacher_forcing must be in [0, 1] and sampling_decay_steps at least 1")
        if self.epochs < 1 or self.batch_size < 1:
            raise ChatbotError("epochs and batch size must be at least 1")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ChatbotError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ChatbotError("label_smoothing must be in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ChatbotError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")


DECODE_STRATEGIES = ("greedy", "beam", "sample")
CANDIDATE_SOURCES = ("generated", "retrieved", "both")


@dataclass(frozen=True)
class DecodeConfig:
    """How replies are generated (chatbot/search/).

    ``strategy`` greedy takes the likeliest piece each step; beam keeps the ``beam_size`` best partial replies and
    ranks finished ones by log-probability / ((5 + length) / 6) ** ``length_penalty`` (Wu et al. 2016; 0: raw
    log-probability); sample draws each piece at ``temperature`` from the ``top_k`` likeliest pieces (0: all) whose
    probabilities add up to ``top_p`` (nucleus sampling). ``block_ngram`` forbids repeating any n-gram of that
    many pieces within a reply and ``block_context_ngram`` copying one from the context (0: off); ``block_repeat``
    forbids saying a stretch of pieces twice in a row, or one piece three times (the loops n-gram blocking lets
    through: "as well as well"). ``n_best``
    replies are returned per context (beam: at most ``beam_size``). ``mmi_weight`` above 0 reranks them by MMI
    anti-LM, penalising their first ``mmi_prefix`` pieces' likelihood without context (search/mmi.py). A reply
    whose confidence (geometric-mean piece probability) is below ``min_confidence`` is not sent; the dialogue
    manager answers with its fallback instead (0: always send).

    ``candidates`` says what the reply is chosen from: ``generated`` (the search's best), ``retrieved`` (the
    ``retrieved`` training replies whose messages are closest to the user's, from the model's reply index, and
    for a message of several sentences ``last_sentence_retrieved`` more closest to its last sentence) or ``both``.
    Unless generated alone, every candidate is rescored by the model in one teacher-forced pass:
    log-probability given the context, less ``mmi_weight`` times its first pieces' context-free log-probability,
    length-normalised by ``length_penalty``, plus ``retrieval_weight`` times a retrieved reply's relevance (its
    BM25 score over the best of its search's; candidates.py), plus ``semantic_weight`` times the cosine between
    the user's newest message and the reply under a pretrained sentence encoder (semantic.py).
    """

    max_length: int = field(default=32, metadata={"help": "Longest reply, in pieces."})
    min_length: int = field(
        default=1,
        metadata={"help": "Shortest reply, in pieces (retrieved candidates shorter than this are dropped too)."},
    )
    strategy: str = field(
        default="greedy",
        metadata={"help": "greedy, beam (batched beam search) or sample (temperature, top-k, top-p)."},
    )
    beam_size: int = field(default=5, metadata={"help": "Partial replies kept per step by beam search."})
    length_penalty: float = field(
        default=0.6,
        metadata={"help": "Beam search ranks by log-probability / ((5+length)/6)**this (0: raw; higher: longer)."},
    )
    n_best: int = field(
        default=1,
        metadata={"help": "Candidate replies kept per context (beam: at most --beam-size); the best is used."},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling: below 1 sharper, above 1 flatter than the model's distribution."},
    )
    top_k: int = field(default=0, metadata={"help": "Sampling: draw only from the K likeliest pieces (0: all)."})
    top_p: float = field(
        default=1.0,
        metadata={
            "help": "Sampling: draw only from the likeliest pieces whose probabilities add up to this (nucleus)."
        },
    )
    block_ngram: int = field(
        default=3,
        metadata={"help": "Never repeat an n-gram of this many pieces within a reply (0: off)."},
    )
    block_context_ngram: int = field(
        default=0,
        metadata={"help": "Never copy an n-gram of this many pieces from the context (0: off)."},
    )
    block_repeat: bool = field(
        default=True,
        metadata={"help": "Never say a stretch of pieces twice in a row, or one piece three times (true/false)."},
    )
    mmi_weight: float = field(
        default=0.0,
        metadata={
            "help": "Rerank the n-best replies by MMI anti-LM with this weight, against generic "
            "replies (0: off; try 0.3 with --strategy beam --n-best 5)."
        },
    )
    mmi_prefix: int = field(
        default=5,
        metadata={"help": "MMI penalises the context-free likelihood of this many first pieces of a reply."},
    )
    min_confidence: float = field(
        default=0.0,
        metadata={
            "help": "Below this per-piece geometric-mean probability the bot says it is unsure instead (0: off)."
        },
    )
    candidates: str = field(
        default="generated",
        metadata={
            "help": "What the reply is chosen from: generated (the search's best), retrieved "
            "(training replies to the closest training messages, from the model's reply "
            "index) or both; unless generated, the model rescores every candidate against "
            "the context (--mmi-weight, --length-penalty) and sends the best."
        },
    )
    retrieved: int = field(
        default=10, metadata={"help": "How many training replies the reply index retrieves as candidates."}
    )
    last_sentence_retrieved: int = field(
        default=0,
        metadata={
            "help": "Candidates: for a message of several sentences, also retrieve this many training replies by "
            "its last sentence alone (an answer and a question back: the question), each search's relevance over "
            "its own best (0: off)."
        },
    )
    retrieval_weight: float = field(
        default=0.0,
        metadata={
            "help": "Candidates: add this times a retrieved reply's relevance (its BM25 score over "
            "the best its search retrieved, 0 for a generated reply) to its score."
        },
    )
    semantic_weight: float = field(
        default=0.0,
        metadata={
            "help": "Candidates: add this times the cosine between the user's message and the reply, as a "
            "pretrained sentence encoder (all-MiniLM-L6-v2, distilled into the reply index) sees them, to its "
            "score (0: off)."
        },
    )

    def __post_init__(self) -> None:
        if self.candidates not in CANDIDATE_SOURCES:
            raise ChatbotError(f"candidates must be one of {', '.join(CANDIDATE_SOURCES)}, not {self.candidates!r}")
        if self.retrieved < 1 or self.last_sentence_retrieved < 0:
            raise ChatbotError("retrieved must be at least 1 and last_sentence_retrieved at least 0")
        if self.strategy not in DECODE_STRATEGIES:
            raise ChatbotError(f"strategy must be one of {', '.join(DECODE_STRATEGIES)}, not {self.strategy!r}")
        if self.max_length < 1 or not 0 <= self.min_length <= self.max_length:
            raise ChatbotError("max_length must be at least 1 and min_length between 0 and max_length")
        if (
            self.beam_size < 1
            or self.n_best < 1
            or self.top_k < 0
            or min(self.block_ngram, self.block_context_ngram) < 0
        ):
            raise ChatbotError("beam_size and n_best must be at least 1; top_k and n-gram sizes at least 0")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ChatbotError("temperature must be positive and top_p in (0, 1]")


T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build the dataclass ``cls`` from a dict, ignoring unknown keys so older code reads newer files kindly."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: value for key, value in values.items() if key in names})


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file: top-level keys apply to every command, ``[train]``-style tables to one."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ChatbotError(f"{path}: cannot read config file: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ChatbotError(f"{path}: invalid TOML: {error}") from error
