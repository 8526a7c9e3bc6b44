"""Every CSV download r1lab writes goes through `writer()` here: cells that a spreadsheet would run
as a formula are escaped.

CSV ("formula") injection, OWASP's rule: Excel, LibreOffice and Google Sheets treat a cell that
begins with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula (`=HYPERLINK(...)`,
`=cmd|' /C calc'!A0`, ...). Metric keys, prompts and model output are untrusted text, so a string
cell that begins with one of those gets a `'` in front: spreadsheets show it as text (and hide
the quote). Numbers are written as numbers: `-0.5` is a number, not a formula, and only strings
are escaped (pass floats, not their repr, for numeric columns).
"""
from __future__ import annotations

import csv
from decimal import Decimal

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """`value` as a CSV cell that no spreadsheet runs: numbers and None as they are, text escaped."""
    if value is None or (isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)):
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


class SafeWriter:
    """csv.writer whose rows go through safe_cell."""

    def __init__(self, fh, **kwargs):
        self._writer = csv.writer(fh, **kwargs)

    def writerow(self, row):
        return self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


def writer(fh, **kwargs) -> SafeWriter:
    """`csv.writer(fh, **kwargs)`, formula-safe: the one CSV writer of the project."""
    return SafeWriter(fh, **kwargs)
