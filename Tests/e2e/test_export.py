"""datasources/export (§4): the cleaned rows `data` returns, every page, streamed through a
signed link as CSV (RFC 4180) or JSON Lines, fetched over real HTTP."""
import csv
import io
import json
import urllib.error
import urllib.request

import pytest

from conftest import all_rows, upload_and_wait, write_big_csv


@pytest.fixture
def store(any_store):
    """Both stores: a local directory and a PostgreSQL database (§12)."""
    return any_store

CONTENT = (
    'sku,name,price,in_stock,released,note\n'
    'A1,"Widget, large","$1,234.50",yes,2024-01-02,"said ""hi"""\n'
    'A2,Gadget,19.99,no,,\n'
    'A3, Spoon ,-3,true,2023-12-31,"two\nlines"\n'
)


@pytest.fixture
def source(agent):
    result, note = upload_and_wait(agent, fileName="things.csv", content=CONTENT)
    assert note["status"] == "completed"
    return result["datasourceId"]


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers, response.read()


def test_csv_export_is_the_cleaned_rows(agent, source):
    link = agent.call("datasources/export", {"datasourceId": source, "format": "csv"})
    assert link["fileName"] == "things.csv" and "fileSize" not in link
    status, headers, body = fetch(link["downloadUrl"])
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert 'filename="things.csv"' in headers["Content-Disposition"]
    assert body.startswith(b"sku,name,price,in_stock,released,note\r\n")
    parsed = list(csv.reader(io.StringIO(body.decode(), newline="")))
    rows = all_rows(agent, source)
    assert parsed[0] == list(rows[0])
    expected = [["" if v is None else ("true" if v is True else "false" if v is False else str(v)) for v in r.values()] for r in rows]
    assert parsed[1:] == expected
    assert parsed[1][1] == "Widget, large" and parsed[1][2] == "1234.5" and parsed[1][5] == 'said "hi"'


def test_jsonl_export_with_filter_sort_and_columns(agent, source):
    params = {"datasourceId": source, "format": "jsonl", "filter": "price > 0", "sort": "price", "order": "desc",
              "columns": ["price", "sku"]}
    link = agent.call("datasources/export", params)
    assert link["fileName"] == "things.jsonl"
    status, headers, body = fetch(link["downloadUrl"])
    assert headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert lines == all_rows(agent, source, filter="price > 0", sort="price", order="desc", columns=["price", "sku"])
    assert lines == [{"price": 1234.5, "sku": "A1"}, {"price": 19.99, "sku": "A2"}]


def test_export_of_many_pages_streams_every_row(agent, tmp_path):
    path = write_big_csv(tmp_path / "big.csv", 25_000)
    result, _ = upload_and_wait(agent, path=str(path))
    link = agent.call("datasources/export", {"datasourceId": result["datasourceId"], "format": "csv", "sort": "amount", "order": "desc"})
    _, _, body = fetch(link["downloadUrl"])
    parsed = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert len(parsed) == 25_001 and parsed[1][0] == "24999" and parsed[-1][0] == "0"


def test_export_errors(agent, source):
    def invalid(params):
        error = agent.error("datasources/export", {"datasourceId": source, **params})
        assert error["data"]["code"] == "INVALID_PARAMETERS", error
        return error["data"]["details"]
    assert invalid({"format": "xlsx"})["parameter"] == "format"
    assert invalid({"format": "csv", "filter": "price >"})["parameter"] == "filter"
    assert invalid({"format": "csv", "sort": "nope"})["parameter"] == "sort"
    assert invalid({"format": "csv", "columns": ["nope"]})["parameter"] == "columns"
    assert invalid({"format": "csv", "expiresIn": 86401})["max"] == 86400
    missing = agent.error("datasources/export", {"datasourceId": "550e8400-e29b-41d4-a716-446655440000", "format": "csv"})
    assert missing["data"]["code"] == "DATASOURCE_NOT_FOUND"


def test_tampered_and_deleted_export_links(agent, source):
    link = agent.call("datasources/export", {"datasourceId": source, "format": "csv", "filter": "price > 100"})
    url = link["downloadUrl"]
    # Changing the query in the link (dropping the filter) breaks its signature.
    other = agent.call("datasources/export", {"datasourceId": source, "format": "csv"})
    q_other = other["downloadUrl"].split("q=")[1].split("&")[0]
    forged = url.split("q=")[0] + "q=" + q_other + "&" + url.split("&", 1)[1]
    with pytest.raises(urllib.error.HTTPError) as denied:
        fetch(forged)
    assert denied.value.code == 403 and json.loads(denied.value.read())["code"] == "ACCESS_DENIED"
    agent.call("datasources/delete", {"datasourceId": source})
    with pytest.raises(urllib.error.HTTPError) as gone:
        fetch(url)
    assert gone.value.code == 404 and json.loads(gone.value.read())["code"] == "DATASOURCE_NOT_FOUND"
