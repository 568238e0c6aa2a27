"""Judged reply quality: several chatbot "systems" answer one fixed prompt set, their replies go on a blind sheet
for a rater (a person, or an LLM given only the sheet), and a scorer joins the filled ratings with the secret key.

``sheet`` has every system reply to every prompt of the prompt file and writes into --out: replies.jsonl (each
system's raw replies), sheet.md (bench/judged/rubric.md, then each conversation with its replies lowercased, each
distinct reply once, in a seeded per-prompt shuffle, under ids such as ``017-c`` that say nothing of who wrote
them; with --parts N also sheet-1.md ... sheet-N.md, every Nth prompt each, for N raters), a ratings template per
sheet, and key.json (which systems wrote each id: for the scorer only); it prints each system's empty and looping
replies, and how many first messages that are not greetings it answered with only a greeting (the first-turn
greeting bias, ``reply_quality.is_pleasantry``). ``score`` checks the filled ratings (every
id rated exactly once) and prints per system the mean score with a bootstrap interval over prompts, the on-topic,
fluent and rated >= 4 shares, and its empty and looping replies; with --versus, paired differences of the mean
against one system; for all prompts and per prompt kind. It writes the same figures to scores.json.

A system is NAME=SPEC, the SPEC a comma-separated list of key=value:
    model=DIR[,quantized=true|false][,seed=N][,persona=FILE|none][,FIELD=VALUE...]
        FIELD any chatbot.config.DecodeConfig field; persona as `chatbot chat --persona` (default: the model
        directory's persona.yaml if it has one)
    baseline=tfidf[,data=SOURCE]   the training reply whose context's last turn is nearest the user's (TF-IDF)
    recorded=FILE,system=NAME      NAME's replies in an earlier sheet's replies.jsonl, for the same prompts: a
        system the current code no longer runs (a shipped model of an older version) kept side by side

    python bench/judged.py sheet --prompts bench/judged/prompts.jsonl --out DIR --system NAME=SPEC ...
        [--parts N] [--shuffle-seed 0] [--force]
    python bench/judged.py score DIR [--ratings FILE ...] [--versus SYSTEM] [--bootstrap 10000] [--seed 0]

Bad input (a prompt line, a SPEC, a ratings row) is a one-line error, ``FILE:LINE: what is wrong`` where there is
a line, and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import random
import sys
import time
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from chatbot.config import ContextConfig, DataConfig, DecodeConfig
from chatbot.corpora import load_corpora
from chatbot.dialogue.persona import Persona, persona_for
from chatbot.dialogue.types import Role, Turn
from chatbot.errors import ChatbotError, DataError
from chatbot.generation import ResponseGenerator
from chatbot.reply_quality import is_looping, is_pleasantry
from chatbot.text.cleaning import clean_splits
from chatbot.text.pairs import Pair, last_turn, split_pairs

RUBRIC = Path(__file__).resolve().parent / "judged" / "rubric.md"
KINDS = ("first", "follow-up")
RATING_COLUMNS = ("id", "score", "on_topic", "fluent")
SCORES = ("1", "2", "3", "4", "5")
YES_NO = {"yes": True, "no": False}
BOOLEANS = {"true": True, "false": False}
TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
MODEL_KEYS = ("model", "quantized", "seed", "persona")
BASELINE_KEYS = ("baseline", "data")
RECORDED_KEYS = ("recorded", "system")
BATCH_SIZE = 16  # histories decoded at once: the speed of batching at a small model's memory
EMPTY_REPLY = "(empty reply)"
OUTPUTS = ("sheet*.md", "ratings*.csv", "key.json", "replies.jsonl", "scores.json")


# --- the prompt set ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """One conversation of the prompt set; ``number`` ("017") is its place in the file and starts its reply ids."""

    number: str
    id: str
    kind: str
    turns: tuple[str, ...]

    def history(self) -> list[Turn]:
        """The turns as the bot would have stored them: the last is the user's, speakers alternating back from it."""
        last = len(self.turns) - 1
        return [Turn(Role.USER if (last - i) % 2 == 0 else Role.BOT, text) for i, text in enumerate(self.turns)]


