"""Unpaired UTF-16 surrogates in caller text: what the tokenizer reads, and how JSON carries them back.

JSON may spell half a surrogate pair (``"\\ud83d"``), and chunkers that cut strings by UTF-16 length leave one
at a chunk's edge. Python then holds a code point that UTF-8 cannot encode: the tokenizer refuses it and
``str.encode("utf-8")`` raises. The model reads each one as U+FFFD; answers echo it as its ``\\uXXXX`` escape.
"""

from __future__ import annotations

import re

REPLACEMENT_CHARACTER = "\ufffd"
# In a Python str every surrogate code point is unpaired: json.loads joins escaped pairs into one code point.
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")  # several times quicker than a regex search over non-ASCII text
    except UnicodeEncodeError:
        return True
    return False


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each unpaired surrogate replaced by U+FFFD (same length); ``text`` itself when it has none."""
    if not has_lone_surrogate(text):
        return text
    return _SURROGATE.sub(REPLACEMENT_CHARACTER, text)


def escape_lone_surrogates(json_text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with raw surrogates written as ``\\uXXXX``.

    Surrogates only ever occur inside JSON strings, where the escape means the same code point, so the result
    is the same JSON value and always encodes as UTF-8.
    """
    if not has_lone_surrogate(json_text):
        return json_text
    return _SURROGATE.sub(_escape, json_text)


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"
