"""The one table renderer: columns as wide as their widest cell or fixed, figures
to the right, trailing spaces cut, short rows, cells dressed after measuring."""

from __future__ import annotations

from nova_autopilot.reports.table import Column, table


def test_each_column_is_as_wide_as_its_widest_cell_and_figures_align_right() -> None:
    text = table(
        [Column("NAME"), Column("STATE"), Column("COUNT", right=True)],
        [["web-1", "ACTIVE", "3"], ["database-1", "", "120"]],
    )
    assert text.split("\n") == [
        "NAME        STATE   COUNT",
        "web-1       ACTIVE      3",
        "database-1            120",
    ]


def test_trailing_spaces_are_cut_and_a_short_row_ends_early() -> None:
    text = table([Column("A"), Column("LONG TITLE")], [["x", ""], ["y"]])
    assert text.split("\n") == ["A  LONG TITLE", "x", "y"]


def test_a_fixed_width_pads_as_a_format_spec_and_a_longer_cell_overflows_it() -> None:
    columns = [Column("flow", width=6), Column("outcome", width=4), Column("expected")]
    rows = [["web-1", "ok", "ok"], ["db-1", "skipped: no image"]]
    text = table(columns, rows, gap=" ")
    assert text.split("\n") == [
        f"{'flow':<6} {'outcome':<4} expected",
        f"{'web-1':<6} {'ok':<4} ok",
        f"{'db-1':<6} skipped: no image",
    ]


def test_paint_dresses_the_cells_text_but_not_its_padding_nor_the_titles() -> None:
    def paint(row: int, column: int, cell: str) -> str:
        return f"<{cell}>" if (row, column) == (1, 0) else cell

    text = table([Column("NAME"), Column("N", right=True)], [["a", "1"], ["b", "22"]], paint=paint)
    assert text.split("\n") == ["NAME   N", "a      1", "<b>     22"]
