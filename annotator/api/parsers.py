"""The API's JSON parser: DRF's, with a bound on nesting, so a hostile body gets a clear 400, never a 500.

Python's json module recurses once per nesting level; a body of a few thousand brackets raises a
RecursionError deep in the parser (and would again in any code that walks the result). Bodies nested
deeper than MAX_DEPTH are refused: no request this API takes needs more than a handful of levels.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

__all__ = ["MAX_DEPTH", "BoundedJSONParser", "nesting_depth"]

MAX_DEPTH = 32


def nesting_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep") from None
        if nesting_depth(data) > MAX_DEPTH:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep")
        return data
