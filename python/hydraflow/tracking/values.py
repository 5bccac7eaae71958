"""The app's return value, kept on its run so that a replay returns it exactly.

Hydra's sweepers read what the task function returns (Optuna: a float, or a
list or tuple of floats for several objectives). The value is recorded as
JSON in the tag `hydraflow.value`: Python writes a float as its `repr`, which
reads back to the same float, NaN and infinities included. A sequence is a
JSON array and reads back as a tuple.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from hydraflow.mlflow_schema import MAX_TAG_LENGTH

log = logging.getLogger("hydraflow")


def encode(value: Any) -> str | None:
    """The value as JSON text; None when it has no exact JSON form or does
    not fit in a tag (a replay then returns None, said in a warning now)."""
    text = None
    if not surely_too_long(value):
        with contextlib.suppress(TypeError, ValueError):
            text = json.dumps(value, default=plain, separators=(",", ":"))
    if text is None or len(text) > MAX_TAG_LENGTH:
        log.warning(
            "the return value (%s) is not recorded: it has no exact JSON form of at most "
            "%d characters; a replay of this run returns None",
            type(value).__name__,
            MAX_TAG_LENGTH,
        )
        return None
    return text


def surely_too_long(value: Any) -> bool:
    """Whether the value's JSON cannot fit in a tag, told from its length
    alone (a JSON array of n items takes at least 2n + 1 characters), which
    spares writing out a large array only to drop it (5 million numbers: 2 s
    and 300 MB)."""
    if isinstance(value, str):
        return len(value) + 2 > MAX_TAG_LENGTH
    size = getattr(value, "size", None)  # numpy's arrays
    if not isinstance(size, int):
        size = len(value) if isinstance(value, (list, tuple, dict)) else 0
    return 2 * size + 1 > MAX_TAG_LENGTH


def plain(value: Any) -> Any:
    """numpy's scalars and arrays as Python numbers and lists (`tolist`)."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(type(value).__name__)


def decode(text: str | None) -> Any:
    """The recorded value; None for a run that has none (recorded before
    values were, or not encodable)."""
    if text is None:
        return None
    value = json.loads(text)
    return tuple(value) if isinstance(value, list) else value
