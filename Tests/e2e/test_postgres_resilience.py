"""The PostgreSQL store when things go wrong (issue 17, SPEC §12): the processing agent killed
in the middle of its `COPY` and the work taken over, and the server restarted while agents
process and while they idle. What is checked is what anyone can observe — the methods'
answers, `pg_stat_activity`, the catalog and the tables in the schema — not how ingestion is
built, so the tests hold whether the rows reach `COPY` from a staging file or straight from
the readers."""
import time
import urllib.request

import pytest

from agentproc import Agent
from conftest import all_rows, upload_and_wait, write_big_csv

CSV = "id,name,price\n1,a,1.5\n2,b,2\n3,c,\n"
ROWS = 400_000
PROCESSING_IN_PROGRESS = -31409


def database(pg_url):
    return pg_url.rsplit("/", 1)[1]


def copy_is_running(cluster, db) -> bool:
    """A `COPY … FROM STDIN` into this database is running now (any agent's)."""
    return cluster.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND state <> 'idle' AND ltrim(query) ILIKE 'copy %'") != "0"


def wait_for_copy(cluster, db, agent, timeout=180):
    deadline = time.monotonic() + timeout
    while not copy_is_running(cluster, db):
        assert agent.proc.poll() is None, agent.stderr.decode(errors="replace")
        assert time.monotonic() < deadline, "no COPY was seen while the upload processed"
        time.sleep(0.02)


def schema_tables(cluster, db) -> set[str]:
    listed = cluster.psql(db, "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'datasource_agent'")
    return set(filter(None, listed.split(",")))


def row_tables(cluster, db) -> set[str]:
    return {t for t in schema_tables(cluster, db) if t.startswith("rows_")}


def catalog_status(cluster, db, id) -> str:
    return cluster.psql(db, f"SELECT status FROM datasource_agent.datasources WHERE id = '{id}'")


def completions_logged(cluster, db, id) -> int:
    return int(cluster.psql(db, f"SELECT count(*) FROM datasource_agent.status_changes "
                                f"WHERE datasource_id = '{id}' AND status = 'completed'"))


def assert_not_half_visible(cluster, db, reader, id):
    """While `id` is processing, no table of it is visible and `data` answers
    PROCESSING_IN_PROGRESS; a table appears only together with the `completed` catalog row.
    Tables are read before the status, so a publish committing in between is not a false alarm."""
    tables = row_tables(cluster, db)
    status = catalog_status(cluster, db, id)
    if status == "processing":
        assert tables == set(), f"a table is visible while {id} is processing: {tables}"
        reply = reader.response(reader.request("datasources/data", {"datasourceId": id, "limit": 5}), 30)
        if "error" in reply:
            assert reply["error"]["code"] == PROCESSING_IN_PROGRESS, reply
        else:  # it completed between the two reads: then the whole table answers
            assert reply["result"]["pagination"]["total"] == ROWS, reply
    else:
        assert tables <= {f"rows_{id}"}, tables
    return status


def test_kill_9_mid_copy_is_taken_over_and_published_once(pg_url, pg_cluster, tmp_path):
    """The agent processing an upload is killed (SIGKILL) while its `COPY` runs: nothing of the
    load becomes visible, the survivor takes the source over when the lease expires and
    publishes it once, with every row, and the schema holds no other table afterwards."""
    path = write_big_csv(tmp_path / "big.csv", ROWS)
    db = database(pg_url)
    with Agent(pg_url) as survivor:
        survivor.initialize()
        tables_before = schema_tables(pg_cluster, db)
        assert tables_before and row_tables(pg_cluster, db) == set()
        with Agent(pg_url) as victim:
            victim.initialize()
            id = victim.call("datasources/upload", {"path": str(path)})["datasourceId"]
            wait_for_copy(pg_cluster, db, victim)
            assert assert_not_half_visible(pg_cluster, db, survivor, id) == "processing", "the COPY ended before the kill"
            victim.kill()
        deadline = time.monotonic() + 240
        while assert_not_half_visible(pg_cluster, db, survivor, id) == "processing":
            assert time.monotonic() < deadline, "the source was never taken over"
            time.sleep(0.25)
        note = survivor.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=30)
        assert note["status"] == "completed" and note["rowCount"] == ROWS, note
        assert schema_tables(pg_cluster, db) == tables_before | {f"rows_{id}"}
        assert pg_cluster.psql(db, f'SELECT count(*), count(DISTINCT r) FROM datasource_agent."rows_{id}"') == f"{ROWS}|{ROWS}"
        assert completions_logged(pg_cluster, db, id) == 1
        page = survivor.call("datasources/data", {"datasourceId": id, "limit": 2, "sort": "id", "order": "desc"})
        assert page["pagination"]["total"] == ROWS and [r["id"] for r in page["data"]] == [ROWS - 1, ROWS - 2]


