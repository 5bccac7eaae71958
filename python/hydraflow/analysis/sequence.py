"""`Collection`: the published HydraFlow's sequence of any items, queried by key.

`Collection(items, get)` holds items of any kind; `get(item, key, default)`
says what an item's value of a key is (by default its attribute, or its
mapping entry, `a.b` reaching inside). On that it filters, picks one item,
sorts, groups and makes columns and frames. `RunCollection` is one with
`Run`s, answering from its polars frame where it can.

The methods use only `len`, indexing, iteration, `value_of`, `to_list` and
`select` (the items at some positions), so a subclass that stores its items
otherwise (`RunCollection`, over a frame) overrides those and keeps the rest.
"""

from __future__ import annotations

import operator
import random
import re
import sys
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from dataclasses import MISSING
from numbers import Integral
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from hydraflow.errors import AT_LEAST_ONE, EXACTLY_ONE, ItemLookupError

if TYPE_CHECKING:
    import polars as pl

I = TypeVar("I")  # noqa: E741 (the published name of the item type)
G = TypeVar("G", bound="Collection[Any]")
# What `key_mask` asks for as the default: a value no item has.
ABSENT: Any = type("Absent", (), {"__repr__": lambda _: "<absent>"})()
# `get(item, key, default)`: an item's value of a key.
Getter = Callable[[Any, str, Any], Any]


