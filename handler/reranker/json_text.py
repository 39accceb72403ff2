"""Answers as strict, compact JSON text that always encodes as UTF-8 (what every transport sends)."""

from __future__ import annotations

import json

from reranker.text import escape_lone_surrogates


def encode_json(value: object) -> str:
    """Strict, compact JSON text that always encodes as UTF-8: unpaired surrogates become ``\\uXXXX`` escapes.

    Non-finite floats raise ValueError (an InternalError: the request checks keep them out of every answer).
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return escape_lone_surrogates(text)


def json_size(value: object) -> int:
    """UTF-8 bytes of ``value`` as compact strict JSON."""
    return len(encode_json(value).encode("utf-8"))
