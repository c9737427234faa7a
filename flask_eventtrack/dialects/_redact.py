"""Copies of refused bodies for the rejected log, with their user ids hashed.

A refused body has no trusted shape: ids may sit at any depth, in any
container, even in keys. Each dialect says what is secret where; the walk here
is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MAX_DEPTH", "TOO_DEEP", "redacted"]

#: Containers nested deeper are replaced by :data:`TOO_DEEP` in the copy, so no
#: document can exhaust the stack here or in ``json.dumps`` after.
MAX_DEPTH = 64
TOO_DEEP = "<nested too deeply>"

S = TypeVar("S")


def redacted(
    document: Any,
    top: S,
    *,
    child: Callable[[S, Any], tuple[S, Any]],
    leaf: Callable[[S, Any], Any],
) -> Any:
    """A copy of ``document`` (parsed JSON) for the rejected log.

    ``top`` is what the dialect knows at the top of the document (its "state");
    ``child(state, key)`` gives the state under ``key`` of an object found in
    ``state``, and the key to write in the copy; a list's items keep the list's
    state; ``leaf(state, scalar)`` is what a scalar becomes. Iterative; key order
    is kept.
    """
    root: list[Any] = [None]
    # (value, its state, the container its copy goes into, the slot there, depth)
    stack: list[tuple[Any, S, Any, Any, int]] = [(document, top, root, 0, 0)]
    while stack:
        value, state, target, slot, depth = stack.pop()
        if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
            target[slot] = TOO_DEEP
        elif isinstance(value, dict):
            copy: dict[Any, Any] = {}
            target[slot] = copy
            for key, item in value.items():
                item_state, out_key = child(state, key)
                copy[out_key] = None  # keeps the key order while items are filled in
                stack.append((item, item_state, copy, out_key, depth + 1))
        elif isinstance(value, list):
            items: list[Any] = [None] * len(value)
            target[slot] = items
            stack.extend((item, state, items, index, depth + 1) for index, item in enumerate(value))
        else:
            target[slot] = leaf(state, value)
    return root[0]
