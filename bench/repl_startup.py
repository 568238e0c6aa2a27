"""Time to first prompt of `chatbot chat` in a pseudo-terminal (issue 6 goal: at most 2 s), and the time of the
first reply after it, which includes loading the model if the prompt came before it.

Each run starts the installed command fresh (a new process, an empty database and history) with TERM=dumb,
waits for the ``you> `` prompt, sends one message, waits for the next prompt and quits.

    python bench/repl_startup.py [--runs 10] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pexpect


def one_run(model: str | None) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as directory:
        environment = {
            **os.environ,
            "TERM": "dumb",
            "XDG_STATE_HOME": directory,
            "CHATBOT_DB": f"sqlite:///{Path(directory) / 'chat.sqlite3'}",
        }
        if model:
            environment["CHATBOT_MODEL"] = model
        started = time.perf_counter()
        child = pexpect.spawn(sys.executable, ["-m", "chatbot", "chat"], env=environment, encoding="utf-8", timeout=60)
        child.expect_exact("you> ")
        prompt = time.perf_counter() - started
        child.waitnoecho(timeout=10)
        asked = time.perf_counter()
        child.sendline("hello, how are you?")
        child.expect_exact("you> ")
        first_reply = time.perf_counter() - asked
        child.sendline("/quit")
        child.expect(pexpect.EOF)
        child.close()
        return prompt, first_reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--model", help="model directory (default: the shipped one)")
    args = parser.parse_args()
    one_run(args.model)  # warm-up: the page cache holds the interpreter, torch and the model afterwards
    prompts, replies = zip(*(one_run(args.model) for _ in range(args.runs)), strict=True)
    print(f"# {datetime.now():%Y-%m-%d %H:%M} · command: python {' '.join(sys.argv)}")
    print("| runs | first prompt p50 s | first prompt max s | first reply p50 s | first reply max s |")
    print("|---|---|---|---|---|")
    print(
        f"| {args.runs} | {statistics.median(prompts):.2f} | {max(prompts):.2f} | "
        f"{statistics.median(replies):.2f} | {max(replies):.2f} |"
    )


if __name__ == "__main__":
    main()
