"""Candidate pools, rated: how good the best candidate the reply index finds is, and how often a scoring picks it.

The shipped decoding sends the model's choice among the replies the reply index retrieves (chatbot/candidates.py).
A poor reply has two possible causes: nothing good was retrieved, or the scoring passed over what was. A sheet of
whole pools tells them apart, and lets any scoring be tried offline against the same ratings:

``sheet`` retrieves each prompt's candidates as the shipped decoding does (int8 weights, ``--retrieved`` replies,
deduplicated, cut to what the model can say whole), records each candidate's features in features.jsonl (its
log-probability after the context and after the neutral context, its pieces and its relevance), and writes every
candidate on a blind sheet in judged.py's format (the rubric, lowercased, shuffled per prompt, one id per distinct
text, ``--parts`` for several raters) with the key apart.

``fit`` joins the filled ratings with the features and prints the pool's ceiling (the mean rating of each prompt's
best candidate), the mean of all candidates, and the mean rating of what each scoring of a grid would have sent
(and, as the honest figure for tuning, the best scoring of half the prompts rated on the other half):

    (log p(T|S) - mmi_weight * log p(T|neutral)) / length_penalty(|T| + 1, length_penalty)
        + retrieval_weight * relevance

the model's own decoding marked among them. Tune on the dev prompts, never on the judged prompts.

What ``fit`` gained on the dev pool (bench/judged/dev_prompts.jsonl, 42 prompts) was an upper bound, not a
forecast: three scorings it chose gained +0.34 to +0.79 there and -0.11 to -0.03 against the shipped decoding on
judged sheets G, I and J, and a reranker fitted to two pools' ratings gained +0.2 cross-validated and +0.01 on
sheet K. Use pools to diagnose (the ceiling, the model's choice); confirm a scoring on a judged.py sheet of fresh
dev prompts (bench/judged/dev_prompts_b.jsonl, 153) before the judged ones.

    python bench/candidate_pool.py sheet --prompts bench/judged/dev_prompts.jsonl --model data/default-model \\
        --out DIR [--retrieved 20] [--parts 5] [--shuffle-seed 0] [--force]
    python bench/candidate_pool.py fit DIR [--ratings FILE ...] [--top 12]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # judged.py, this script's neighbour, owns the sheet format
import judged

from chatbot.candidates import pool
from chatbot.errors import ChatbotError
from chatbot.generation import ResponseGenerator
from chatbot.reply_index import FILE_NAME, ReplyIndex
from chatbot.search.beam import length_penalty
from chatbot.search.scoring import target_log_probs
from chatbot.text.batching import pad
from chatbot.text.pairs import OTHER_TURN, history_context

GRID = {
    "mmi_weight": (0.0, 0.3, 0.5, 0.7, 0.9, 1.0),
    "length_penalty": (0.0, 0.6, 1.0, 1.5),
    "retrieval_weight": (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0),
}


@dataclass(frozen=True)
class Features:
    """What a scoring may weigh of one candidate."""

    log_prob: float  # log p(T + eos | context)
    context_free: float  # log p(T + eos | neutral context)
    pieces: int  # |T| + 1
    relevance: float


# --- the sheet ---------------------------------------------------------------------------------------------------


def candidates_of(generator: ResponseGenerator, index: ReplyIndex, prompt: judged.Prompt, retrieved: int) -> dict:
    """Each distinct candidate text of ``prompt`` (as the tokenizer says it back) with its features."""
    bundle, context = generator.load(), generator.context
    tokenizer, config = bundle.tokenizer, generator.decode_config
    history = prompt.history()
    found = index.retrieve(history[-1].text, retrieved, config.last_sentence_retrieved)
    ids = [tokenizer.encode(each.text) for each in found]
    pooled = pool([], found, ids, context.max_target_tokens, config.min_length)
    if not pooled:
        return {}
    source = tokenizer.encode(history_context(history, context.history_turns))[-context.max_source_tokens :]
    targets = [[*candidate.tokens, tokenizer.eos_id] for candidate in pooled]
    with torch.inference_mode():
        encoded = bundle.model.encode(pad([source, tokenizer.encode(OTHER_TURN)], tokenizer.pad_id))
        rows = [0] * len(targets) + [1] * len(targets)
        scores = target_log_probs(bundle.model, encoded, rows, targets + targets, tokenizer.bos_id)
    fitted, free = scores[: len(targets)], scores[len(targets) :]
    return {
        judged.normalize(tokenizer.decode_clean(c.tokens)): Features(a, b, len(c.tokens) + 1, c.relevance)
        for c, a, b in zip(pooled, fitted, free, strict=True)
    }


def make_sheet(args: argparse.Namespace) -> None:
    prompts = judged.read_prompts(args.prompts)
    if not 1 <= args.parts <= len(prompts):
        raise ChatbotError(f"--parts must be between 1 and the number of prompts ({len(prompts)})")
    judged.check_out(args.out, args.force)
    generator = ResponseGenerator(args.model, quantized=True)  # as `chatbot chat` serves it
    index = ReplyIndex(args.model / FILE_NAME)
    pools = {prompt: candidates_of(generator, index, prompt, args.retrieved) for prompt in prompts}
    arranged = {
        prompt: judged.arrange(prompt, {f"c{i:02d}": text for i, text in enumerate(found)}, args.shuffle_seed)
        for prompt, found in pools.items()
    }
    judged.clear_out(args.out)
    judged.write_sheets(args.out, judged.RUBRIC.read_text(encoding="utf-8"), arranged, args.parts)
    with (args.out / "features.jsonl").open("w", encoding="utf-8") as handle:
        for prompt, shown in arranged.items():
            for reply in shown:
                row = {"id": reply.id, "prompt": prompt.id, "kind": prompt.kind, "text": reply.text}
                handle.write(json.dumps(row | vars(pools[prompt][reply.text])) + "\n")
    key = {
        "ids": {reply.id: list(reply.systems) for shown in arranged.values() for reply in shown},
        "model": str(args.model),
        "decode": vars(generator.decode_config) | {"retrieved": args.retrieved},
        "command": args.command,
    }
    (args.out / "key.json").write_text(json.dumps(key, indent=2) + "\n", encoding="utf-8")
    print(f"{len(prompts)} prompts, {sum(map(len, pools.values()))} candidates on the sheet in {args.out}")


# --- the fit -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """One prompt's rated candidates, as arrays over its candidates."""

    kind: str
    rating: np.ndarray
    log_prob: np.ndarray
    context_free: np.ndarray
    pieces: np.ndarray
    relevance: np.ndarray

    def scores(self, weights: dict[str, float]) -> np.ndarray:
        """Each candidate's score under ``weights`` (candidates.py's, without the similarity term): (candidates,)."""
        penalty = np.array([length_penalty(int(n), weights["length_penalty"]) for n in self.pieces])
        score = (self.log_prob - weights["mmi_weight"] * self.context_free) / penalty
        scored: np.ndarray = score + weights["retrieval_weight"] * self.relevance
        return scored

    def pick(self, weights: dict[str, float]) -> float:
        """The rating of the candidate the scoring with ``weights`` would send."""
        return float(self.rating[int(np.argmax(self.scores(weights)))])


