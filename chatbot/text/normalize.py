"""Normalisation applied to every turn as it is read: Unicode NFKC, control characters out, whitespace collapsed;
and ``valid_unicode``, which every text from outside (a log, a terminal, a Telegram update) passes first.

NFKC folds look-alike forms (full-width letters, ligatures, non-breaking spaces) into one spelling, so the tokenizer
does not spend vocabulary on them; control characters (from copy-paste or broken exports) carry no meaning.
"""

from __future__ import annotations

import re
import unicodedata

_SURROGATE = re.compile("[\ud800-\udfff]")


def normalize_text(text: str) -> str:
    """The cleaned form of ``text``; an empty result means the turn had nothing to say."""
    folded = unicodedata.normalize("NFKC", text)
    visible = "".join(" " if unicodedata.category(char) == "Cc" else char for char in folded)
    return " ".join(visible.split())


def valid_unicode(text: str) -> str:
    """``text`` with halves of UTF-16 pairs joined and lone halves made U+FFFD, as a UTF-16 decoder would.

    JSON and YAML escapes can spell such halves (``"\\ud83d"``, an emoji cut in two by the tool that wrote the log);
    a string holding one cannot be written as UTF-8, so training would fail long after reading succeeded.
    """
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