def call_through_restart(agent, method, params, timeout=30):
    """`method`'s result, retried while the agent answers STORAGE_ERROR because the server is
    still coming back (the only error a restart may cause, and only for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = agent.response(agent.request(method, params), 30)
        if "result" in reply:
            return reply["result"]
        assert reply["error"]["data"]["code"] == "STORAGE_ERROR", reply
        assert time.monotonic() < deadline, reply
        time.sleep(0.2)


def download(agent, id) -> bytes:
    url = call_through_restart(agent, "datasources/download", {"datasourceId": id})["downloadUrl"]
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def test_server_restart_mid_copy_loses_nothing(pg_url, pg_cluster, tmp_path):
    """The server restarts (every connection closed) while an agent is in the middle of its
    `COPY`: the source still ends `completed` with every row (published again by this agent or
    another once the lease lapses) or `failed` with its message; its original is still
    downloadable byte for byte from either agent; what was completed before is intact, and
    later uploads work on both agents."""
    path = write_big_csv(tmp_path / "big.csv", ROWS)
    db = database(pg_url)
    with Agent(pg_url) as a, Agent(pg_url) as b:
        a.initialize()
        b.initialize()
        earlier = upload_and_wait(a, fileName="earlier.csv", content=CSV)[0]["datasourceId"]
        earlier_rows = all_rows(a, earlier)
        id = a.call("datasources/upload", {"path": str(path)})["datasourceId"]
        wait_for_copy(pg_cluster, db, a)
        pg_cluster.restart()
        note = b.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=240)
        details = call_through_restart(b, "datasources/get", {"datasourceId": id})
        assert details["status"] == note["status"]
        if note["status"] == "completed":
            assert note["rowCount"] == ROWS
            assert call_through_restart(b, "datasources/data", {"datasourceId": id, "limit": 1})["pagination"]["total"] == ROWS
            assert row_tables(pg_cluster, db) == {f"rows_{earlier}", f"rows_{id}"}
            assert completions_logged(pg_cluster, db, id) == 1
        else:
            assert note["status"] == "failed" and details["error"]["message"], details
            assert row_tables(pg_cluster, db) == {f"rows_{earlier}"}
        assert a.proc.poll() is None and b.proc.poll() is None
        original = path.read_bytes()
        assert download(a, id) == original and download(b, id) == original
        for agent in (a, b):
            assert all_rows(agent, earlier) == earlier_rows
            later, later_note = upload_and_wait(agent, fileName="later.csv", content=CSV)
            assert later_note["status"] == "completed" and all_rows(agent, later["datasourceId"]) == earlier_rows


def test_server_restart_while_agents_idle_loses_nothing(pg_url, pg_cluster):
    """The server restarts while the agents have nothing to do: every method works again at
    once (a STORAGE_ERROR only while the server is coming back), the same rows, keys and
    download links as before, and each agent hears the other's next upload."""
    with Agent(pg_url) as a, Agent(pg_url) as b:
        a.initialize()
        b.initialize()
        before = upload_and_wait(a, fileName="before.csv", content=CSV)[0]["datasourceId"]
        rows_before = all_rows(a, before)
        cursor = a.call("datasources/data", {"datasourceId": before, "limit": 1, "sort": "price"})["pagination"]["nextCursor"]
        pg_cluster.restart()
        for agent in (a, b):
            listing = call_through_restart(agent, "datasources/list", {})
            assert [s["datasourceId"] for s in listing["dataSources"]] == [before]
            assert all_rows(agent, before) == rows_before
            # A cursor made before the restart is still honoured (the secret is in the database).
            rest = agent.call("datasources/data", {"datasourceId": before, "limit": 5, "sort": "price", "cursor": cursor})
            assert [r["id"] for r in rest["data"]] == [2, 3]
        assert download(b, before) == CSV.encode()
        for sender, hearer in ((a, b), (b, a)):
            id = call_through_restart(sender, "datasources/upload", {"fileName": "after.csv", "content": CSV})["datasourceId"]
            note = hearer.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=30)
            assert note["status"] == "completed" and all_rows(hearer, id) == rows_before
