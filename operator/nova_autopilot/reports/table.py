"""Rows of text cells in aligned columns under a line of titles.

The one table renderer of the package: ``status``'s sections, ``history``'s
table of operations and the demo's verdict all print through :func:`table`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Column", "table"]


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    #: Figures: padded on the left.
    right: bool = False
    #: A fixed width, as a format spec's (a longer cell overflows it); None: the widest cell's.
    width: int | None = None


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    gap: str = "  ",
    paint: Callable[[int, int, str], str] | None = None,
) -> str:
    """The titles, then a line per row; trailing spaces are cut from every line.

    A row may have fewer cells than there are columns (its line ends early).
    ``paint(row, column, cell)`` dresses a cell's text (a colour) once its
    padding is measured; ``row`` counts the rows under the titles from 0.
    """
    lines = [[c.title for c in columns], *rows]
    widths = [
        c.width if c.width is not None else max(len(line[i]) for line in lines if i < len(line))
        for i, c in enumerate(columns)
    ]
    out = []
    for number, cells in enumerate(lines, start=-1):
        padded = []
        for i, cell in enumerate(cells):
            pad = " " * (widths[i] - len(cell))
            text = cell if paint is None or number < 0 else paint(number, i, cell)
            padded.append(pad + text if columns[i].right else text + pad)
        out.append(gap.join(padded).rstrip())
    return "\n".join(out)