def parse_prompt(line: str) -> tuple[str, str, tuple[str, ...]]:
    """(id, kind, turns) of one prompt line; a ValueError says what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from error
    if not isinstance(record, dict):
        raise ValueError('expected a JSON object {"id": ..., "kind": ..., "turns": [...]}')
    prompt_id, kind, turns = record.get("id"), record.get("kind"), record.get("turns")
    if not isinstance(prompt_id, str) or not prompt_id.strip():
        raise ValueError("id must be a non-empty string")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(turns, list) or not turns or not all(isinstance(turn, str) and turn.strip() for turn in turns):
        raise ValueError("turns must be a non-empty list of non-empty strings")
    if (kind == "first") != (len(turns) == 1):
        raise ValueError(f"a first prompt has one turn and a follow-up more; this {kind} prompt has {len(turns)}")
    return prompt_id, kind, tuple(turns)


def read_prompts(path: Path) -> list[Prompt]:
    """Every prompt of ``path`` in file order (blank lines skipped); a bad line is a DataError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read the prompt file ({error})") from error
    parsed: list[tuple[str, str, tuple[str, ...]]] = []
    seen: dict[str, int] = {}
    for line_number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            prompt_id, kind, turns = parse_prompt(line)
        except ValueError as error:
            raise DataError(path, str(error), line_number) from error
        if prompt_id in seen:
            raise DataError(path, f"id {prompt_id!r} was used before, on line {seen[prompt_id]}", line_number)
        seen[prompt_id] = line_number
        parsed.append((prompt_id, kind, turns))
    if not parsed:
        raise DataError(path, "no prompts in the file")
    width = max(3, len(str(len(parsed))))
    return [Prompt(f"{index:0{width}d}", *fields) for index, fields in enumerate(parsed, 1)]


# --- the systems ------------------------------------------------------------------------------------------------


class System(Protocol):
    """Something that replies to conversations: a model, or a baseline."""

    def replies(self, histories: Sequence[Sequence[Turn]]) -> list[str | None]: ...

    def describe(self) -> dict[str, Any]: ...


class ModelSystem:
    """A model directory decoding with ``config``, answering from ``persona`` what matches it, as the chat does;
    sampled replies draw from torch's generator seeded with ``seed``."""

    def __init__(self, generator: ResponseGenerator, config: DecodeConfig, seed: int, persona: Persona | None) -> None:
        self.generator = generator
        self.config = config
        self.seed = seed
        self.persona = persona

    def replies(self, histories: Sequence[Sequence[Turn]]) -> list[str | None]:
        torch.manual_seed(self.seed)
        texts: list[str | None] = []
        for start in range(0, len(histories), BATCH_SIZE):
            texts.extend(
                generated.text
                for generated in self.generator.replies(histories[start : start + BATCH_SIZE], self.config)
            )
        answers = [self.persona.answer(history[-1].text) if self.persona else None for history in histories]
        return [text if answer is None else answer.reply for text, answer in zip(texts, answers, strict=True)]

    def describe(self) -> dict[str, Any]:
        """The model's name with its weights' hash, every decoding setting used, and the persona file."""
        persona = str(self.persona.path) if self.persona else None
        return {"model": self.generator.model_name, "decode": dataclasses.asdict(self.config), "persona": persona}


class TfidfBaseline:
    """Lexical retrieval: the reply of the training pair whose last context turn is nearest (TF-IDF cosine) the
    user's message; ties go to the earlier pair. What a model must beat to be worth its weights."""

    def __init__(self, pairs: Sequence[Pair], source: str) -> None:
        self.source = source
        self.responses = [pair.response for pair in pairs]
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
        self.matrix = self.vectorizer.fit_transform([last_turn(pair.context) for pair in pairs])  # (pairs, terms)

    def replies(self, histories: Sequence[Sequence[Turn]]) -> list[str | None]:
        queries = self.vectorizer.transform([history[-1].text for history in histories])  # (histories, terms)
        similarity = queries @ self.matrix.T  # rows are unit length, so the dot product is the cosine
        nearest = np.asarray(similarity.argmax(axis=1)).ravel()
        return [self.responses[index] for index in nearest]

    def describe(self) -> dict[str, Any]:
        return {"baseline": "tfidf", "data": self.source, "pairs": len(self.responses)}


def parse_system(option: str) -> tuple[str, dict[str, str]]:
    """``NAME=key=value,key=value`` -> (NAME, {key: value})."""
    name, separator, spec = option.partition("=")
    if not separator or not name.strip():
        raise ChatbotError(f"--system {option}: expected NAME=SPEC, such as default=model=data/default-model")
    values: dict[str, str] = {}
    for item in spec.split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key:
            raise ChatbotError(f"--system {name}: {item!r} is not key=value")
        if key in values:
            raise ChatbotError(f"--system {name}: {key} is given twice")
        values[key] = value
    return name.strip(), values