def read_pools(directory: Path, chosen: Sequence[Path] | None) -> list[Pool]:
    key = judged.read_json(directory / "key.json")
    files, templates = judged.ratings_files(directory, chosen)
    ratings = judged.read_ratings(files, key["ids"], templates)
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in judged.read_json_lines(directory / "features.jsonl"):
        rows.setdefault(row["prompt"], []).append(row | {"rating": ratings[row["id"]].score})
    return [
        Pool(found[0]["kind"], *(np.array([row[name] for row in found], dtype=float) for name in FEATURES))
        for found in rows.values()
    ]


FEATURES = ("rating", "log_prob", "context_free", "pieces", "relevance")


def fit(args: argparse.Namespace) -> None:
    pools = read_pools(args.dir, args.ratings)
    decode = judged.read_json(args.dir / "key.json")["decode"]
    shipped = {name: float(decode.get(name, 0.0)) for name in GRID}
    grid = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    for kind in ("all", *judged.KINDS):
        chosen = [p for p in pools if kind in ("all", p.kind)]
        if not chosen:
            continue
        picks = np.array([[p.pick(weights) for p in chosen] for weights in grid])  # (scorings, prompts)
        print(f"\n### {kind}: {len(chosen)} prompts, {sum(len(p.rating) for p in chosen)} candidates")
        print(f"ceiling (best candidate) {np.mean([p.rating.max() for p in chosen]):.2f}; ", end="")
        print(f"all candidates {np.mean(np.concatenate([p.rating for p in chosen])):.2f}; ", end="")
        print(f"the model's decoding {np.mean([p.pick(shipped) for p in chosen]):.2f} ({_show(shipped)})")
        if len(chosen) >= 2:
            print(f"the best scoring chosen on half the prompts, rated on the other half: {_held_out(picks):.2f}")
        for i in np.argsort(-picks.mean(axis=1), kind="stable")[: args.top]:
            print(f"  {picks[i].mean():.2f}  {_show(grid[i])}")


def _held_out(picks: np.ndarray) -> float:
    """What tuning is worth: the mean rating of the best scoring of the even prompts on the odd ones, and the other
    way round, averaged. The best of hundreds of scorings on the same prompts flatters itself."""
    halves = (np.arange(picks.shape[1]) % 2 == 0, np.arange(picks.shape[1]) % 2 == 1)
    rated = [picks[int(np.argmax(picks[:, tune].mean(axis=1))), test].mean() for tune, test in (halves, halves[::-1])]
    return float(np.mean(rated))


def _show(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in weights.items())


# --- the command line --------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True)
    sheet = commands.add_parser("sheet", help="retrieve every prompt's candidates and write them on a blind sheet")
    judged.add_sheet_options(sheet)
    sheet.add_argument("--model", type=Path, required=True, help="a model directory with a reply index")
    sheet.add_argument("--retrieved", type=int, default=20, help="replies retrieved per prompt")
    sheet.set_defaults(run=make_sheet)
    fitter = commands.add_parser("fit", help="join the ratings with the features and rank scorings by their picks")
    judged.add_ratings_options(fitter)
    fitter.add_argument("--top", type=int, default=12, help="how many of the best scorings to print")
    fitter.set_defaults(run=fit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return judged.run_command(parser(), "bench/candidate_pool.py", argv)


if __name__ == "__main__":
    sys.exit(main())
