"""The PostgreSQL store (SPEC §12): what only a shared database can show. The store-generic
expectations (upload, list, get, data, filters, sorts, cursors, delete, errors) run against
both stores in the modules that override `store` with `any_store`."""
import time

import pytest

from agentproc import Agent
from conftest import all_rows, upload_and_wait

CSV = "id,name,price,when\n1,a,1.5,2024-01-02\n2,b,$2,2024-01-03\n3,c,,2024-01-04\n"


def test_upload_get_data_on_postgres(pg_url, pg_cluster):
    with Agent(pg_url, env={"DATASOURCE_AGENT_LOG_LEVEL": "info"}) as agent:
        init = agent.initialize()
        result, note = upload_and_wait(agent, fileName="p.csv", content=CSV)
        assert note["status"] == "completed", (note, agent.stderr.decode())
        details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
        assert details["rowCount"] == 3
        assert [c["type"] for c in details["columns"]] == ["number", "string", "number", "date"]
        assert all_rows(agent, result["datasourceId"]) == [
            {"id": 1, "name": "a", "price": 1.5, "when": "2024-01-02"},
            {"id": 2, "name": "b", "price": 2, "when": "2024-01-03"},
            {"id": 3, "name": "c", "price": None, "when": "2024-01-04"}]
    db = pg_url.rsplit("/", 1)[1]
    assert pg_cluster.psql(db, "SELECT count(*) FROM datasource_agent.datasources") == "1"


def wait_receipt(agent, id, timeout=30):
    """The statusChanged notification for `id` and when it was read off the pipe."""
    note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=timeout)
    return note, time.monotonic()


def test_two_agents_share_one_database(pg_url):
    """An upload through one agent is announced to the other (LISTEN/NOTIFY) within a second
    of its own announcement, and both serve the same rows, with cursors from either."""
    with Agent(pg_url) as a, Agent(pg_url) as b:
        a.initialize()
        b.initialize()
        result = a.call("datasources/upload", {"fileName": "shared.csv", "content": CSV})
        id = result["datasourceId"]
        note_a, at_a = wait_receipt(a, id)
        note_b, at_b = wait_receipt(b, id)
        assert note_a == note_b and note_b["status"] == "completed" and note_b["rowCount"] == 3
        assert abs(at_b - at_a) < 1.0
        assert all_rows(a, id) == all_rows(b, id)
        assert b.call("datasources/get", {"datasourceId": id}) == a.call("datasources/get", {"datasourceId": id})
        # A cursor signed by one agent is honoured by the other: the store secret is shared.
        page = a.call("datasources/data", {"datasourceId": id, "limit": 1, "sort": "price"})
        rest = b.call("datasources/data", {"datasourceId": id, "limit": 5, "sort": "price", "cursor": page["pagination"]["nextCursor"]})
        assert [r["id"] for r in page["data"] + rest["data"]] == [1, 2, 3]
        assert b.call("datasources/delete", {"datasourceId": id})["datasourceId"] == id
        assert a.error("datasources/get", {"datasourceId": id})["code"] == -31404


