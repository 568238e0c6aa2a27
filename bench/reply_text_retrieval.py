"""An experiment, not shipped: also retrieve training replies whose *own* words match the message.

The reply index finds replies by the message they answered (reply_index.py). On dev pools the best candidate of
a prompt often names the message's subject itself ("i'm so excited, concert tonight!" → "lucky! concerts are the
best"), so this adds the ``--extra`` replies whose text ranks best by BM25 for the message's words, with the
index's own choice of informative words. Each source's scores are divided by its own best, so a reply found
either way competes with relevance up to 1. ``--parrot`` below 1 drops an extra reply when at least that share
of its words are the message's (a reply that repeats the question back).

It patches ``ReplyIndex.search`` in this process and runs ``bench/judged.py sheet`` with the remaining arguments,
so its replies can go on a sheet as a recorded system::

    python bench/reply_text_retrieval.py --extra 10 --parrot 1.0 -- sheet --prompts bench/judged/dev_prompts_b.jsonl \\
        --out OUT --parts 1 --system variant=model=data/default-model

Rated on 2026-12-04 (BENCHMARKS.md, "Judged reply quality"): −0.07 and −0.15 against the shipped choice.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

from chatbot import reply_index
from chatbot.bm25 import Postings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import judged  # bench/ is not a package: judged.py is found beside this file


def reply_postings(index: Any) -> Postings:
    """The word index of ``index``'s reply texts, built once in an in-memory FTS5 table named as the keys' is."""
    found = getattr(index, "reply_postings", None)
    if found is None:
        database = sqlite3.connect(":memory:")
        database.execute("CREATE VIRTUAL TABLE keys USING fts5(key, content='')")
        rows = ((row, str(reply[0]).lower()) for row, reply in enumerate(index._replies))
        database.executemany("INSERT INTO keys (rowid, key) VALUES (?, ?)", rows)
        database.execute("INSERT INTO keys (keys) VALUES ('optimize')")
        found = index.reply_postings = Postings.read(database, len(index._replies))
    return found


def by_reply_text(index: Any, message: str, extra: int, parrot: float) -> list[reply_index.Retrieved]:
    """Up to ``extra`` replies whose own words rank best for ``message``, none mostly made of its words."""
    postings = reply_postings(index)
    words = list(dict.fromkeys(reply_index.WORD.findall(message.lower())))[: reply_index.MAX_QUERY_WORDS]
    known = sorted((word for word in words if postings.holders(word)), key=postings.holders)
    if not known:
        return []
    share = reply_index.INFORMATIVE_SHARE * len(index)
    informative = [word for word in known if postings.holders(word) <= share][: reply_index.MOST_INFORMATIVE]
    informative = informative or known[:1]
    found: list[reply_index.Retrieved] = []
    for row, score in postings.search(informative, informative + known, extra * 3):
        text, conversation, context_free = index._replies[row]
        theirs = set(reply_index.WORD.findall(str(text).lower()))
        if parrot < 1.0 and len(theirs & set(words)) / max(len(theirs), 1) >= parrot:
            continue
        name = str(index._conversations[int(conversation)])
        found.append(reply_index.Retrieved(str(text), name, score, float(context_free), row))
        if len(found) == extra:
            break
    return found


def patch(extra: int, parrot: float) -> None:
    """Make every ReplyIndex search return its own replies and the reply-text ones, each scored by its best."""
    original = reply_index.ReplyIndex.search

    def search(index: Any, message: str, limit: int) -> list[reply_index.Retrieved]:
        return reply_index.merge([original(index, message, limit), by_reply_text(index, message, extra, parrot)])

    reply_index.ReplyIndex.search = search  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=int, default=10, help="replies retrieved by their own text")
    parser.add_argument("--parrot", type=float, default=1.0, help="drop those with this share of the message's words")
    parser.add_argument("judged_args", nargs=argparse.REMAINDER, help="-- then bench/judged.py's arguments")
    args = parser.parse_args()
    patch(args.extra, args.parrot)
    return judged.main([arg for arg in args.judged_args if arg != "--"])


if __name__ == "__main__":
    sys.exit(main())
