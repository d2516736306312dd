"""Report tables and the small-cell suppression rule applied to every aggregate that leaves the server.

A :class:`Table` keeps true values; :meth:`Table.published` gives what may be shown. Count cells from
1 to ``min_cell - 1`` show as ``"<5"`` (for ``min_cell = 5``), standard practice for humanitarian
data: a small count can identify a person (the one refused at station 3 on Tuesday). Zero is shown.
A rate whose numerator is suppressed shows as an upper bound (``"<2.5"`` percent); a rate whose
denominator is suppressed is withheld entirely. This is primary suppression only: where a row also
shows its total, a reader can sometimes work a suppressed cell out by subtraction (said in the report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Cell", "Table", "rate", "suppress_count"]

Cell = str | int | float | None


def suppress_count(value: int, min_cell: int) -> int | str:
    return f"<{min_cell}" if 0 < value < min_cell else value


def rate(numerator: int, denominator: int) -> float | None:
    """Percent, rounded to what such figures can carry (two decimals); None for no denominator."""
    return None if denominator <= 0 else round(100.0 * numerator / denominator, 2)


@dataclass
class Table:
    """``counts``: columns holding counts (suppressed); ``rates``: percent columns with the
    (numerator, denominator) count columns they come from."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    counts: frozenset[str] = frozenset()
    rates: dict[str, tuple[str, str]] = field(default_factory=dict)
    note: str = ""
    detail: bool = False  # holds reference ids: only with the explicit detail flag

    def add(self, *values: Cell) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"{self.name}: {len(values)} values for {len(self.columns)} columns")
        self.rows.append(list(values))

    def column(self, name: str) -> list[Cell]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def published(self, min_cell: int) -> list[list[Cell]]:
        """Rows as they may leave the server (suppression applied unless this is a detail table)."""
        if self.detail or min_cell <= 1:
            return [list(r) for r in self.rows]
        index = {c: i for i, c in enumerate(self.columns)}
        out = []
        for row in self.rows:
            shown: list[Cell] = list(row)
            for c in self.counts:
                v = row[index[c]]
                if isinstance(v, int):
                    shown[index[c]] = suppress_count(v, min_cell)
            for c, (num, den) in self.rates.items():
                n, d = row[index[num]], row[index[den]]
                if not isinstance(n, int) or not isinstance(d, int) or d <= 0:
                    continue
                if d < min_cell:
                    shown[index[c]] = "suppressed"
                elif 0 < n < min_cell:
                    shown[index[c]] = f"<{100.0 * min_cell / d:.2f}"
            out.append(shown)
        return out

    def as_json(self, min_cell: int) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.published(min_cell),
                "note": self.note}


def totals(rows: Sequence[Sequence[Cell]], start: int) -> list[int]:
    """Column sums from index ``start`` on (true values; callers publish through a Table)."""
    width = len(rows[0]) if rows else 0
    return [sum(int(r[i] or 0) for r in rows) for i in range(start, width)]
