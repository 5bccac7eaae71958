"""The one text table of the `hydraflow` command (`show`, `runs`): rich lays
it out to the terminal's width, or to COLUMNS when set; piped elsewhere (a
file, `less -S`, `grep`), it is printed whole, never cut to a made-up 80."""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import accumulate
from typing import IO

MIN_WIDTH = 12
# The width of a table printed whole (no line is this long).
UNFITTED = 100_000


def print_table(
    out: IO[str],
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[bool] = (),
    title: Sequence[str] = (),
    fit: bool = True,
) -> None:
    """Writes `rows` under `headers` (none: no header line), `right`-aligned
    where asked; `title` lines go above, wrapped to the width. Rich narrows
    wide columns to fit, cutting values with an ellipsis; the columns that
    would not fit even at MIN_WIDTH are left out, and a last line says so.
    Without `fit` (or with no width to fit: not a terminal, no COLUMNS),
    every cell is printed whole, one line per row."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    fitted = fit and (is_terminal(out) or "COLUMNS" in os.environ)
    width = None if fitted else UNFITTED
    console = Console(file=out, highlight=False, soft_wrap=False, width=width)
    names = list(headers) or [""] * len(rows[0])
    narrowest = [
        min(MIN_WIDTH, max(len(name), *(len(row[i]) for row in rows)))
        for i, name in enumerate(names)
    ]
    # Each column takes its narrowest width and two blanks before the next.
    fitting = max(
        1, sum(1 for end in accumulate(w + 2 for w in narrowest) if end <= console.width + 2)
    )
    table = Table(
        box=box.SIMPLE_HEAD if headers else None,
        show_header=bool(headers),
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=bool(headers),
        header_style="bold",
    )
    for i, name in enumerate(names[:fitting]):
        table.add_column(
            Text(name, no_wrap=True, overflow="ellipsis"),
            justify="right" if i < len(right) and right[i] else "left",
            min_width=narrowest[i],
        )
    for row in rows:
        # Wrappable columns, for rich narrows the widest of those first; one line per cell.
        table.add_row(*(Text(cell, no_wrap=True, overflow="ellipsis") for cell in row[:fitting]))
    left_out = names[fitting:]
    with console.capture() as captured:
        for line in title:
            console.print(Text(line))
        console.print(table)
        if left_out:
            more = counted(len(left_out), "more column")
            console.print(Text(f"... {more}: {', '.join(left_out)}"))
    # Cells are padded to their column's width: no line needs its trailing blanks.
    out.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def is_terminal(out: IO[str]) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def counted(count: int | str | None, noun: str) -> str:
    """`1 run`, `3 runs`: the noun in the singular for exactly one; a count
    hydraflow cannot know (None) is `? runs`: for a plan's runs,
    `JobPlan.runs_described` says instead what decides them."""
    shown = "?" if count is None else count
    return f"{shown} {noun}" if shown == 1 else f"{shown} {noun}s"
