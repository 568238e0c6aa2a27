"""Experiment (taken out again after judged sheet K): a reranker learned from rated candidate pools.

A ridge regression on 15 features of each candidate (the shipped score and its parts, length, punctuation,
farewells, greetings, laughter, word overlap with the message) and its hashed words and word pairs (4,096), fitted to
each candidate's rating less its prompt's mean, on the two rated dev pools (bench/judged/pool-2026-12-03, 42
prompts, and pool-2026-12-03b, 153). ``cv`` cross-validates it by prompt; ``sheet`` writes a judged sheet of the
judged prompts with the shipped decoding and the same candidates reranked (the judged prompts' pools are never
rated: only their features are computed).

    python bench/reranker_experiment.py cv
    python bench/reranker_experiment.py sheet --out DIR --prev PREV_MODEL_DIR
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, diags, hstack
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import Ridge

sys.path.insert(0, str(Path(__file__).resolve().parent))
import candidate_pool
import judged

from chatbot.generation import ResponseGenerator
from chatbot.reply_index import FILE_NAME, ReplyIndex
from chatbot.search.beam import length_penalty

WORD = re.compile(r"\w+")
FAREWELL = re.compile(r"\b(bye|gtg|gotta go|got to go|have to go|nice talking|good talking|talk later|ttyl)\b")
POOLS = {"pool-2026-12-03": "dev_prompts.jsonl", "pool-2026-12-03b": "dev_prompts_b.jsonl"}
HERE = Path(__file__).resolve().parent / "judged"
DENSE = 15
HASHED = HashingVectorizer(n_features=2**12, ngram_range=(1, 2), alternate_sign=False, norm="l2")


def load_pool(name: str) -> list[list[dict[str, Any]]]:
    """One rated pool: per prompt, its candidates' features with their rating and the prompt's last turn."""
    prompts = {p.id: p for p in judged.read_prompts(HERE / POOLS[name])}
    key = judged.read_json(HERE / name / "key.json")
    files, templates = judged.ratings_files(HERE / name, None)
    ratings = judged.read_ratings(files, key["ids"], templates)
    pools: dict[str, list[dict[str, Any]]] = {}
    for row in judged.read_json_lines(HERE / name / "features.jsonl"):
        extra = {"rating": ratings[row["id"]].score, "message": prompts[row["prompt"]].turns[-1]}
        pools.setdefault(row["prompt"], []).append(row | extra)
    return list(pools.values())


def shipped_score(row: dict[str, Any]) -> float:
    penalty = length_penalty(int(row["pieces"]), 1.0)
    return float((row["log_prob"] - 0.7 * row["context_free"]) / penalty + 3 * row["relevance"])


def dense(row: dict[str, Any]) -> list[float]:
    text, pieces = row["text"], row["pieces"]
    words = WORD.findall(text)
    overlap = len(set(WORD.findall(row["message"].lower())) & set(words)) / (len(set(words)) + 1)
    return [
        shipped_score(row), row["log_prob"] / pieces, row["context_free"] / pieces,
        (row["log_prob"] - row["context_free"]) / pieces, float(np.log(pieces)), row["relevance"], len(words),
        text.count("?"), text.count("!"), text.count("."), bool(FAREWELL.search(text)),
        bool(re.match(r"(hi|hey|hello|yo)\b", text)), bool(re.search(r"(ha){2,}|lol|xd", text)), overlap,
        "prompt" in text,
    ]  # fmt: skip


def features(pools: list[list[dict[str, Any]]]) -> Any:
    rows = [row for pool in pools for row in pool]
    return hstack([csr_matrix(np.array([dense(r) for r in rows], float)), HASHED.transform([r["text"] for r in rows])])


class Reranker:
    """The ridge model, its dense features scaled by their spread in the training pools."""

    def __init__(self, pools: list[list[dict[str, Any]]], alpha: float = 1.0) -> None:
        matrix = features(pools).tocsr()
        spread = matrix[:, :DENSE].toarray().std(axis=0) + 1e-9
        self.scale = diags(np.concatenate([1 / spread, np.ones(matrix.shape[1] - DENSE)]))
        target = np.concatenate([[r["rating"] - np.mean([q["rating"] for q in p]) for r in p] for p in pools])
        self.model = Ridge(alpha=alpha).fit(matrix @ self.scale, target)

    def pick(self, pool: list[dict[str, Any]]) -> dict[str, Any]:
        return pool[int(np.argmax(self.model.predict(features([pool]) @ self.scale)))]


def cross_validate(args: argparse.Namespace) -> None:
    pools = [pool for name in POOLS for pool in load_pool(name)]
    shipped = np.mean([max(pool, key=shipped_score)["rating"] for pool in pools])
    for alpha in (0.3, 1.0, 3.0, 10.0):
        gains = []
        for repeat in range(4):
            order = np.random.default_rng(repeat).permutation(len(pools))
            picked = np.zeros(len(pools))
            for fold in range(5):
                test = [int(i) for j, i in enumerate(order) if j % 5 == fold]
                model = Reranker([pools[int(i)] for j, i in enumerate(order) if j % 5 != fold], alpha)
                picked[test] = [model.pick(pools[i])["rating"] for i in test]
            gains.append(picked.mean() - shipped)
        print(
            f"alpha {alpha}: {np.mean(gains):+.3f} over the shipped choice ({shipped:.2f});",
            f"repeats {np.round(gains, 3)}",
        )


class RerankedSystem:
    """The shipped decoding's reply, or the reranker's pick among the same retrieved candidates when the reply is
    one of them (not the persona's answer, not the model's own)."""

    def __init__(self, shipped: Any, model: Reranker, model_dir: Path, prompts: list[judged.Prompt]) -> None:
        self.shipped, self.model, self.prompts = shipped, model, prompts
        self.generator = ResponseGenerator(model_dir, quantized=True)
        self.index = ReplyIndex(model_dir / FILE_NAME)

    def replies(self, histories: Any) -> list[str | None]:
        out = []
        for prompt, reply in zip(self.prompts, self.shipped.replies(histories), strict=True):
            found = candidate_pool.candidates_of(self.generator, self.index, prompt, 20)
            if judged.normalize(reply) not in found:
                out.append(reply)
                continue
            pool = [{"text": t, "message": prompt.turns[-1], **vars(f)} for t, f in found.items()]
            out.append(self.model.pick(pool)["text"])
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "reranker": "bench/reranker_experiment.py, alpha 1, both rated dev pools",
            "base": self.shipped.describe(),
        }


def make_sheet(args: argparse.Namespace) -> None:
    args.prompts, args.parts, args.shuffle_seed = HERE / "prompts.jsonl", 3, 12
    prompts = judged.read_prompts(args.prompts)
    args.system = [f"previous=model={args.prev}", "tfidf=baseline=tfidf", "shipped=model=data/default-model"]
    systems, specs = judged.build_systems(args.system)
    model = Reranker([pool for name in POOLS for pool in load_pool(name)])
    systems["reranked"] = RerankedSystem(systems["shipped"], model, Path("data/default-model"), prompts)
    specs["reranked"] = {"reranker": "bench/reranker_experiment.py"}
    replies = {name: judged.run_system(name, system, prompts) for name, system in systems.items()}
    arranged = {
        p: judged.arrange(p, {n: t[i] for n, t in replies.items()}, args.shuffle_seed) for i, p in enumerate(prompts)
    }
    judged.check_out(args.out, False)
    judged.clear_out(args.out)
    judged.write_replies(args.out / "replies.jsonl", replies, arranged)
    judged.write_sheets(args.out, judged.RUBRIC.read_text(encoding="utf-8"), arranged, args.parts)
    key = judged.make_key(args, specs, systems, arranged)
    (args.out / "key.json").write_text(json.dumps(key, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True)
    commands.add_parser("cv").set_defaults(run=cross_validate)
    sheet = commands.add_parser("sheet")
    sheet.add_argument("--out", type=Path, required=True)
    sheet.add_argument("--prev", type=Path, required=True)
    sheet.set_defaults(run=make_sheet)
    args = parser.parse_args()
    args.command = ["bench/reranker_experiment.py", *sys.argv[1:]]
    args.run(args)


if __name__ == "__main__":
    main()
