"""The Rust core of hydraflow: the sweep grammar and ULIDs.

The grammar is documented in docs/grammar.md. Every function that takes
``args`` accepts one string (split at top-level white space, quotes kept) or a
sequence of already-split arguments.
"""

from collections.abc import Iterator, Sequence
from typing import final

__all__ = [
    "SweepIterator",
    "SweepSyntaxError",
    "collect",
    "count",
    "expand",
    "expand_values",
    "iter_expand",
    "split",
    "ulid",
    "ulids",
]
__version__: str

class SweepSyntaxError(ValueError):
    """A sweep string breaks the grammar.

    ``str(error)`` names the argument and draws carets under the offending text.
    """

    argument: str
    """The whole argument the error is in."""
    position: int
    """0-based character offset of the offending text in ``argument``."""
    reason: str
    """Why, e.g. ``"'3tep' is not a number"``."""

@final
class SweepIterator(Iterator[list[str]]):
    """The lazy iterator returned by :func:`iter_expand`."""

    def __iter__(self) -> SweepIterator: ...
    def __next__(self) -> list[str]: ...
    def __length_hint__(self) -> int: ...

def expand(args: str | Sequence[str], /) -> list[list[str]]:
    """Expands ``each`` arguments: one list of overrides per combination.

    The first argument varies slowest. Equal value strings are one shared object.

    >>> expand("a=1:2 b=x,y")
    [['a=1', 'b=x'], ['a=1', 'b=y'], ['a=2', 'b=x'], ['a=2', 'b=y']]
    """

def collect(args: str | Sequence[str], /) -> list[str]:
    """Collects ``all`` arguments: one ``KEY=v1,v2,...`` per argument.

    >>> collect("height=100:300:100")
    ['height=100,200,300']
    """

def count(args: str | Sequence[str], /) -> int:
    """``len(expand(args))``, computed without listing anything."""

def iter_expand(args: str | Sequence[str], /) -> SweepIterator:
    """A lazy :func:`expand`: memory holds the distinct values, never the grid."""

def expand_values(values: str, scale: str = "") -> list[str]:
    """The values of one value list, each multiplied by ``scale`` if given.

    >>> expand_values("1:3", "k")
    ['1000', '2000', '3000']
    """

def split(text: str, /) -> list[str]:
    """Splits a sweep string into arguments at top-level white space, keeping quotes."""

def ulid() -> str:
    """A new ULID (26 Crockford base32 characters), greater than all earlier ones."""

def ulids(n: int, /) -> list[str]:
    """``n`` new ULIDs, strictly increasing."""