def convert(name: str, key: str, value: str, like: bool | int | float | str) -> Any:
    """``value`` as the type of ``like`` (a setting's current value): bool from true/false, int, float or str."""
    kind = type(like)
    if kind not in TYPE_NAMES:
        raise ChatbotError(f"--system {name}: {key} cannot be set here (its value is a {kind.__name__})")
    try:
        return BOOLEANS[value.lower()] if kind is bool else kind(value)
    except (KeyError, ValueError) as error:
        raise ChatbotError(f"--system {name}: {key}={value} is not {TYPE_NAMES[kind]}") from error


def model_system(name: str, spec: dict[str, str]) -> ModelSystem:
    """The model system of a SPEC; decoding keys override the model's decode config, checked before any decoding."""
    decode_fields = [field.name for field in dataclasses.fields(DecodeConfig)]
    unknown = [key for key in spec if key not in MODEL_KEYS and key not in decode_fields]
    if unknown:
        known = ", ".join([*MODEL_KEYS, *decode_fields])
        raise ChatbotError(f"--system {name}: unknown key {unknown[0]!r} for a model (known: {known})")
    quantized = convert(name, "quantized", spec.get("quantized", "true"), True)  # int8, as `chatbot chat` runs
    try:
        generator = ResponseGenerator(Path(spec["model"]), quantized=quantized)
        persona = persona_for(Path(spec["model"]), spec.get("persona"))
    except ChatbotError as error:
        raise ChatbotError(f"--system {name}: {error}") from error
    defaults = generator.decode_config
    overrides = {
        key: convert(name, key, value, getattr(defaults, key)) for key, value in spec.items() if key in decode_fields
    }
    try:
        config = dataclasses.replace(defaults, **overrides)
    except ChatbotError as error:
        raise ChatbotError(f"--system {name}: {error}") from error
    return ModelSystem(generator, config, convert(name, "seed", spec.get("seed", "0"), 0), persona)


class RecordedReplies:
    """The replies one system gave to these prompts on an earlier sheet, read back from its replies.jsonl."""

    def __init__(self, path: Path, system: str, texts: list[str | None]) -> None:
        self.path = path
        self.system = system
        self.texts = texts

    def replies(self, histories: Sequence[Sequence[Turn]]) -> list[str | None]:
        assert len(histories) == len(self.texts)  # built for exactly these prompts, in this order
        return self.texts

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {"recorded": str(self.path), "system": self.system, "sha256": digest}


