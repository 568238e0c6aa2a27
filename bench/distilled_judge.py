"""An experiment, not shipped: the rating-trained cross-encoder (cross_encoder_judge.py) distilled into a head
small enough for the reply path, which reads only what that path computes anyway.

The cross-encoder gained +0.13 on a judged sheet but costs ~100 ms a reply against a 15 ms budget. A reply's
candidates are already scored by the seq2seq model in one teacher-forced pass (candidates.scored), and their sentence
vectors already read (the index's 32 axes). So the head reads, per candidate:

- ``states``: the decoder's layer before its output projection, pooled over the reply: the RNN output after bos (the
  context alone), at the reply's end and on average, the attention context on average and at the end, and the
  combined layer (pre-tanh) on average and at the end: 7 x 256 numbers (captured by a hook on
  ``decoder.combine``);
- ``semantic``: the message's and the candidate's vectors on the index's 32 axes and their product (96);
- always the shipped score's parts: the score, log confidence, relevance, similarity, pieces / 10, generated or not.

It is trained on many pools (every dev prompt and thousands of chitchat valid/test contexts, 1-3 turns) to give the
cross-encoder's choice: a listwise loss on softmax(shipped + w * head) against softmax(shipped + w * teacher) within
each pool (temperature 0.5), plus the centred squared error of the two. Measured by how often the pick with the head
is the pick with the teacher, on held-out pools.

    python bench/distilled_judge.py extract --out POOLS.pt [--chitchat 3000] [--more]
    python bench/distilled_judge.py label --pools POOLS.pt --state CE.pt --out LABELS.pt
    python bench/distilled_judge.py fit --data POOLS.pt LABELS.pt [--data ...] --held devc- [--inputs states semantic]
    python bench/distilled_judge.py sheet --head HEAD.pt --weight 3 -- sheet --prompts ... (bench/judged.py's)

CE.pt: `python bench/cross_encoder_judge.py data --until 2026-12-06n --out R`, then `train --rated R --out CE.pt`.
Measured on 2026-12-06 (BENCHMARKS.md, "Judged reply quality").
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from chatbot import generation
from chatbot.candidates import GENERATED, Candidate, Choice, scored
from chatbot.corpora.chitchat import read_chitchat
from chatbot.text.pairs import split_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cross_encoder_judge as teacher  # bench/ is not a package: found beside this file
import judged

SEMANTIC = 96  # message, candidate and their product on the index's 32 axes
PARTS = 6  # the shipped score's parts
INPUTS = ("states", "semantic")
TEMPERATURE = 0.5


def pooled_states(joined: torch.Tensor, combined: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """joined (n, steps, 2 * hidden) = the decoder's [RNN outputs, attention contexts] and combined (n, steps,
    hidden) its layer before the output projection, pre-tanh, teacher-forced over n candidates of ``lengths``
    pieces (step 0 reads bos, step ``length`` predicts eos) -> (n, 7 * hidden), the blocks the docstring lists."""
    n, steps, width = joined.shape
    outputs, contexts = joined[..., : width // 2], joined[..., width // 2 :]
    last = torch.tensor(list(lengths))
    mask = (torch.arange(steps)[None, :] <= last[:, None]).to(joined.dtype)[..., None]  # (n, steps, 1)
    count = mask.sum(1)
    rows = torch.arange(n)
    blocks = [outputs[:, 0], outputs[rows, last], (outputs * mask).sum(1) / count, (contexts * mask).sum(1) / count]
    blocks += [contexts[rows, last], (combined * mask).sum(1) / count, combined[rows, last]]
    return torch.cat(blocks, dim=-1)


def by_candidate(kept: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """kept (positions, features): the decoder's rows at the real positions of a teacher-forced batch (row after
    row, each candidate's ``length`` + 1 of them, eos included, then any other targets') -> (n, steps, features)
    for the n candidates, zero after each one's end."""
    sizes = [length + 1 for length in lengths]
    rows = kept[: sum(sizes)].split(sizes)
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)


