"""The Rust core of hydraflow: the sweep grammar, ULIDs and a SQLite file reader.

The grammar is documented in docs/grammar.md. Every function that takes
``args`` accepts one string (split at top-level white space, quotes kept) or a
sequence of already-split arguments.
"""

import os
from collections.abc import Iterator, Sequence
from typing import final

__all__ = [
    "SqliteFileError",
    "SweepIterator",
    "SweepSyntaxError",
    "collect",
    "count",
    "expand",
    "expand_values",
    "iter_expand",
    "json_representatives",
    "read_table",
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

class SqliteFileError(OSError):
    """A SQLite file :func:`read_table` cannot read."""

    unsupported: bool
    """True when SQLite itself can read the file (UTF-16 text, an unknown
    format version): read it with SQL instead. False for a damaged file or
    an I/O error."""

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

def read_table(
    path: str | os.PathLike[str],
    root: int,
    columns: Sequence[int],
    /,
    *,
    key_column: int | None = None,
    exact: Sequence[str] = ...,
    prefixes: Sequence[str] = ...,
) -> list[list[int | float | str | bytes | None]]:
    """Columns of every row of a table in a SQLite file, read from its pages.

    ``root`` is the table's root page (``sqlite_schema.rootpage``) and
    ``columns`` the record positions to return, one list each, rows in rowid
    order; a position past a row's record (a column added later) is None.
    With ``key_column``, only rows whose text there is one of ``exact`` or
    starts with one of ``prefixes`` are kept. Values keep SQLite's storage
    class: a whole number in a REAL column comes back as an int.

    Pages committed to the ``-wal`` file of a database in WAL mode are read
    from there. Takes no lock: hold a read transaction on the file through
    SQLite (``BEGIN`` and a first ``SELECT``) while calling it. The file is opened
    once and kept open for the life of the process, because closing it would
    drop the POSIX locks SQLite holds on it.
    """

def json_representatives(texts: Sequence[str | None], /) -> list[int]:
    """The index of the first of ``texts`` (JSON documents) of each distinct
    shape — its keys and the type of each value, values left out — in order.

    Documents of one shape decode to one polars type, so inferring the type
    from these alone gives the type of them all. None entries are skipped;
    text that is not JSON counts as one more shape.
    """
