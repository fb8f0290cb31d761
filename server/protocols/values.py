"""Checks of request values that every protocol parser shares. No I/O.

Each protocol names its fields its own way (OpenAI `'input[0]'`, TEI `` `inputs[0]` ``, KServe `input 'TEXT':
element 0`), so the checks take the name and the protocol keeps its words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import invalid


def is_int(value: Any) -> bool:
    """A JSON integer (a bool is not one, although Python says so)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_count(value: Any) -> bool:
    """A non-negative JSON integer."""
    return is_int(value) and value >= 0


def check_text_lengths(texts: list[str], max_input_chars: int, name: Callable[[int], str],
                       param: str | None = None) -> None:
    """Refuse the first text longer than --max-input-chars, before anything tokenizes it; `name(index)` says
    which text in the protocol's words. (Empty and NUL-holding texts are refused in server/embedding.py.)"""
    for index, text in enumerate(texts):
        if len(text) > max_input_chars:
            raise invalid(f"{name(index)} has {len(text)} characters; at most {max_input_chars} are allowed "
                          "per input", param)
