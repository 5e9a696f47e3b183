"""Fixed-width tables for the terminal (`make models`, `make runs`) and their metric cells."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def number(value: Any) -> str:
    """A metric to four decimals, or n/a when there is none."""
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"


def aligned(rows: Sequence[Sequence[str]]) -> str:
    """Rows (the first a header) as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
