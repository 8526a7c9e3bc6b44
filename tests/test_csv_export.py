"""CSV downloads escape what a spreadsheet would run as a formula (issue 15): the one helper, and the
run page's panel CSV (the project's CSV writer) through it. Before, a metric key such as
`=HYPERLINK(...)` reached the downloaded file as a live formula."""
import csv
import io
from decimal import Decimal

import orjson
import pytest

from r1lab import csv_export
from r1lab.tracking.ingest import parse_log_body
from r1lab.tracking.services import tracked_run_create, tracked_run_log


@pytest.mark.parametrize("cell,want", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("reward", "reward"), ("a=b", "a=b"), ("", ""), ("'=x", "'=x"),
    (-0.5, -0.5), (-3, -3), (Decimal("-1.5"), Decimal("-1.5")), (1e-06, 1e-06), (None, None), (True, "True"),
])
def test_safe_cell_escapes_formula_strings_and_leaves_numbers(cell, want):
    assert csv_export.safe_cell(cell) == want


def test_writer_round_trip_keeps_numbers_numeric_and_text_inert():
    buf = io.StringIO()
    w = csv_export.writer(buf)
    w.writerow(["key", "value"])
    w.writerows([["=HYPERLINK(\"http://evil\")", -0.5], ["-loss", 0.25], ["ok, fine", -2]])
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows == [["key", "value"], ["'=HYPERLINK(\"http://evil\")", "-0.5"], ["'-loss", "0.25"], ["ok, fine", "-2"]]


@pytest.mark.django_db
def test_run_csv_download_escapes_formula_keys_and_keeps_negative_values(client_as):
    run, _ = tracked_run_create(name="csv", config={})
    tracked_run_log(run_id=run.pk, parsed=parse_log_body(orjson.dumps({"metrics": [
        {"step": 0, "key": "=HYPERLINK(\"http://evil.test\",\"x\")", "value": -0.5},
        {"step": 1, "key": "+loss", "value": 0.1},
    ]})))
    client = client_as("viewer")
    body = b"".join(client.get(f"/metrics/runs/{run.pk}/points.csv").streaming_content).decode()
    rows = {r[1]: r for r in csv.reader(io.StringIO(body))}
    assert "'=HYPERLINK(\"http://evil.test\",\"x\")" in rows and "'+loss" in rows
    assert rows["'=HYPERLINK(\"http://evil.test\",\"x\")"][3] == "-0.5"  # a number, unquoted
    assert rows["'+loss"][3] == repr(0.1)
    # Whatever begins like a formula in the file is a number.
    assert all(_is_number(cell) for r in rows.values() for cell in r if cell.startswith(csv_export.FORMULA_START))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
