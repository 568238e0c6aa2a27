"""Normalisation applied to every turn as it is read: Unicode NFKC, control characters out, whitespace collapsed.

NFKC folds look-alike forms (full-width letters, ligatures, non-breaking spaces) into one spelling, so the tokenizer
does not spend vocabulary on them; control characters (from copy-paste or broken exports) carry no meaning.
"""

from __future__ import annotations

import unicodedata


def normalize_text(text: str) -> str:
    """The cleaned form of ``text``; an empty result means the turn had nothing to say."""
    folded = unicodedata.normalize("NFKC", text)
    visible = "".join(" " if unicodedata.category(char) == "Cc" else char for char in folded)
    return " ".join(visible.split())