def test_concurrent_first_starts_migrate_once(pg_url, pg_cluster):
    """Agents started together on a new database: one creates the schema, the others wait
    for it under the advisory lock; all of them serve."""
    agents = [Agent(pg_url) for _ in range(4)]
    try:
        for agent in agents:
            agent.initialize()
        for agent in agents:
            assert agent.call("datasources/list", {})["pagination"]["total"] == 0
    finally:
        for agent in agents:
            agent.kill()
    db = pg_url.rsplit("/", 1)[1]
    versions = pg_cluster.psql(db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM datasource_agent.schema_migrations")
    # Every migration once, none skipped.
    assert versions == ",".join(str(v) for v in range(1, versions.count(",") + 2)) and versions.count(",") >= 2


def test_listener_reconnects_after_a_server_restart(pg_url, pg_cluster):
    """The server restarts while agents run: they reconnect, and a change committed through
    one afterwards reaches the other."""
    with Agent(pg_url) as a, Agent(pg_url) as b:
        a.initialize()
        b.initialize()
        pg_cluster.restart()
        deadline = time.monotonic() + 20
        while True:
            reply = a.response(a.request("datasources/upload", {"fileName": "after.csv", "content": CSV}), 30)
            if "result" in reply:
                break
            assert reply["error"]["data"]["code"] == "STORAGE_ERROR", reply
            assert time.monotonic() < deadline, reply
            time.sleep(0.2)
        id = reply["result"]["datasourceId"]
        note, _ = wait_receipt(b, id, timeout=30)
        assert note["status"] == "completed"
        assert all_rows(b, id) == all_rows(a, id)


def test_kill_9_mid_processing_is_taken_over_by_another_agent(pg_url, tmp_path):
    """The agent processing an upload dies (kill -9): its lease expires and another agent
    processes the source from the original in the database, once."""
    from conftest import write_big_csv
    path = write_big_csv(tmp_path / "big.csv", 300_000)
    with Agent(pg_url) as survivor:
        survivor.initialize()
        with Agent(pg_url) as victim:
            victim.initialize()
            id = victim.call("datasources/upload", {"path": str(path)})["datasourceId"]
            time.sleep(0.3)
            victim.kill()
        note, _ = wait_receipt(survivor, id, timeout=90)
        assert note["status"] == "completed" and note["rowCount"] == 300_000, note
        page = survivor.call("datasources/data", {"datasourceId": id, "limit": 2, "sort": "id", "order": "desc"})
        assert page["pagination"]["total"] == 300_000 and page["data"][0]["id"] == 299_999


def test_store_url_errors_are_said_at_start():
    """A malformed URL is refused before anything starts (exit 64, the reason on stderr, no
    password); an unreachable server is a clear failure, not a hang."""
    import subprocess
    from agentproc import agent_binary
    bad = subprocess.run([agent_binary(), "--store", "postgres://u:hunter2@localhost/db?sslmode=sometimes"],
                         input=b"", capture_output=True, timeout=30)
    assert bad.returncode == 64 and b"sslmode must be one of" in bad.stderr and b"hunter2" not in bad.stderr
    assert bad.stdout == b""


SALES = "region,amount,day,paid\nnorth,10,2024-01-01,true\nsouth,5.5,2024-01-02,false\nnorth,2,2024-01-03,true\n"


@pytest.fixture
def pg_agent(pg_url):
    with Agent(pg_url) as agent:
        agent.initialize()
        yield agent


def sql_error(agent, params):
    err = agent.error("datasources/query", params)
    assert err["code"] == -32602 and err["data"]["details"]["parameter"] == "sql", err
    return err["data"]["details"]


def test_query_in_postgres_dialect(pg_agent):
    id = upload_and_wait(pg_agent, fileName="sales.csv", content=SALES)[0]["datasourceId"]
    result = pg_agent.call("datasources/query", {
        "sql": f'SELECT region, sum(amount) AS total, max(day) AS last, bool_and(paid) AS all_paid FROM "{id}" '
               "WHERE amount > $1 GROUP BY region ORDER BY region", "params": [1]})
    assert result["columns"] == [{"name": "region", "type": "string"}, {"name": "total", "type": "number"},
                                 {"name": "last", "type": "date"}, {"name": "all_paid", "type": "boolean"}]
    assert result["rows"] == [{"region": "north", "total": 12, "last": "2024-01-03", "all_paid": True},
                              {"region": "south", "total": 5.5, "last": "2024-01-02", "all_paid": False}]
    assert result["rowCount"] == 2 and result["truncated"] is False
    # Aliases, joins, limit.
    joined = pg_agent.call("datasources/query", {
        "sql": "SELECT a.region FROM s a JOIN s b ON a.region = b.region ORDER BY 1", "sources": {"s": id}, "limit": 3})
    assert joined["rowCount"] == 3 and joined["truncated"] is True


def test_query_reads_only_the_named_sources(pg_agent):
    id = upload_and_wait(pg_agent, fileName="sales.csv", content=SALES)[0]["datasourceId"]
    other = upload_and_wait(pg_agent, fileName="other.csv", content=SALES)[0]["datasourceId"]
    assert "only reading" in sql_error(pg_agent, {"sql": "SELECT * FROM datasource_agent.datasources"})["reason"]
    assert "only reading" in sql_error(pg_agent, {"sql": "SELECT * FROM datasource_agent.store_secret"})["reason"]
    assert "not one of the named sources" in sql_error(pg_agent, {"sql": "SELECT relname FROM pg_class"})["reason"]
    reason = sql_error(pg_agent, {"sql": f'SELECT * FROM "{id}", datasource_agent."rows_{other}"'})["reason"]
    assert "not one of the named sources" in reason
    for escape in [f"SELECT set_config('role', 'postgres', true) FROM \"{id}\"",
                   f"SELECT query_to_xml('select * from datasource_agent.datasources', true, true, '')"]:
        assert "is not allowed" in sql_error(pg_agent, {"sql": escape})["reason"]
    for write in [f'DELETE FROM "{id}"', f'SELECT 1; DELETE FROM "{id}"', f'WITH d AS (DELETE FROM "{id}" RETURNING *) SELECT * FROM d']:
        sql_error(pg_agent, {"sql": write})
    assert pg_agent.call("datasources/get", {"datasourceId": id})["rowCount"] == 3
    assert len(all_rows(pg_agent, id)) == 3
    details = sql_error(pg_agent, {"sql": f'SELECT regionn FROM "{id}"'})
    assert "regionn" in details["reason"] and details["offset"] == 7
    assert "no data source" in sql_error(pg_agent, {"sql": 'SELECT * FROM "00000000-0000-4000-8000-000000000000"'})["reason"]
    assert "timed out after 200 ms" in sql_error(pg_agent, {
        "sql": f'SELECT count(*) FROM "{id}", generate_series(1, 100000000)', "timeoutMs": 200})["reason"]
    err = pg_agent.error("datasources/query", {"sql": f'SELECT * FROM "{id}" WHERE region = :r', "params": {"r": "north"}})
    assert err["data"]["details"]["parameter"] == "params"


def test_download_links_are_served_by_any_agent_from_the_database(pg_url, tmp_path):
    """A link made by one agent is served by another agent's listener (the secret is shared),
    streamed from the original's 1 MiB chunks, ranges across chunk boundaries included."""
    import urllib.parse
    import urllib.request
    original = b"id,text\n" + b"".join(b"%d,%s\n" % (i, b"x" * (i % 97)) for i in range(60_000))
    assert len(original) > 3 * (1 << 20)
    path = tmp_path / "big.csv"
    path.write_bytes(original)
    with Agent(pg_url) as a, Agent(pg_url) as b:
        a.initialize()
        b.initialize()
        id = upload_and_wait(a, path=str(path))[0]["datasourceId"]
        link = urllib.parse.urlsplit(a.call("datasources/download", {"datasourceId": id})["downloadUrl"])
        other = urllib.parse.urlsplit(b.call("datasources/download", {"datasourceId": id})["downloadUrl"])
        assert link.netloc != other.netloc
        via_b = link._replace(netloc=other.netloc).geturl()
        with urllib.request.urlopen(via_b, timeout=30) as response:
            assert response.status == 200 and response.read() == original
        start, end = (1 << 20) - 10, 2 * (1 << 20) + 10
        request = urllib.request.Request(via_b, headers={"Range": f"bytes={start}-{end}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 206 and response.read() == original[start:end + 1]


def test_two_agents_and_serve_http_on_one_database(pg_url, tmp_path):
    """Three processes on one database: an upload through the REST face is announced to both
    stdio agents, and all three serve the same rows; an upload through an agent reaches the
    REST face's event stream."""
    import json as jsonlib
    import threading
    import urllib.request
    from restproc import RestServer, http
    with Agent(pg_url) as a, Agent(pg_url) as b, RestServer(pg_url, "--no-auth", port_file=tmp_path / "port") as rest:
        a.initialize()
        b.initialize()
        import requests
        reply = requests.post(rest.base + "/api/v2/datasources", files={"file": ("rest.csv", CSV)}, timeout=30)
        assert reply.status_code == 201, (reply.text, rest.stderr.decode(errors="replace"))
        uploaded = reply.json()
        id = uploaded["datasourceId"]
        for agent in (a, b):
            note, _ = wait_receipt(agent, id)
            assert note["status"] == "completed" and note["rowCount"] == 3
        status, _, page = http("GET", rest.base + f"/api/v2/datasources/{id}/data?limit=10")
        assert status == 200 and page["data"] == all_rows(a, id) == all_rows(b, id)
        # The REST face's event stream hears an upload made through a stdio agent.
        events = []
        def listen():
            with urllib.request.urlopen(rest.base + "/api/v2/events", timeout=30) as stream:
                event = None
                for line in stream:
                    if line.startswith(b"event:"):
                        event = line[6:].strip()
                    elif line.startswith(b"data:") and event == b"statusChanged":
                        events.append(jsonlib.loads(line[5:]))
                        return
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        time.sleep(0.5)
        second = upload_and_wait(a, fileName="second.csv", content=CSV)[0]["datasourceId"]
        listener.join(timeout=20)
        assert events and events[0]["datasourceId"] == second and events[0]["status"] == "completed"


def test_upload_accepted_by_an_agent_whose_client_leaves_is_finished(pg_url, pg_cluster, tmp_path):
    """The client leaves while its upload processes: the agent exits at once, gives the lease
    up, and the process-pending it started takes the work over and completes it, with no
    other agent running."""
    from conftest import write_big_csv
    path = write_big_csv(tmp_path / "big.csv", 200_000)
    db = pg_url.rsplit("/", 1)[1]
    with Agent(pg_url) as agent:
        agent.initialize()
        id = agent.call("datasources/upload", {"path": str(path)})["datasourceId"]
        started = time.monotonic()
        agent.close_stdin()
        assert agent.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
    deadline = time.monotonic() + 120
    while pg_cluster.psql(db, f"SELECT status FROM datasource_agent.datasources WHERE id = '{id}'") != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert pg_cluster.psql(db, f"SELECT row_count FROM datasource_agent.datasources WHERE id = '{id}'") == "200000"


def row_tables(pg_cluster, pg_url):
    db = pg_url.rsplit("/", 1)[1]
    return pg_cluster.psql(
        db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'datasource_agent' AND tablename LIKE 'rows\\_%'")


def test_a_late_value_that_does_not_fit_reloads_the_copy_and_matches_the_local_store(pg_url, pg_cluster, tmp_path):
    """Types come from the first 1,000 rows; `A12` at row 2,500 does not fit `number`, so the
    pipeline loads the whole file again as `string`: on PostgreSQL the first COPY is rolled
    back to its savepoint and the table made again, and the result is the local store's."""
    lines = ["code,n,label"] + [f"{'A12' if i == 2500 else i},{i},\"tab\there, \\\\ back\"" for i in range(3000)]
    csv = "\n".join(lines) + "\n"
    answers = []
    for store in (tmp_path / "store", pg_url):
        with Agent(store) as agent:
            agent.initialize()
            result, note = upload_and_wait(agent, fileName="late.csv", content=csv)
            assert note["status"] == "completed", (note, agent.stderr.decode())
            details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
            for volatile in ("datasourceId", "uploadedAt", "processedAt"):
                details.pop(volatile, None)
            answers.append((details, all_rows(agent, result["datasourceId"])))
    (local, local_rows), (postgres, postgres_rows) = answers
    assert [c["type"] for c in postgres["columns"]] == ["string", "number", "string"]
    assert postgres_rows[2500] == {"code": "A12", "n": 2500, "label": "tab\there, \\\\ back"}
    assert postgres == local
    assert postgres_rows == local_rows
    assert row_tables(pg_cluster, pg_url) == "1"


def test_rows_postgres_refuses_mid_copy_fail_the_source_and_leave_no_table(pg_url, pg_cluster):
    """A NUL character in text (which PostgreSQL's `text` cannot hold) far into the file makes
    the COPY fail after many rows were sent: the source fails in words, its transaction is
    rolled back (no table), and the agent goes on processing the next upload."""
    lines = ["id,label"] + [f"{i},{'bad' + chr(0) + 'value' if i == 40000 else 'label ' + str(i)}" for i in range(50000)]
    with Agent(pg_url) as agent:
        agent.initialize()
        _, note = upload_and_wait(agent, fileName="nul.csv", content="\n".join(lines) + "\n")
        assert note["status"] == "failed", note
        assert note["error"]["message"] == 'the rows could not be stored in PostgreSQL: invalid byte sequence for encoding "UTF8": 0x00'
        assert row_tables(pg_cluster, pg_url) == "0"
        result, note = upload_and_wait(agent, fileName="fine.csv", content=CSV)
        assert note["status"] == "completed", (note, agent.stderr.decode())
        assert row_tables(pg_cluster, pg_url) == "1"


def test_originals_are_stored_with_lz4(pg_url, pg_cluster):
    """Migration 5: an original's chunks are compressed with lz4 (pglz took five times as long)."""
    text = "id,label\n" + "".join(f"{i},a label that repeats {i % 10}\n" for i in range(20000))
    with Agent(pg_url) as agent:
        agent.initialize()
        _, note = upload_and_wait(agent, fileName="o.csv", content=text)
        assert note["status"] == "completed", note
    db = pg_url.rsplit("/", 1)[1]
    assert pg_cluster.psql(db, "SELECT DISTINCT pg_column_compression(bytes) FROM datasource_agent.originals") == "lz4"


def row_index(cluster, db, id):
    """The index on `r` of a source's table, with its definition (empty when there is none)."""
    return cluster.psql(db, f"SELECT indexdef FROM pg_indexes WHERE schemaname = 'datasource_agent' AND indexname = 'rows_{id}_r'")


def wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_row_index_is_built_after_publishing_and_by_the_first_page_where_it_is_missing(pg_url, pg_cluster, tmp_path):
    db = pg_url.rsplit("/", 1)[1]
    big = tmp_path / "rows.csv"
    big.write_text("n,label\n" + "".join(f"{i},label {i}\n" for i in range(3000)))
    with Agent(pg_url) as agent:
        agent.initialize()
        result, note = upload_and_wait(agent, path=str(big))
        assert note["status"] == "completed"
        id = result["datasourceId"]
        # Built after the commit, not inside the load's transaction.
        wait_for(lambda: "CREATE UNIQUE INDEX" in row_index(pg_cluster, db, id))
        assert "(r)" in row_index(pg_cluster, db, id)
    # An agent that died before building it left the table without one: the first page any
    # agent serves builds it, and the pages are the same meanwhile.
    pg_cluster.psql(db, f'DROP INDEX datasource_agent."rows_{id}_r"')
    with Agent(pg_url) as agent:
        agent.initialize()
        rows = all_rows(agent, id)
        assert [r["n"] for r in rows] == list(range(3000))
        wait_for(lambda: "CREATE UNIQUE INDEX" in row_index(pg_cluster, db, id))


def test_more_columns_than_a_postgresql_table_holds_fail_in_words(pg_url, pg_cluster):
    """A local store takes 1,700 columns (SQLite's limit is 2,000); PostgreSQL's tables hold
    1,600: the source fails with PostgreSQL's reason, and no table is left."""
    width = 1700
    content = ",".join(f"k{i}" for i in range(width)) + "\n" + ",".join(str(c) for c in range(width)) + "\n"
    with Agent(pg_url) as agent:
        agent.initialize()
        _, note = upload_and_wait(agent, fileName="wide.csv", content=content)
        assert note["status"] == "failed", note
        assert note["error"]["message"] == "the rows could not be stored in PostgreSQL: tables can have at most 1600 columns"
        assert row_tables(pg_cluster, pg_url) == "0"


def test_an_original_that_cannot_be_stored_fails_the_upload_while_its_processing_runs(pg_url, pg_cluster, tmp_path):
    """The original is stored in one transaction while the pipeline already reads the local
    copy. When that transaction fails after its first chunk (a trigger refuses the second, as a
    full tablespace or a quota would, after a wait in which the rows are loaded), the upload
    answers STORAGE_ERROR in words that name nothing internal, the processing already running publishes nothing and sends nothing, no
    trace of the source is left (its local copy included), and the agent goes on serving uploads."""
    from conftest import write_big_csv
    db = pg_url.rsplit("/", 1)[1]
    big = write_big_csv(tmp_path / "big.csv", 150_000)
    assert big.stat().st_size > 3 << 20
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with Agent(pg_url, args=["--log-level", "info"], env={"TMPDIR": str(scratch)}) as agent:
        agent.initialize()
        pg_cluster.psql(db, """
            CREATE FUNCTION public.refuse_second_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.chunk >= 1 THEN
                    PERFORM pg_sleep(3);
                    RAISE EXCEPTION 'could not extend file: No space left on device';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_second_chunk BEFORE INSERT ON datasource_agent.originals
                FOR EACH ROW EXECUTE FUNCTION public.refuse_second_chunk();""")
        error = agent.error("datasources/upload", {"path": str(big), "workDoneToken": "refused"}, timeout=60)
        assert error["code"] == -31500 and error["data"]["code"] == "STORAGE_ERROR", error
        assert "INSERT" not in error["message"] + str(error["data"]["details"]), error
        # The pipeline had read the whole file while the original was still being stored; its
        # progress ends, and no status change is ever sent for a source that never existed.
        agent.wait_notification("$/progress", lambda p: p["token"] == "refused" and p["value"]["kind"] == "end")
        rows_reported = [int(n["params"]["value"]["message"].split()[0]) for n in agent.notifications
                         if n["method"] == "$/progress" and n["params"]["value"]["kind"] == "report"]
        assert max(rows_reported) >= 147_456, rows_reported
        assert agent.call("datasources/list", {})["pagination"]["total"] == 0
        left = pg_cluster.psql(db, """
            SELECT (SELECT count(*) FROM datasource_agent.datasources)
                 + (SELECT count(*) FROM datasource_agent.originals)
                 + (SELECT count(*) FROM datasource_agent.processing_issues)""")
        assert left == "0"
        assert row_tables(pg_cluster, pg_url) == "0"
        assert [p.name for p in scratch.iterdir()][0].startswith("datasource-agent-pg-")
        assert [p.name for p in scratch.rglob("*") if p.is_file()] == []
        pg_cluster.psql(db, "DROP TRIGGER refuse_second_chunk ON datasource_agent.originals")
        _, note = upload_and_wait(agent, path=str(big))
        assert note["status"] == "completed" and note["rowCount"] == 150_000, note
        assert [n for n in agent.notifications if n["method"] == "datasources/statusChanged"] == []
        assert agent.proc.poll() is None
    log = agent.stderr.decode()
    assert log.count("ended without publishing") == 1, log
