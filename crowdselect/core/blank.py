"""Blank text: one rule for every reader (crowd rows, pool instructions, training turns), per value and per
Arrow array, so that the per-line and the vectorised crowd parsers agree.

Text is blank when it holds nothing a reader can see: only whitespace, separators and control or invisible
format characters (Unicode categories Z*, Cc, Cf: spaces, tabs, newlines, ZERO WIDTH SPACE U+200B, ZWNJ
U+200C, ZWJ U+200D, WORD JOINER U+2060, the byte-order mark U+FEFF, ...). `str.strip()` keeps the invisible
ones, so an answer "\\u200b" would count as an answer and could be chosen as the crowd's best. (Python's
and Arrow's Unicode tables may differ on characters still unassigned in the older one; no assigned character.)
"""

from __future__ import annotations

import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

BLANK_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})
BLANK_REGEX = r"^[\p{Z}\p{Cc}\p{Cf}]*$"  # the same set for Arrow (RE2)


def is_blank(text: str) -> bool:
    """True when `text` is empty or made only of whitespace and invisible characters (see the module).

    >>> is_blank(" \\t\\n"), is_blank("\\u200b \\ufeff\\u2060"), is_blank("\\u200ba"), is_blank("")
    (True, True, False, True)
    """
    return all(unicodedata.category(ch) in BLANK_CATEGORIES for ch in text)


def blank_mask(texts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """`is_blank` of every value of a string array, vectorised; null stays null.

    >>> blank_mask(pa.array(["\\u200b", " a ", None, "\\u2060\\n"])).to_pylist()
    [True, False, None, True]
    """
    return pc.match_substring_regex(texts, BLANK_REGEX)