class Collection(Sequence[I], Generic[I]):
    """Items in a sequence (index, slice, positions, iterate, `len`), with
    `filter`, `get`, `first`, `last`, `to_list`, `to_frame`, `group_by` and
    more taking keys of the items: `get(item, key, default)` gives an item's
    value of a key, by default its attribute or mapping entry (`a.b` goes
    down)."""

    def __init__(self, items: Iterable[I] = (), get: Getter | None = None) -> None:
        self._items = list(items)
        self._get = get

    def select(self, positions: Sequence[int]) -> Self:
        """The items at these positions, as a collection of this kind."""
        chosen = object.__new__(type(self))
        chosen.__dict__.update(self.__dict__)
        chosen._items = [self._items[i] for i in positions]
        return chosen

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(len(self))

    def __iter__(self) -> Iterator[I]:
        return iter(self._items)

    def __repr__(self) -> str:
        if not len(self):
            return f"{type(self).__name__}(empty)"
        kind = repr(self[0]).split("(", 1)[0]
        return f"{type(self).__name__}({kind}, n={len(self)})"

    @overload
    def __getitem__(self, index: int) -> I: ...
    @overload
    def __getitem__(self, index: slice | Iterable[int]) -> Self: ...
    @overload
    def __getitem__(self, index: str) -> pl.Series: ...
    def __getitem__(self, index: Any) -> Any:
        """An item; a collection (a slice, or positions); a key's values as
        a polars Series (a name)."""
        if isinstance(index, str):
            return self.to_series(index)
        if isinstance(index, slice):
            return self.select(range(len(self))[index])
        if isinstance(index, Integral):  # an int, or NumPy's
            return self._items[operator.index(index)]
        return self.select(positions(index))

    def value_of(self, item: I, key: str, default: Any = MISSING) -> Any:
        """The item's value of `key`; `default` (called with the item when it
        is a function) where it has none; AttributeError without a default."""
        if self._get is not None:
            return self._get(item, key, default)
        return value_at(item, key, default)

    def to_list(self, key: str, default: Any = MISSING) -> list[Any]:
        """Each item's value of `key`, `default` where it has none."""
        return [self.value_of(item, key, default) for item in self]

    def to_series(self, key: str, default: Any = MISSING, *, name: str | None = None) -> pl.Series:
        """`to_list` as a polars Series named `name` or `key`."""
        import polars as pl

        return pl.Series(name or key, self.to_list(key, default))

    def to_numpy(self, key: str, default: Any = MISSING) -> Any:
        """`to_list` as a NumPy array."""
        import numpy as np

        return np.array(self.to_list(key, default))

    def unique(self, key: str, default: Any = MISSING) -> Any:
        """The key's distinct values, sorted, as a NumPy array."""
        import numpy as np

        return np.unique(self.to_numpy(key, default), axis=0)

    def n_unique(self, key: str, default: Any = MISSING) -> int:
        return len(self.unique(key, default))

    def map(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        """`function(item, *args, **kwargs)` for each item, lazily."""
        return (function(item, *args, **kwargs) for item in self)

    def mask(self, criterion: Any) -> list[bool]:
        """Which items meet one criterion of `filter`."""
        if callable(criterion):
            return [bool(criterion(item)) for item in self]
        if isinstance(criterion, tuple):
            key, wanted = criterion
            return self.key_mask(key, wanted)
        flags = [bool(flag) for flag in criterion]
        if len(flags) != len(self):
            raise ValueError(f"a mask of {len(flags)} values for {len(self)} items")
        return flags

    def key_mask(self, key: str, wanted: Any) -> list[bool]:
        """Which items' value of `key` matches `wanted`; an item without the
        key matches nothing (as in the published tool), but a key that no
        item has is an error: a misspelt key would select nothing, silently."""
        # A getter of the user's is asked as the published tool asks it.
        default = ABSENT if self._get is None else MISSING
        values = [self.value_of(item, key, default) for item in self]
        if values and all(value is ABSENT for value in values):
            raise AttributeError(f"no item has the key {key!r} (first: {short_repr(self[0])})")
        return [value is not ABSENT and matches(value, wanted) for value in values]

    def filter(self, *criteria: Any, **keys: Any) -> Self:
        """The items that meet every criterion: a function of an item, a
        `(key, value)` pair, a mask of booleans, or `key=value`. A value
        matches an item's value of the key by being equal to it, holding it
        (a list or set), bounding it (a `(low, high)` tuple, inclusive), or
        being a function true of it."""
        found = self
        for criterion in (*criteria, *keys.items()):
            found = found.select([i for i, kept in enumerate(found.mask(criterion)) if kept])
        return found

    def exclude(self, *criteria: Any, **keys: Any) -> Self:
        """The items that meet none of the criteria of `filter`."""
        kept = self
        for criterion in (*criteria, *keys.items()):
            kept = kept.select([i for i, met in enumerate(kept.mask(criterion)) if not met])
        return kept

    def try_get(self, *criteria: Any, **keys: Any) -> I | None:
        """The one item that meets the criteria, None for none; ValueError for several."""
        found = self.filter(*criteria, **keys)
        if len(found) > 1:
            raise self.lookup_error(len(found), describe(criteria, keys))
        return found[0] if found else None

    def get(self, *criteria: Any, **keys: Any) -> I:
        """The one item that meets the criteria; ValueError for none or several."""
        found = self.filter(*criteria, **keys)
        if len(found) != 1:
            raise self.lookup_error(len(found), describe(criteria, keys))
        return found[0]

    def first(self, *criteria: Any, **keys: Any) -> I:
        """The first item that meets the criteria; ValueError for none."""
        found = self.filter(*criteria, **keys)
        if not found:
            raise self.lookup_error(0, describe(criteria, keys), AT_LEAST_ONE)
        return found[0]

    def last(self, *criteria: Any, **keys: Any) -> I:
        """The last item that meets the criteria; ValueError for none."""
        found = self.filter(*criteria, **keys)
        if not found:
            raise self.lookup_error(0, describe(criteria, keys), AT_LEAST_ONE)
        return found[-1]

    @staticmethod
    def lookup_error(count: int, criteria: str, expected: str = EXACTLY_ONE) -> ItemLookupError:
        return ItemLookupError(count, criteria, expected)

    def sort(self, *keys: str, reverse: bool = False) -> Self:
        """The items ordered by the keys' values (stable), reversed with `reverse`."""
        if not keys:
            return self
        columns = [self.to_list(key) for key in keys]
        try:
            order = sorted(range(len(self)), key=lambda i: [column[i] for column in columns])
        except TypeError:  # values of kinds Python does not order (1 and "a")
            order = numpy_order(columns)
        return self.select(order[::-1] if reverse else order)

    def sample(self, k: int, seed: int | None = None) -> Self:
        """`k` items drawn at random (reproducibly with `seed`)."""
        if not 1 <= k <= len(self):
            raise ValueError(
                f"a sample of {k} items out of {len(self)}: it must be 1 to {len(self)}"
            )
        return self.select(random.Random(seed).sample(range(len(self)), k))

    def shuffle(self, seed: int | None = None) -> Self:
        return self.sample(len(self), seed)

    def to_frame(
        self,
        *keys: str | tuple[str, Any],
        defaults: dict[str, Any] | None = None,
        **functions: Callable[[I], Any],
    ) -> pl.DataFrame:
        """A column per key (`(key, default)` for a default), then one per
        function of an item, named by its keyword: a value, a list (a list
        column) or a dict (a struct column) per item."""
        import polars as pl

        defaults = dict(defaults or {})
        names = []
        for key in keys:
            if isinstance(key, tuple):
                defaults[key[0]] = key[1]
                key = key[0]
            names.append(key)
        frame = pl.DataFrame([self.to_series(k, defaults.get(k, MISSING)) for k in names])
        if not functions:
            return frame
        return frame.with_columns(pl.Series(k, list(self.map(f))) for k, f in functions.items())

    def group_by(self, *keys: str) -> GroupBy[Self]:
        """The items by their values of the keys (a value, or a tuple of
        values for several keys), in the order the values first come."""
        columns = [[hashable(v) for v in self.to_list(key)] for key in keys]
        groups: dict[Any, list[int]] = {}
        for i in range(len(self)):
            values = tuple(column[i] for column in columns)
            groups.setdefault(values[0] if len(keys) == 1 else values, []).append(i)
        return GroupBy(keys, {value: self.select(rows) for value, rows in groups.items()})

    def eq(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[I], bool]:
        """A filter: the items whose values of two keys are equal."""
        return lambda item: bool(self.pair(item, left, right, default, lambda a, b: a == b))

    def ne(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[I], bool]:
        return lambda item: bool(self.pair(item, left, right, default, lambda a, b: a != b))

    def gt(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[I], bool]:
        return lambda item: bool(self.pair(item, left, right, default, lambda a, b: a > b))

    def lt(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[I], bool]:
        return lambda item: bool(self.pair(item, left, right, default, lambda a, b: a < b))

    def ge(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[I], bool]:
        return lambda item: bool(self.pair(item, left, right, default, lambda a, b: a >= b))

    def le(self, left: str, right: str, *, default: Any = MISSING) -> Callable[[I], bool]:
        return lambda item: bool(self.pair(item, left, right, default, lambda a, b: a <= b))

    def pair(
        self, item: I, left: str, right: str, default: Any, compare: Callable[[Any, Any], Any]
    ) -> Any:
        return compare(self.value_of(item, left, default), self.value_of(item, right, default))

    def startswith(self, key: str, prefix: str, *, default: Any = MISSING) -> Callable[[I], bool]:
        """A filter: the items whose value of `key`, as text, starts with `prefix`."""
        return lambda item: str(self.value_of(item, key, default)).startswith(prefix)

    def endswith(self, key: str, suffix: str, *, default: Any = MISSING) -> Callable[[I], bool]:
        return lambda item: str(self.value_of(item, key, default)).endswith(suffix)

    def match(
        self, key: str, pattern: str | re.Pattern[str], *, default: Any = MISSING, flags: int = 0
    ) -> Callable[[I], bool]:
        """A filter: the items whose value of `key`, as text, matches a regular expression."""
        return lambda item: (
            re.match(pattern, str(self.value_of(item, key, default)), flags) is not None
        )


class GroupBy(Generic[G]):
    """Items grouped by keys: a mapping from the keys' values to a
    collection, and `agg` to a frame."""

    def __init__(self, by: tuple[str, ...], groups: dict[Any, G]) -> None:
        self.by = by
        self.groups = groups

    def __getitem__(self, key: Any) -> G:
        return self.groups[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __contains__(self, key: Any) -> bool:
        return key in self.groups

    def keys(self) -> KeysView[Any]:
        return self.groups.keys()

    def values(self) -> ValuesView[G]:
        return self.groups.values()

    def items(self) -> ItemsView[Any, G]:
        return self.groups.items()

    def agg(self, *keys: str, **functions: Callable[[G], Any]) -> pl.DataFrame:
        """A row per group: the keys' values, a list of each item's value per
        key of `keys`, and a column per function of the group."""
        import polars as pl

        if len(self.by) == 1:
            frame = pl.DataFrame({self.by[0]: list(self.groups)})
        else:
            frame = pl.DataFrame([dict(zip(self.by, k, strict=True)) for k in self.groups])
        columns = [pl.Series(key, [g.to_list(key) for g in self.groups.values()]) for key in keys]
        columns += [
            pl.Series(k, [f(g) for g in self.groups.values()]) for k, f in functions.items()
        ]
        return frame.with_columns(columns)


def value_at(item: Any, key: str, default: Any = MISSING) -> Any:
    """The item's attribute or mapping entry `key`, a dotted key reaching
    inside (`model.depth`); `default` (called with the item when it is a
    function) where there is none; AttributeError without a default."""
    value = item
    for part in key.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif hasattr(value, part):
            value = getattr(value, part)
        elif default is not MISSING:
            return default(item) if callable(default) else default
        else:
            raise AttributeError(f"{short_repr(item)} has no key {key!r}")
    return value


def short_repr(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 60 else f"{text[:57]}..."


def positions(index: Iterable[Any]) -> list[int]:
    """The positions an index names (a NumPy array's too); as in the
    published tool, a boolean is the position 0 or 1, not a mask."""
    return [int(i) for i in index]


def numpy_order(columns: list[list[Any]]) -> list[int]:
    """The order the published tool gives values of mixed kinds: NumPy's,
    after NumPy made each column one type (`[1, "a"]` is text)."""
    import numpy as np

    return [int(i) for i in np.lexsort([np.array(c) for c in columns][::-1])]


def matches(value: Any, wanted: Any) -> bool:
    """A value meets a criterion: a function true of it, a list or set that
    holds it, a (low, high) range around it, or an equal value (lists and
    tuples compared as lists)."""
    if callable(wanted):
        return bool(wanted(value))
    wanted = plain(wanted)
    if isinstance(wanted, list | set) and not is_sequence(value):
        return value in wanted
    if isinstance(wanted, tuple) and len(wanted) == 2 and not is_sequence(value):
        low, high = wanted
        return bool(low <= value <= high)
    return bool(as_list(value) == as_list(wanted))


def plain(value: Any) -> Any:
    """An OmegaConf list as a list (only a program that imported OmegaConf has one)."""
    omegaconf = sys.modules.get("omegaconf")
    if omegaconf is not None and isinstance(value, omegaconf.ListConfig):
        return list(value)
    return value


def is_sequence(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | dict)


def as_list(value: Any) -> Any:
    return list(value) if is_sequence(value) else value


def hashable(value: Any) -> Any:
    """A group's key: lists become tuples."""
    value = plain(value)
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return str(value)
    return value


def describe(criteria: tuple[Any, ...], keys: dict[str, Any]) -> str:
    parts = [repr(c) for c in criteria] + [f"{k}={v!r}" for k, v in keys.items()]
    return ", ".join(parts) if parts else "(no criteria)"