def recorded_system(name: str, spec: dict[str, str], prompts: Sequence[Prompt]) -> RecordedReplies:
    """The replies of ``spec``'s system in its replies.jsonl, one for each of ``prompts`` (all must be there)."""
    unknown = [key for key in spec if key not in RECORDED_KEYS]
    if unknown or "system" not in spec:
        raise ChatbotError(f"--system {name}: a recorded system is recorded=FILE,system=NAME")
    path, found = Path(spec["recorded"]), {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ChatbotError(f"--system {name}: {path}: {error.strerror}") from None
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            if row["system"] == spec["system"]:
                found[str(row["prompt"])] = row["text"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ChatbotError(f"{path}:{number}: not a replies.jsonl row") from None
    missing = [prompt.id for prompt in prompts if prompt.id not in found]
    if missing:
        raise ChatbotError(f"--system {name}: {path} has no reply of {spec['system']!r} to prompt {missing[0]}")
    return RecordedReplies(path, spec["system"], [found[prompt.id] for prompt in prompts])


def baseline_system(name: str, spec: dict[str, str]) -> TfidfBaseline:
    """The TF-IDF baseline of a SPEC, fitted on the training pairs the models train on."""
    unknown = [key for key in spec if key not in BASELINE_KEYS]
    if unknown:
        raise ChatbotError(f"--system {name}: unknown key {unknown[0]!r} for a baseline (known: baseline, data)")
    if spec["baseline"] != "tfidf":
        raise ChatbotError(f"--system {name}: unknown baseline {spec['baseline']!r} (known: tfidf)")
    source = spec.get("data", "chitchat")
    splits, _ = clean_splits(split_pairs(load_corpora([source]), ContextConfig().history_turns), DataConfig())
    if not splits["train"]:
        raise ChatbotError(f"--system {name}: {source} has no training pairs")
    return TfidfBaseline(splits["train"], source)


def build_system(name: str, spec: dict[str, str], prompts: Sequence[Prompt]) -> System:
    if sum(kind in spec for kind in ("model", "baseline", "recorded")) != 1:
        raise ChatbotError(f"--system {name}: give one of model=DIR, baseline=tfidf or recorded=FILE")
    if "recorded" in spec:
        return recorded_system(name, spec, prompts)
    return model_system(name, spec) if "model" in spec else baseline_system(name, spec)


def build_systems(
    options: Sequence[str], prompts: Sequence[Prompt]
) -> tuple[dict[str, System], dict[str, dict[str, str]]]:
    """Every --system, built (and so checked) before any of them replies; with each one's SPEC as a dict."""
    specs: dict[str, dict[str, str]] = {}
    for option in options:
        name, spec = parse_system(option)
        if name in specs:
            raise ChatbotError(f"--system {name}: the name is used twice")
        specs[name] = spec
    return {name: build_system(name, spec, prompts) for name, spec in specs.items()}, specs


def run_system(name: str, system: System, prompts: Sequence[Prompt]) -> list[str | None]:
    """``system``'s reply to every prompt, with a one-line summary on stdout."""
    started = time.perf_counter()
    texts = system.replies([prompt.history() for prompt in prompts])
    seconds = time.perf_counter() - started
    empty = sum(not normalize(text) for text in texts)
    looping = sum(is_looping(normalize(text)) for text in texts)
    # The first-turn greeting bias: a first message that is not itself a greeting, answered with only a greeting.
    openers = [i for i, prompt in enumerate(prompts) if prompt.kind == "first" and not is_pleasantry(prompt.turns[-1])]
    greeted = sum(is_pleasantry(normalize(texts[i])) for i in openers)
    print(
        f"{name}: {len(texts)} replies, {empty} empty, {looping} looping, "
        f"{greeted} of {len(openers)} first messages that are not greetings answered with a greeting, {seconds:.1f} s"
    )
    return texts


# --- the sheet --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """One reply as the sheet shows it, under ``id``, with every system that wrote it (the key's part)."""

    id: str
    text: str
    systems: tuple[str, ...]


def normalize(text: str | None) -> str:
    """A reply as the rater sees it: lowercased (as the models write), whitespace collapsed; "" for none."""
    return " ".join((text or "").lower().split())


def letters(index: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa: a reply's letter within its prompt."""
    name, index = "", index + 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("a") + rest) + name
    return name


def arrange(prompt: Prompt, replies: dict[str, str | None], seed: int) -> list[Shown]:
    """The distinct replies to ``prompt`` in an order shuffled per prompt, seeded, and independent of the order
    the systems were given in, so neither a letter nor a place on the sheet says who wrote a reply."""
    writers: dict[str, list[str]] = {}
    for system, text in replies.items():
        writers.setdefault(normalize(text), []).append(system)
    texts = sorted(writers)
    random.Random(f"{seed}/{prompt.id}").shuffle(texts)
    return [Shown(f"{prompt.number}-{letters(i)}", text, tuple(writers[text])) for i, text in enumerate(texts)]


def render_prompt(prompt: Prompt, shown: Sequence[Shown]) -> str:
    conversation = "\n".join(f"{turn.role.value}: {normalize(turn.text)}" for turn in prompt.history())
    replies = "\n".join(f"- {reply.id}: {reply.text or EMPTY_REPLY}" for reply in shown)
    return f"## Prompt {prompt.number}\n\n```text\n{conversation}\n```\n\n{replies}"


def render_sheet(title: str, ratings_name: str, rubric: str, arranged: dict[Prompt, list[Shown]]) -> str:
    """A self-contained sheet: the rubric, then each prompt with its replies."""
    head = [f"# {title}", rubric.strip(), f"Your ratings file: {ratings_name}"]
    return "\n\n".join(head + [render_prompt(prompt, shown) for prompt, shown in arranged.items()]) + "\n"


def write_template(path: Path, arranged: dict[Prompt, list[Shown]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(RATING_COLUMNS)
        writer.writerows([reply.id, "", "", ""] for shown in arranged.values() for reply in shown)


def write_sheets(out: Path, rubric: str, arranged: dict[Prompt, list[Shown]], parts: int) -> None:
    """sheet.md and ratings.csv for all prompts, and with ``parts`` > 1 a numbered pair per part: every
    ``parts``-th prompt, so each rater sees both kinds of prompt whatever the order of the prompt file."""
    sheets = [("", "Rating sheet", arranged)]
    prompts = list(arranged)
    for part in range(1, parts + 1 if parts > 1 else 1):
        sliced = {prompt: arranged[prompt] for prompt in prompts[part - 1 :: parts]}
        sheets.append((f"-{part}", f"Rating sheet, part {part} of {parts}", sliced))
    for suffix, title, chosen in sheets:
        ratings = out / f"ratings{suffix}.csv"
        (out / f"sheet{suffix}.md").write_text(render_sheet(title, ratings.name, rubric, chosen), encoding="utf-8")
        write_template(ratings, chosen)


def check_out(out: Path, force: bool) -> None:
    """Refuse a non-empty ``out`` unless forced, before any system is built or replies."""
    if out.exists() and any(out.iterdir()) and not force:
        raise ChatbotError(f"{out} is not empty; pass --force to write a new sheet over it")


def clear_out(out: Path) -> None:
    """An empty-of-sheets ``out``: an earlier sheet's files go, as its parts and templates may not be overwritten."""
    for pattern in OUTPUTS:
        for path in out.glob(pattern):
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def write_replies(path: Path, replies: dict[str, list[str | None]], arranged: dict[Prompt, list[Shown]]) -> None:
    """replies.jsonl: each system's raw reply to each prompt (None where the model was unsure), with its sheet id."""
    with path.open("w", encoding="utf-8") as handle:
        for i, (prompt, shown) in enumerate(arranged.items()):
            ids = {system: reply.id for reply in shown for system in reply.systems}
            for name, texts in replies.items():
                row = {"prompt": prompt.id, "kind": prompt.kind, "system": name, "text": texts[i], "id": ids[name]}
                handle.write(json.dumps(row) + "\n")


def make_key(
    args: argparse.Namespace,
    specs: dict[str, dict[str, str]],
    systems: dict[str, System],
    arranged: dict[Prompt, list[Shown]],
) -> dict[str, Any]:
    """key.json: who wrote each reply id, which prompt each number is, and how the sheet was made."""
    return {
        "ids": {reply.id: list(reply.systems) for shown in arranged.values() for reply in shown},
        "prompts": {prompt.number: prompt.id for prompt in arranged},
        "systems": specs,
        "resolved": {name: system.describe() for name, system in systems.items()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prompts_sha256": hashlib.sha256(args.prompts.read_bytes()).hexdigest(),
        "shuffle_seed": args.shuffle_seed,
        "parts": args.parts,
        "command": args.command,
    }


def make_sheet(args: argparse.Namespace) -> None:
    prompts = read_prompts(args.prompts)
    if not 1 <= args.parts <= len(prompts):
        raise ChatbotError(f"--parts must be between 1 and the number of prompts ({len(prompts)})")
    rubric = RUBRIC.read_text(encoding="utf-8")
    check_out(args.out, args.force)
    systems, specs = build_systems(args.system, prompts)
    replies = {name: run_system(name, system, prompts) for name, system in systems.items()}
    arranged = {
        prompt: arrange(prompt, {name: texts[i] for name, texts in replies.items()}, args.shuffle_seed)
        for i, prompt in enumerate(prompts)
    }
    clear_out(args.out)
    write_replies(args.out / "replies.jsonl", replies, arranged)
    write_sheets(args.out, rubric, arranged, args.parts)
    key = make_key(args, specs, systems, arranged)
    (args.out / "key.json").write_text(json.dumps(key, indent=2) + "\n", encoding="utf-8")


# --- the ratings ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rating:
    """One row of a filled ratings file."""

    score: int
    on_topic: bool
    fluent: bool


def csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank row of a CSV file, the header included."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            return [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(path, f"cannot read the ratings ({error})") from error


def has_ratings(path: Path) -> bool:
    """Whether any row of ``path`` has something filled in beside its id: a template nobody has touched has not."""
    return any(any(cell.strip() for cell in row[1:]) for _, row in csv_rows(path)[1:])


def parse_rating(cells: dict[str, str]) -> Rating | None:
    """The rating of one row, None when it is left empty; a ValueError says what is wrong with it."""
    score, on_topic, fluent = (cells.get(column, "").strip().lower() for column in RATING_COLUMNS[1:])
    if not (score or on_topic or fluent):
        return None
    if score not in SCORES:
        raise ValueError(f"score must be a whole number from 1 to 5, not {score!r}")
    for column, value in (("on_topic", on_topic), ("fluent", fluent)):
        if value not in YES_NO:
            raise ValueError(f"{column} must be yes or no, not {value!r}")
    return Rating(int(score), YES_NO[on_topic], YES_NO[fluent])


def read_ratings_file(path: Path, ids: dict[str, list[str]]) -> list[tuple[int, str, Rating | None]]:
    """(line, reply id, rating or None if left empty) of every row of one ratings file."""
    rows = csv_rows(path)
    header = [cell.strip().lower() for cell in rows[0][1]] if rows else []
    if not set(RATING_COLUMNS) <= set(header):
        raise DataError(path, f"the first line must be the header {','.join(RATING_COLUMNS)}", 1)
    read = []
    for line, row in rows[1:]:
        cells = dict(zip(header, row, strict=False))
        reply_id = cells.get("id", "").strip()
        if reply_id not in ids:
            raise DataError(path, f"unknown reply id {reply_id!r}", line)
        try:
            read.append((line, reply_id, parse_rating(cells)))
        except ValueError as error:
            raise DataError(path, f"{reply_id}: {error}", line) from error
    return read


def every_score(folder: Path) -> dict[str, list[int]]:
    """Every score each reply id of a sheet or pool directory got, over all its ratings files (a pool's ids may
    be rated by several raters); ids left unrated are absent."""
    ids = read_json(folder / "key.json")["ids"]
    found: dict[str, list[int]] = {}
    for path in sorted(folder.glob("ratings-*.csv")):
        for _, reply_id, rating in read_ratings_file(path, ids):
            if rating is not None:
                found.setdefault(reply_id, []).append(rating.score)
    return found


def rated_rows(folders: Iterable[Path], prompts: Container[str]) -> Iterator[tuple[dict[str, Any], list[int]]]:
    """Each reply shown on the pools and sheets ``folders`` to one of ``prompts`` (a pool's features.jsonl row, a
    sheet's replies.jsonl row), once per folder and reply id, with every score it got there; unrated ones skipped."""
    for folder in folders:
        scores = every_score(folder)
        shown = "features.jsonl" if folder.name.startswith("pool-") else "replies.jsonl"
        seen = set()
        for row in read_json_lines(folder / shown):
            if row["id"] in scores and row["id"] not in seen and row["prompt"] in prompts:
                seen.add(row["id"])
                yield row, scores[row["id"]]


def read_ratings(files: Sequence[Path], ids: dict[str, list[str]], templates: Sequence[Path]) -> dict[str, Rating]:
    """Every reply id's one rating from ``files`` together; ``templates`` (unfilled files) only help to say where
    a missing rating belongs."""
    rated: dict[str, tuple[Rating, str]] = {}
    empty: dict[str, tuple[Path, int]] = {}
    for path in files:
        for line, reply_id, rating in read_ratings_file(path, ids):
            if rating is None:
                empty.setdefault(reply_id, (path, line))
            elif reply_id in rated:
                raise DataError(path, f"{reply_id} is rated twice (first at {rated[reply_id][1]})", line)
            else:
                rated[reply_id] = (rating, f"{path}:{line}")
    missing = [reply_id for reply_id in ids if reply_id not in rated]
    if missing:
        path, line = empty.get(missing[0]) or template_line(missing[0], templates) or end_of(files[-1])
        raise DataError(path, f"{missing[0]} is not rated ({len(missing)} of {len(ids)} ids are not)", line)
    return {reply_id: rating for reply_id, (rating, _) in rated.items()}


def template_line(reply_id: str, templates: Sequence[Path]) -> tuple[Path, int] | None:
    """Where ``reply_id``'s row is in an unfilled template, if it is in one."""
    for path in templates:
        for line, row in csv_rows(path):
            if row[0].strip() == reply_id:
                return path, line
    return None


def end_of(path: Path) -> tuple[Path, int]:
    """The line after the last of ``path``: where a row nowhere to be found would go."""
    rows = csv_rows(path)
    return path, (rows[-1][0] if rows else 0) + 1


def ratings_files(directory: Path, chosen: Sequence[Path] | None) -> tuple[list[Path], list[Path]]:
    """(files to read, unfilled templates): the files given, or else every ratings*.csv in ``directory`` that has a
    rating filled in, so the parts of a shared sheet are read together and untouched templates are left out."""
    if chosen:
        return list(chosen), []
    found = sorted(directory.glob("ratings*.csv"))
    filled = [path for path in found if has_ratings(path)]
    if not filled:
        raise ChatbotError(f"{directory}: no ratings*.csv has a rating filled in")
    return filled, [path for path in found if path not in filled]


# --- the scores -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """Every system's rated reply to every prompt, as (systems, prompts) arrays, and each prompt's kind."""

    systems: list[str]
    kinds: list[str]
    score: np.ndarray  # (systems, prompts) float
    on_topic: np.ndarray  # (systems, prompts) bool, as are the rest
    fluent: np.ndarray
    empty: np.ndarray
    looping: np.ndarray

    def of_kind(self, kind: str) -> Judged:
        chosen = [i for i, each in enumerate(self.kinds) if each == kind]
        arrays = {name: getattr(self, name)[:, chosen] for name in ("score", "on_topic", "fluent", "empty", "looping")}
        return Judged(self.systems, [kind] * len(chosen), **arrays)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ChatbotError(f"{path}: cannot read it ({error}); is this a directory `judged.py sheet` wrote?") from error


def read_json_lines(path: Path) -> list[Any]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise ChatbotError(f"{path}: cannot read it ({error}); is this a directory `judged.py sheet` wrote?") from error


def judged(directory: Path, key: dict[str, Any], ratings: dict[str, Rating]) -> Judged:
    """The ratings laid out per system and prompt, with each reply's text (for empty and looping) and kind."""
    replies = {(row["prompt"], row["system"]): row for row in read_json_lines(directory / "replies.jsonl")}
    systems, numbers = list(key["systems"]), sorted(key["prompts"])
    ids = {(system, reply_id.rsplit("-", 1)[0]): reply_id for reply_id, names in key["ids"].items() for system in names}
    rows = [
        [(ratings[ids[system, number]], replies[key["prompts"][number], system]) for number in numbers]
        for system in systems
    ]
    return Judged(
        systems,
        [replies[key["prompts"][number], systems[0]]["kind"] for number in numbers],
        np.array([[rating.score for rating, _ in row] for row in rows], dtype=float),
        np.array([[rating.on_topic for rating, _ in row] for row in rows]),
        np.array([[rating.fluent for rating, _ in row] for row in rows]),
        np.array([[not normalize(reply["text"]) for _, reply in row] for row in rows]),
        np.array([[is_looping(normalize(reply["text"])) for _, reply in row] for row in rows]),
    )


def resample(prompts: int, draws: int, seed: int) -> np.ndarray:
    """(draws, prompts): how often each prompt is drawn in each resample of the prompts with replacement."""
    return np.random.default_rng(seed).multinomial(prompts, np.full(prompts, 1 / prompts), size=draws)


def interval(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(systems, 2): the 95% percentile bootstrap interval of each row's mean, over the resamples ``counts``."""
    means = values @ counts.T / values.shape[1]  # (systems, draws)
    return np.asarray(np.percentile(means, [2.5, 97.5], axis=1)).T


def table(data: Judged, draws: int, seed: int, versus: str | None) -> dict[str, Any]:
    """The figures of one table: per system, and per other system its paired difference against ``versus``."""
    counts = resample(data.score.shape[1], draws, seed)  # the same resamples for every system: paired differences
    bounds = interval(data.score, counts)
    result: dict[str, Any] = {"prompts": data.score.shape[1], "systems": {}}
    for i, name in enumerate(data.systems):
        result["systems"][name] = {
            "n": int(data.score.shape[1]),
            "mean": float(data.score[i].mean()),
            "interval": [float(bound) for bound in bounds[i]],
            "on_topic_pct": 100 * float(data.on_topic[i].mean()),
            "fluent_pct": 100 * float(data.fluent[i].mean()),
            "rated_4_plus_pct": 100 * float((data.score[i] >= 4).mean()),
            "empty": int(data.empty[i].sum()),
            "looping": int(data.looping[i].sum()),
        }
    if versus is not None:
        reference = data.systems.index(versus)
        differences = data.score - data.score[reference]  # (systems, prompts)
        bounds = interval(differences, counts)
        result["versus"] = {
            name: {"difference": float(differences[i].mean()), "interval": [float(bound) for bound in bounds[i]]}
            for i, name in enumerate(data.systems)
            if i != reference
        }
    return result


def render_table(title: str, figures: dict[str, Any], versus: str | None) -> str:
    lines = [
        f"### {title} ({figures['prompts']} prompts)",
        "",
        "| system | n | mean | 95% interval | on topic | fluent | rated ≥ 4 | empty | looping |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, row in figures["systems"].items():
        low, high = row["interval"]
        lines.append(
            f"| {name} | {row['n']} | {row['mean']:.2f} | [{low:.2f}, {high:.2f}] | {row['on_topic_pct']:.0f}% "
            f"| {row['fluent_pct']:.0f}% | {row['rated_4_plus_pct']:.0f}% | {row['empty']} | {row['looping']} |"
        )
    if versus is not None:
        lines += ["", f"| system | mean − {versus} | 95% interval |", "|---|--:|--:|"]
        for name, row in figures["versus"].items():
            low, high = row["interval"]
            lines.append(f"| {name} | {row['difference']:+.2f} | [{low:+.2f}, {high:+.2f}] |")
    return "\n".join(lines)


def score_sheet(args: argparse.Namespace) -> None:
    key = read_json(args.dir / "key.json")
    if args.versus is not None and args.versus not in key["systems"]:
        raise ChatbotError(f"--versus {args.versus}: no such system (systems: {', '.join(key['systems'])})")
    if args.bootstrap < 1:
        raise ChatbotError("--bootstrap must be at least 1")
    files, templates = ratings_files(args.dir, args.ratings)
    data = judged(args.dir, key, read_ratings(files, key["ids"], templates))
    groups = {"all": data} | {kind: data.of_kind(kind) for kind in KINDS if kind in data.kinds}
    tables = {name: table(group, args.bootstrap, args.seed, args.versus) for name, group in groups.items()}
    report = {"ratings": [str(path) for path in files], "bootstrap": args.bootstrap, "seed": args.seed}
    report |= {"versus": args.versus, "tables": tables}
    (args.dir / "scores.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    intro = (
        f"Ratings: {', '.join(path.name for path in files)}. Mean score 1-5; interval: {args.bootstrap} bootstrap "
        f"resamples of the prompts (seed {args.seed}); differences are paired over the same resamples."
    )
    titles = {"all": "All prompts", "first": "First messages", "follow-up": "Follow-ups"}
    print("\n\n".join([intro, *(render_table(titles[name], figures, args.versus) for name, figures in tables.items())]))


# --- the command line -------------------------------------------------------------------------------------------


def add_sheet_options(sheet: argparse.ArgumentParser) -> None:
    """The options of a command that writes a sheet (this one's and candidate_pool.py's)."""
    sheet.add_argument("--prompts", type=Path, required=True, help="the prompt set, JSON lines")
    sheet.add_argument("--out", type=Path, required=True, help="directory for the sheet, templates and key")
    sheet.add_argument("--parts", type=int, default=1, help="also split the sheet into this many, one per rater")
    sheet.add_argument("--shuffle-seed", type=int, default=0, help="seeds the order of replies on the sheet")
    sheet.add_argument("--force", action="store_true", help="write over a directory that is not empty")


def add_ratings_options(reader: argparse.ArgumentParser) -> None:
    """The options of a command that reads a filled sheet."""
    reader.add_argument("dir", type=Path, help="the directory `sheet` wrote")
    reader.add_argument("--ratings", type=Path, nargs="+", action="extend", help="default: filled ratings*.csv")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True)
    sheet = commands.add_parser("sheet", help="generate the replies and write the blind sheet and its key")
    add_sheet_options(sheet)
    sheet.add_argument("--system", action="append", required=True, metavar="NAME=SPEC", help="a system (repeat)")
    sheet.set_defaults(run=make_sheet)
    scorer = commands.add_parser("score", help="join the filled ratings with the key and print the scores")
    add_ratings_options(scorer)
    scorer.add_argument("--versus", metavar="SYSTEM", help="paired differences of the mean against this system")
    scorer.add_argument("--bootstrap", type=int, default=10000, help="resamples of the prompts for intervals")
    scorer.add_argument("--seed", type=int, default=0, help="seeds the bootstrap resamples")
    scorer.set_defaults(run=score_sheet)
    return parser


def run_command(commands: argparse.ArgumentParser, script: str, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` (default: the process's) with ``commands`` and run the chosen subcommand, its command line
    kept in ``args.command``; a ChatbotError is one line on stderr and exit status 2."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = commands.parse_args(arguments)
    args.command = [script, *arguments]
    try:
        args.run(args)
    except ChatbotError as error:
        print(" ".join(str(error).split("\n")), file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), "bench/judged.py", argv)


if __name__ == "__main__":
    sys.exit(main())
