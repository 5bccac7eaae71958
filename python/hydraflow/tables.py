"""The one text table of the `hydraflow` command (`show`, `runs`): rich lays
it out to the terminal's width (80 columns, or COLUMNS, when not on one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

MIN_WIDTH = 12


def print_table(
    out: IO[str],
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[bool] = (),
    title: Sequence[str] = (),
) -> None:
    """Writes `rows` under `headers` (none: no header line), columns that do
    not fit cut with an ellipsis, `right`-aligned where asked; `title` lines
    go above, wrapped to the width."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(
        box=box.SIMPLE_HEAD if headers else None,
        show_header=bool(headers),
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=bool(headers),
        header_style="bold",
    )
    for i, header in enumerate(headers or rows[0]):
        aligned = i < len(right) and right[i]
        widest = max(len(header) if headers else 0, *(len(row[i]) for row in rows))
        table.add_column(
            Text(header) if headers else "",
            justify="right" if aligned else "left",
            no_wrap=True,
            overflow="ellipsis",
            # Narrowed to fit, never past reading: what does not fit is cut at the edge.
            min_width=min(widest, MIN_WIDTH),
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console = Console(file=out, highlight=False, soft_wrap=False)
    with console.capture() as captured:
        for line in title:
            console.print(Text(line))
        console.print(table)
    # Cells are padded to their column's width: no line needs its trailing blanks.
    out.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
