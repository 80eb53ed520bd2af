"""Any date-time ingestion accepts is writable as a filter literal, and a value exactly as
`data` returns it, written back as a literal, matches its row (one shared ISO 8601 reader)."""
import pytest

from conftest import all_rows, upload_and_wait


@pytest.fixture
def store(any_store):
    """Both stores: a local directory and a PostgreSQL database (§12)."""
    return any_store


FORMS = [
    "2024-03-14T15:30:00Z",
    "2024-03-14t15:31:00Z",
    "2024-03-14 15:32:00 +02:00",
    "2024-03-14T15:33:00,5Z",
    "2024-03-14T15:34:00.123456Z",
    "2024-03-14T15:35:00.1234567Z",
    "2024-03-14T15:36:00.250Z",
    "2024-03-14 15:37",
]


def test_every_ingested_form_round_trips_as_a_literal(agent):
    content = "n,ts\n" + "".join(f"{i},\"{form}\"\n" for i, form in enumerate(FORMS))
    result, note = upload_and_wait(agent, fileName="times.csv", content=content)
    assert note["status"] == "completed"
    id = result["datasourceId"]
    details = agent.call("datasources/get", {"datasourceId": id})
    assert next(c for c in details["columns"] if c["name"] == "ts")["type"] == "datetime"
    rows = all_rows(agent, id)
    assert rows[4]["ts"] == "2024-03-14T15:34:00.123456Z"
    for row in rows:
        page = agent.call("datasources/data", {"datasourceId": id, "filter": f"ts = '{row['ts']}'"})
        assert [r["n"] for r in page["data"]] == [row["n"]], row
    for index, form in enumerate(FORMS):
        page = agent.call("datasources/data", {"datasourceId": id, "filter": f"ts = '{form}'"})
        assert [r["n"] for r in page["data"]] == [index], form