def score_parts(candidates: Sequence[Candidate], choices: Sequence[Choice]) -> torch.Tensor:
    """(n, PARTS): each candidate's shipped score, log confidence, relevance, similarity, pieces / 10, generated."""
    rows = []
    for c, ch in zip(candidates, choices, strict=True):
        confidence = float(np.log(max(ch.confidence, 1e-9)))
        rows.append([ch.score, confidence, c.relevance, c.similarity, len(c.tokens) / 10, float(c.source == GENERATED)])
    return torch.tensor(rows)


def head_input(features: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """What a Head reads of n candidates: their features (n, states + SEMANTIC), any dtype, then parts (n, PARTS)."""
    return torch.cat([features.float(), parts], -1)


class Head(nn.Module):
    """Standardised inputs (``mean``, ``std`` over the training candidates), the chosen blocks of them, and an MLP
    (``hidden`` 0: linear) to one number per candidate: its predicted rating, up to a constant per pool."""

    def __init__(self, inputs: Sequence[str], hidden: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.inputs = tuple(inputs)
        self.hidden = hidden
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        states = len(mean) - SEMANTIC - PARTS
        keep = list(range(states)) if "states" in inputs else []
        keep += list(range(states, states + SEMANTIC)) if "semantic" in inputs else []
        self.register_buffer("keep", torch.tensor([*keep, *range(states + SEMANTIC, len(mean))]))
        width = len(self.keep)
        if hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(width, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, 1)
            )
        else:
            self.net = nn.Linear(width, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (..., candidates, inputs) -> (..., candidates)."""
        return self.net(((features.float() - self.mean) / self.std)[..., self.keep]).squeeze(-1)

    def saved(self) -> dict[str, Any]:
        """What ``load`` reads back: the inputs chosen, the hidden size and the weights with the standardisation."""
        return {"inputs": self.inputs, "hidden": self.hidden, "state": self.state_dict()}

    @classmethod
    def load(cls, path: Path) -> Head:
        """The head ``fit --save`` wrote to ``path``, ready to score."""
        saved = torch.load(path)
        head = cls(saved["inputs"], saved["hidden"], saved["state"]["mean"], saved["state"]["std"])
        head.load_state_dict(saved["state"])
        return head.eval()


class Recorder:
    """Puts itself in generation.scored's place: keeps every pool the shipped decoding scores (its context's
    turns, the candidates' texts and features: pooled states, semantic, parts), and with a ``head`` adds
    ``weight`` times its output to each candidate's score before the choice."""

    def __init__(self, head: Head | None = None, weight: float = 0.0) -> None:
        self.pools: list[dict[str, Any]] = []
        self.head, self.weight = head, weight
        self.generator: Any = None
        self.messages: list[str] = []
        choices_for = generation.ResponseGenerator.choices_for

        def remember(generator: Any, rows: Any, messages: Sequence[str], *rest: Any, **kwargs: Any) -> Any:
            self.generator, self.messages = generator, list(messages)
            return choices_for(generator, rows, messages, *rest, **kwargs)

        generation.ResponseGenerator.choices_for = remember  # type: ignore[method-assign]
        generation.scored = self.scored

    def scored(self, model: Any, sources: Sequence[Sequence[int]], pools: Any, *rest: Any) -> list[list[Choice]]:
        """candidates.scored's choices, the decoder's states of its pass captured and kept with each pool (and,
        with a head, its output weighed into every score)."""
        captured: list[tuple[torch.Tensor, torch.Tensor]] = []
        hook = model.decoder.combine.register_forward_hook(
            lambda _module, inputs, output: captured.append((inputs[0].float(), output.float()))
        )
        try:
            found = scored(model, sources, pools, *rest)
        finally:
            hook.remove()
        flat = [c for each in pools for c in each]
        if not flat:
            return found
        (joined, combined), *_ = captured  # each target's real positions, the candidates' first, then MMI's prefixes
        lengths = [len(c.tokens) for c in flat]
        joined, combined = by_candidate(joined, lengths), by_candidate(combined, lengths)
        features = torch.cat([pooled_states(joined, combined, lengths), self.semantic(pools)], 1)
        start, chosen = 0, []
        for row, (candidates, choices) in enumerate(zip(pools, found, strict=True)):
            mine, parts = features[start : start + len(candidates)], score_parts(candidates, choices)
            start += len(candidates)
            self.keep(sources[row], choices, mine, parts)
            if self.head is not None and candidates:
                with torch.no_grad():
                    bonus = self.head(head_input(mine, parts)).tolist()
                choices = [
                    dataclasses.replace(c, score=c.score + self.weight * b) for c, b in zip(choices, bonus, strict=True)
                ]
            chosen.append(choices)
        return chosen

    def semantic(self, pools: Sequence[Sequence[Candidate]]) -> torch.Tensor:
        """(candidates, SEMANTIC): each pool's message vector, each candidate's, and their product."""
        tokenizer = self.generator.load().tokenizer
        vectors = self.generator._reply_vectors()
        messages = vectors.pieces.encode([tokenizer.encode(message) for message in self.messages])
        message = torch.from_numpy(np.stack([messages[row] for row, each in enumerate(pools) for _ in each]))
        reply = torch.from_numpy(
            np.stack(
                [
                    vectors.replies[c.row] if c.row >= 0 else vectors.pieces.encode([c.tokens])[0]
                    for each in pools
                    for c in each
                ]
            )
        )
        return torch.cat([message, reply, message * reply], 1).float()

    def keep(
        self, source: Sequence[int], choices: Sequence[Choice], features: torch.Tensor, parts: torch.Tensor
    ) -> None:
        """One pool as extract saves it: the context's turns as the model read them, the candidates' texts, their
        features (fp16) and the parts."""
        tokenizer = self.generator.load().tokenizer
        turns = teacher.source_turns(tokenizer, source)
        texts = [tokenizer.decode_clean(c.tokens) for c in choices]
        self.pools.append({"turns": turns, "texts": texts, "features": features.half(), "parts": parts})


def chitchat_prompts(split: str, seed: int) -> list[dict[str, Any]]:
    """Every turn of the chitchat ``split`` after a conversation's first as a prompt: the 1-3 turns before it (1
    twice as often as 2 or 3, as the judged prompts' first messages outnumber follow-ups), shuffled by ``seed``."""
    draw, found = random.Random(seed), []
    for conversation in read_chitchat():
        if split_of(conversation.id) == split:
            turns = [turn.text for turn in conversation.turns]
            for end in range(1, len(turns)):
                size = draw.choice((1, 1, 2, 3))
                found.append({"id": f"{split}-{len(found)}", "turns": turns[max(0, end - size) : end]})
    draw.shuffle(found)
    return found


def extract(out: Path, chitchat: int, more: bool) -> None:
    """The pools of the dev prompts and ``chitchat`` valid contexts (``more``: the other valid contexts and every
    test context instead), as the shipped decoding (data/default-model, int8) scores them, saved to ``out``."""
    if more:
        prompts = chitchat_prompts("valid", 0)[chitchat:] + chitchat_prompts("test", 1)
    else:
        prompts = [p for name in teacher.DEV_PROMPTS for p in judged.read_json_lines(teacher.JUDGED / name)]
        prompts += chitchat_prompts("valid", 0)[:chitchat]
    recorder = Recorder()
    system = judged.model_system("shipped", {"model": "data/default-model"})
    start = time.time()
    system.replies([judged.Prompt("", p["id"], "", tuple(p["turns"])).history() for p in prompts])
    for prompt, found in zip(prompts, recorder.pools, strict=True):
        found["id"] = prompt["id"]
    torch.save(recorder.pools, out)
    print(
        f"{len(prompts)} pools, {sum(len(p['texts']) for p in recorder.pools)} candidates, {time.time() - start:.0f} s"
    )


def label(pools_path: Path, state: Path, out: Path) -> None:
    """The cross-encoder's predicted rating of every candidate of the pools, in order, saved to ``out``."""
    pools = torch.load(pools_path)
    model = teacher.CrossEncoder(teacher.encoder_path())
    model.load_state_dict(torch.load(state))
    rows = [{"turns": p["turns"], "text": text} for p in pools for text in p["texts"]]
    found: list[float] = []
    for start in range(0, len(rows), 4096):
        found += model.predict(rows[start : start + 4096])
        print(f"{len(found)} of {len(rows)}", flush=True)
    torch.save(torch.tensor(found), out)


def read_data(pairs: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """The pools of each (POOLS.pt, LABELS.pt) pair, each with its candidates' ``labels``."""
    found = []
    for pools_path, labels_path in pairs:
        pools, labels = torch.load(pools_path), torch.load(labels_path)
        assert len(labels) == sum(len(p["texts"]) for p in pools), f"{labels_path} is not {pools_path}'s"
        start = 0
        for each in pools:
            each["labels"] = labels[start : start + len(each["texts"])]
            start += len(each["texts"])
        found += pools
    return found


def padded(pools: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pools, most candidates, inputs) features with the parts, (pools, most) teacher labels, and the mask of real
    candidates."""
    width = max(len(p["texts"]) for p in pools)
    features = torch.zeros(len(pools), width, pools[0]["features"].shape[1] + PARTS)
    labels = torch.zeros(len(pools), width)
    mask = torch.zeros(len(pools), width, dtype=torch.bool)
    for i, each in enumerate(pools):
        n = len(each["texts"])
        features[i, :n] = head_input(each["features"], each["parts"])
        labels[i, :n], mask[i, :n] = each["labels"], True
    return features, labels, mask


def pool_loss(predicted: torch.Tensor, wanted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Within each pool (row): cross-entropy of softmax(predicted / T) against softmax(wanted / T), plus the mean
    squared error of both centred on the pool's mean. (pools, candidates) each."""
    real = mask.float()
    count = real.sum(1, keepdim=True).clamp(min=1)
    centred = (predicted - (predicted * real).sum(1, keepdim=True) / count) - (
        wanted - (wanted * real).sum(1, keepdim=True) / count
    )
    squared = (centred**2 * real).sum() / real.sum()
    lowest = torch.finfo(predicted.dtype).min
    log_p = torch.log_softmax(predicted.masked_fill(~mask, lowest) / TEMPERATURE, 1).masked_fill(~mask, 0)
    target = torch.softmax(wanted.masked_fill(~mask, lowest) / TEMPERATURE, 1)
    return squared - (target * log_p).sum(1).mean()


def train_head(pools: Sequence[dict[str, Any]], inputs: Sequence[str], hidden: int, epochs: int, weight: float) -> Head:
    """A head fitted to choose, with ``weight`` times its output added to the shipped score, what the teacher's
    labels choose (AdamW 1e-3, weight decay 0.01, batches of 64 pools, seeded)."""
    torch.manual_seed(0)
    features, labels, mask = padded(pools)
    flat = features[mask]
    head = Head(inputs, hidden, flat.mean(0), flat.std(0).clamp(min=1e-3))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
    shipped = features[..., -PARTS]
    for _ in range(epochs):
        head.train()
        for batch in torch.randperm(len(pools)).split(64):
            predicted = shipped[batch] + weight * head(features[batch])
            loss = pool_loss(predicted, shipped[batch] + weight * labels[batch], mask[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head.eval()


def agreement(pools: Sequence[dict[str, Any]], head: Head, weight: float, rated: dict[Any, float]) -> dict[str, Any]:
    """How the pick with the head (shipped + weight * head) compares with the teacher's and the shipped one: the
    share of pools where it is the teacher's pick, of the teacher's changes it makes, of pools where it changes
    the shipped pick to something else, and (where all three picks were rated on a dev sheet) their mean ratings."""
    counts = dict.fromkeys(("same", "teacher_changed", "recovered", "other_change"), 0)
    ratings: dict[str, list[float]] = {"head": [], "teacher": [], "shipped": []}
    for each in pools:
        shipped = each["parts"][:, 0]
        with torch.no_grad():
            bonus = head(head_input(each["features"], each["parts"]))
        picks = [int(torch.argmax(shipped + weight * b)) for b in (bonus, each["labels"], torch.zeros_like(shipped))]
        mine, theirs, before = picks
        counts["same"] += mine == theirs
        counts["teacher_changed"] += theirs != before
        counts["recovered"] += theirs != before and mine == theirs
        counts["other_change"] += mine not in (theirs, before)
        keys = [(each["id"], each["texts"][pick].lower()) for pick in picks]
        if all(key in rated for key in keys):
            for name, key in zip(ratings, keys, strict=True):
                ratings[name].append(rated[key])
    found: dict[str, Any] = {"pools": len(pools)} | {k: round(v / len(pools), 3) for k, v in counts.items()}
    found["rated"] = len(ratings["head"])
    return found | {name: round(float(np.mean(v)), 3) for name, v in ratings.items() if v}


def fit(args: argparse.Namespace) -> None:
    """Train a head per hidden size on every pool but those held (ids starting ``--held``) and ``--valid`` more,
    and print its agreement with the teacher on those, beside the shipped decoding's."""
    pools = read_data(args.data)
    rated = {(r["prompt"], r["text"].lower()): r["rating"] for r in teacher.rated_dev_candidates()}
    held = [p for p in pools if args.held and p["id"].startswith(args.held)]
    rest = [p for p in pools if not (args.held and p["id"].startswith(args.held))]
    random.Random(0).shuffle(rest)
    sets = {"valid": rest[: args.valid], "held": held, "train (300)": rest[args.valid : args.valid + 300]}
    print(f"{len(rest) - args.valid} training pools; inputs {' '.join(args.inputs)}")
    for hidden in args.hidden:
        head = train_head(rest[args.valid :], args.inputs, hidden, args.epochs, args.weight)
        for name, chosen in sets.items():
            if chosen:
                print(f"hidden {hidden}, {name}: {agreement(chosen, head, args.weight, rated)}", flush=True)
        if args.save:
            torch.save(head.saved(), args.save)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pools = commands.add_parser("extract", help="record the shipped decoding's pools with their features")
    pools.add_argument("--out", type=Path, required=True)
    pools.add_argument("--chitchat", type=int, default=3000, help="how many chitchat valid contexts")
    pools.add_argument("--more", action="store_true", help="the other valid contexts and all test ones instead")
    labels = commands.add_parser("label", help="the cross-encoder's rating of every pooled candidate")
    labels.add_argument("--pools", type=Path, required=True)
    labels.add_argument("--state", type=Path, required=True, help="cross_encoder_judge.py train's weights")
    labels.add_argument("--out", type=Path, required=True)
    head = commands.add_parser("fit", help="train the head and measure its agreement with the teacher")
    head.add_argument("--data", nargs=2, action="append", required=True, metavar=("POOLS", "LABELS"))
    head.add_argument("--held", default="", help="hold out the pools whose id starts with this")
    head.add_argument("--valid", type=int, default=300, help="hold out this many other pools, drawn at random")
    head.add_argument("--inputs", nargs="*", choices=INPUTS, default=list(INPUTS))
    head.add_argument("--hidden", type=int, nargs="+", default=[128])
    head.add_argument("--epochs", type=int, default=20)
    head.add_argument("--weight", type=float, default=3.0, help="the teacher's weight in the choice it is taught")
    head.add_argument("--save", type=Path, help="where the (last) head goes")
    sheet = commands.add_parser("sheet", help="run bench/judged.py with the head in every choice")
    sheet.add_argument("--head", type=Path, required=True)
    sheet.add_argument("--weight", type=float, default=3.0)
    sheet.add_argument("judged_args", nargs=argparse.REMAINDER, help="-- then bench/judged.py's arguments")
    return parser.parse_args()


def main() -> int:
    args = arguments()
    torch.set_num_threads(2)
    if args.command == "extract":
        extract(args.out, args.chitchat, args.more)
    elif args.command == "label":
        label(args.pools, args.state, args.out)
    elif args.command == "fit":
        fit(args)
    else:
        Recorder(Head.load(args.head), args.weight)
        return judged.main([arg for arg in args.judged_args if arg != "--"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
