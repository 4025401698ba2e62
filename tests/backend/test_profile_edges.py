"""Histogram bin edges are rounded to the data's scale, not printed with a double's noise."""

from __future__ import annotations

from tests.backend import test_datasets_ingest as ingest
from tests.backend.test_datasets_ingest import put

prefix = ingest.prefix


def test_histogram_edges_are_rounded_to_the_bin_width(api, prefix):
    # 0.05 … 7499.85: sums of these doubles give edges like 7499.849999999999 unrounded.
    values = [round(0.05 + i * 37.49, 2) for i in range(201)]
    body = "price\n" + "\n".join(f"{v:.2f}" for v in values) + "\n"
    assert put(api, prefix, body.encode(), filename="p.csv").status_code == 201
    profile = api.get(f"/api/datasets/{prefix}/profile").json()
    histogram = profile["columns"][0]["histogram"]
    assert sum(b["count"] for b in histogram) == len(values)
    edges = [histogram[0]["start"]] + [b["end"] for b in histogram]
    for edge in edges:
        decimals = repr(float(edge)).partition(".")[2]
        assert len(decimals) <= 2, f"edge {edge!r} carries noise"
    # Bins about 375 wide: whole numbers are the scale that reads (0, 375, … 7498).
    assert edges[0] == 0 and edges[1] == 375 and edges[-1] == 7498


def test_times_of_day_are_binned_with_times_as_edges(api, prefix):
    # TIME is temporal (myapp/contract/types.py): binned on seconds since midnight.
    times = [f"{h:02d}:{m:02d}:00" for h in range(8, 18) for m in (0, 30)]
    body = "at\n" + "\n".join(times) + "\n"
    put_response = put(api, prefix, body.encode(), filename="t.csv", types="at:TIME")
    assert put_response.status_code == 201, put_response.text
    profile = api.get(f"/api/datasets/{prefix}/profile").json()
    column = profile["columns"][0]
    assert column["type"] == "TIME"
    assert (column["min"], column["max"]) == ("08:00:00", "17:30:00")
    histogram = column["histogram"]
    assert sum(b["count"] for b in histogram) == len(times)
    assert histogram[0]["start"] == "08:00:00" and histogram[-1]["end"] == "17:30:00"
