"""Print a model's replies to a fixed list of prompts (chosen before looking at any output), one fresh conversation
each, decoded as `chatbot chat` does by default (the model's decode settings, int8 weights, and its persona for
questions about the bot), as a Markdown table for the model card. Sampled replies draw from torch's generator
seeded with ``--seed``, so the table reproduces.

    python bench/sample_replies.py [--model data/default-model]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from chatbot.dialogue.generator import Generator
from chatbot.dialogue.persona import PersonaGenerator, persona_for
from chatbot.dialogue.types import Role, Turn
from chatbot.generation import ResponseGenerator

PROMPTS = (
    "hello",
    "how are you?",
    "what do you do for fun?",
    "do you have any pets?",
    "where are you from?",
    "what's your favorite food?",
    "i just got back from a run",
    "do you like music?",
    "what are you studying?",
    "have a good night",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("data/default-model"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = ResponseGenerator(args.model, quantized=True)  # as `chatbot chat` runs it by default
    persona = persona_for(args.model, None)
    generator: Generator = model if persona is None else PersonaGenerator(model, persona)
    print("| you say | the bot replies |\n|---|---|")
    for prompt in PROMPTS:
        print(f"| {prompt} | {generator.reply([Turn(Role.USER, prompt)], model.default_settings).text} |")


if __name__ == "__main__":
    main()
