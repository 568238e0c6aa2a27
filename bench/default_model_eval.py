"""Record what `chatbot eval` says of a model directory in its evaluation.json: the whole test split of the chitchat
corpus with fp32 and with int8 weights (the figures of the model card; the bot runs int8), and a small slice that
tests/test_default_model.py measures again to check that the recorded figures still hold.

Each entry keeps the exact `chatbot eval` arguments beside the JSON it printed (less the model's path), decoded as
the model's own decoding default says, with eval's default seed for sampled replies.

    python bench/default_model_eval.py [--model data/default-model]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RUNS = {
    "test": ["chitchat", "--split", "test", "--replies", "1000"],
    "test_int8": ["chitchat", "--split", "test", "--replies", "1000", "--quantize"],
    "slice": ["chitchat", "--split", "test", "--limit", "1000", "--replies", "100"],
}


def evaluate(model: Path, arguments: list[str]) -> dict[str, object]:
    """The JSON `chatbot eval` prints for ``model`` with ``arguments``, less the model's path."""
    command = [sys.executable, "-m", "chatbot", "eval", "--model", str(model), *arguments]
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(printed)
    result.pop("model")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("data/default-model"))
    args = parser.parse_args()
    recorded = {
        name: {"arguments": arguments, "result": evaluate(args.model, arguments)} for name, arguments in RUNS.items()
    }
    (args.model / "evaluation.json").write_text(json.dumps(recorded, indent=2) + "\n")
    for name, entry in recorded.items():
        result = entry["result"]
        assert isinstance(result, dict)
        replies = result.get("replies", {})
        print(f"{name}: word perplexity {result['word_perplexity']:.1f}, replies {json.dumps(replies)}")


if __name__ == "__main__":
    main()
