"""The Rust core of hydraflow: the sweep grammar, ULIDs and a SQLite store reader.

The grammar is documented in docs/grammar.md. Every function that takes
``args`` accepts one string (split at top-level white space, quotes kept) or a
sequence of already-split arguments.
"""

import os
from collections.abc import Iterator, Sequence
from typing import final

__all__ = [
    "SqliteFileError",
    "StoreSnapshot",
    "SweepIterator",
    "SweepSyntaxError",
    "collect",
    "count",
    "expand",
    "expand_values",
    "iter_expand",
    "json_representatives",
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
    """A SQLite file :class:`StoreSnapshot` cannot read."""

    unsupported: bool
    """True when SQLite itself can read the file (UTF-16 text, an unknown
    format version, a system without Unix files): read it with SQL instead.
    False for a damaged file, an I/O error or a moved log."""
    moved: bool
    """True when a writer committed or restarted the write-ahead log while
    the snapshot was taken or read: begin a new transaction and read again."""

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

@final
class StoreSnapshot:
    """A SQLite file read from its pages at the snapshot of the caller's read
    transaction on it through SQLite, in the same process.

    Make it before the transaction begins (``BEGIN``), :meth:`pin` it after the
    transaction's first ``SELECT``, then read tables and :meth:`check` after the
    last. Any step may raise :class:`SqliteFileError`; with ``moved`` set, end
    the transaction and start again. The database and ``-shm`` files stay open
    while another descriptor of this process refers to them, because closing
    one would drop the POSIX locks SQLite holds on them (docs/store-reader.md).
    """

    def __new__(cls, path: str | os.PathLike[str], /) -> StoreSnapshot: ...
    def pin(self) -> None:
        """Take the snapshot of the transaction begun since the snapshot was made."""
    def check(self) -> None:
        """Raise with ``moved`` when the log changed since :meth:`pin`."""
    def read_table(
        self,
        root: int,
        columns: Sequence[int],
        /,
        *,
        key_column: int | None = None,
        exact: Sequence[str] = ...,
        prefixes: Sequence[str] = ...,
    ) -> list[list[int | float | str | bytes | None]]:
        """Columns of every row of a table, read from its pages.

        ``root`` is the table's root page (``sqlite_schema.rootpage``) and
        ``columns`` the record positions to return, one list each, rows in
        rowid order; a position past a row's record (a column added later) is
        None. With ``key_column``, only rows whose text there is one of
        ``exact`` or starts with one of ``prefixes`` are kept. Values keep
        SQLite's storage class: a whole number in a REAL column comes back as
        an int. Pages of the snapshot committed to the ``-wal`` file are read
        from there.
        """

def json_representatives(texts: Sequence[str | None], /) -> list[int]:
    """The index of the first of ``texts`` (JSON documents) of each distinct
    shape — its keys and the type of each value, values left out — in order.

    Documents of one shape decode to one polars type, so inferring the type
    from these alone gives the type of them all. None entries are skipped;
    text that is not JSON counts as one more shape.
    """
