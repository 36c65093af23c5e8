r"""User text made fit to print: control characters shown as escapes, long text clipped.

Instructions, answers, ids and the values that FILE:LINE reasons quote come from user files. Printed raw, an
ANSI CSI or OSC sequence (ESC [ ... m, ESC ] ... BEL) recolours, retitles or rewrites the terminal, a bare
carriage return overwrites the line before it, bidi overrides reorder what is shown; and a 50 MB instruction
floods the terminal and the report. Everything the tool prints or reports from user data goes through
`show` (or `printable`); the data files (selected.jsonl, rejected.jsonl) keep the text as it was.

    show("a<ESC>[31mred")         -> 'a\x1b[31mred'    (the ESC byte as the 4 characters \x1b)
    show("x" * 5000, limit=10)    -> 'xxxxxxxxxx… (4990 more characters)'
"""

from __future__ import annotations

import re

DISPLAY_LIMIT = 4000  # characters of one printed or reported text (an instruction, an answer, a reason)
# C0 controls but \t and \n, DEL, C1 controls (0x9b is a one-byte CSI on some terminals), and the Unicode
# bidi embeddings/overrides/isolates that reorder displayed text.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LAYOUT = re.compile("[\t\n]")


def _escape(m: re.Match) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(text: object, layout: bool = True) -> str:
    """`text` with every control character shown as a `\\x1b`-style escape; \\n and \\t are kept when
    `layout` (multi-line blocks such as an example's answer) and escaped otherwise (one-line fields).

    >>> printable("ok\\x1b]0;title\\x07 done\\r")
    'ok\\\\x1b]0;title\\\\x07 done\\\\x0d'
    >>> printable("two\\nlines\\tand tab"), printable("one\\nline", layout=False)
    ('two\\nlines\\tand tab', 'one\\\\x0aline')
    >>> printable("abc\\u202edcba")
    'abc\\\\u202edcba'
    """
    out = _CONTROL.sub(_escape, str(text))
    return out if layout else _LAYOUT.sub(_escape, out)


def clip(text: object, limit: int = DISPLAY_LIMIT) -> str:
    """The first `limit` characters of `text`, with how many were left out.

    >>> clip("abcdef", 4), clip("abc", 4)
    ('abcd… (2 more characters)', 'abc')
    """
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def show(text: object, limit: int = DISPLAY_LIMIT, layout: bool = True) -> str:
    """`clip` then `printable`: user text as the terminal, a log or report.html shows it (the limit counts
    the text's own characters, before escapes)."""
    return printable(clip(text, limit), layout)
