"""Deletes racing reads (issue 17; protocol/README.md `datasources/data`: "A source deleted while
its page is being read … is DATASOURCE_NOT_FOUND, never a storage error, and its vanished row
file is not recreated"), on both stores: `data`, `query`, download and export of a source that
another agent, or the same agent, deletes while they run. Every answer is the whole correct
result or DATASOURCE_NOT_FOUND (a link: 404, or a body cut short that the client sees is
short), the agents live on, and nothing of the source exists afterwards. (`query` names its
sources in the statement: a source deleted under it is SPEC §4's unknown source,
INVALID_PARAMETERS "no data source <id>", exactly as if it had never existed.)"""
import http.client
import threading
import time
import urllib.error
import urllib.request

import pytest

from agentproc import Agent
from conftest import is_postgres, upload_and_wait, write_big_csv

ROWS = 20_000
NOT_FOUND = -31404


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def big_csv(tmp_path):
    return write_big_csv(tmp_path / "big.csv", ROWS)


def reads(id):
    """(method, params, check of a whole result): pages sorted both ways (which start index
    builds), a filter with its count, and SQL valid in both stores' dialects."""
    return [
        ("datasources/data", {"datasourceId": id, "limit": 1000, "sort": "amount", "order": "desc"},
         lambda r: r["pagination"]["total"] == ROWS and r["data"][0]["id"] == ROWS - 1 and len(r["data"]) == 1000),
        ("datasources/data", {"datasourceId": id, "limit": 500, "sort": "label"},
         lambda r: r["pagination"]["total"] == ROWS and r["data"][0]["label"] == "label 0"),
        ("datasources/data", {"datasourceId": id, "limit": 100, "filter": "flag = true AND id >= 10000"},
         lambda r: r["pagination"]["total"] == 5000 and all(row["flag"] is True for row in r["data"])),
        ("datasources/data", {"datasourceId": id, "page": 15, "limit": 1000},
         lambda r: r["data"][0]["id"] == 14_000 and len(r["data"]) == 1000),
        ("datasources/query", {"sql": f'SELECT count(*) AS n, sum(id) AS s FROM "{id}"'},
         lambda r: r["rows"] == [{"n": ROWS, "s": ROWS * (ROWS - 1) // 2}]),
        ("datasources/query", {"sql": 'SELECT label FROM t WHERE id = 19999', "sources": {"t": id}},
         lambda r: r["rows"] == [{"label": "label 19999"}]),
        ("datasources/get", {"datasourceId": id}, lambda r: r["rowCount"] == ROWS),
    ]


def assert_whole_or_not_found(reply, method, id, check):
    """`query` names its sources in the statement, so SPEC §4 answers a source that does not
    exist (or no longer does) with INVALID_PARAMETERS "no data source <id>"; every other
    method with DATASOURCE_NOT_FOUND."""
    if "error" in reply:
        error = reply["error"]
        if method == "datasources/query":
            assert error["data"]["code"] == "INVALID_PARAMETERS" and error["data"]["details"] == {
                "parameter": "sql", "reason": f"no data source {id}"}, reply
        else:
            assert error["code"] == NOT_FOUND and error["data"]["code"] == "DATASOURCE_NOT_FOUND", reply
        return False
    assert check(reply["result"]), reply
    return True


def fetch_whole_or_not_found(url, expected: bytes, outcomes: list):
    """Appends "whole", "not found" or "cut short" to `outcomes`; anything else fails."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        assert error.code == 404, (error.code, error.read())
        outcomes.append("not found")
        return
    except (http.client.IncompleteRead, ConnectionError):
        outcomes.append("cut short")
        return
    assert body == expected, f"a body of {len(body)} bytes that is not the whole answer ({len(expected)})"
    outcomes.append("whole")


def links(agent, id):
    return [agent.call("datasources/download", {"datasourceId": id})["downloadUrl"],
            agent.call("datasources/export", {"datasourceId": id, "format": "csv", "sort": "amount", "order": "desc"})["downloadUrl"]]


def expected_bodies(agent, path):
    """What a download and an export of a source of `path` answer when nothing deletes it."""
    control = upload_and_wait(agent, path=str(path))[0]["datasourceId"]
    bodies = []
    for url in links(agent, control):
        with urllib.request.urlopen(url, timeout=60) as response:
            bodies.append(response.read())
    assert bodies[0] == path.read_bytes() and bodies[1].count(b"\n") == ROWS + 1
    return bodies


def assert_nothing_left(store, pg_cluster_or_none, id):
    """Nothing of `id` exists, and nothing comes back: checked twice, a second apart, after
    every racing request has been answered."""
    for _ in range(2):
        if is_postgres(store):
            db = str(store).rsplit("/", 1)[1]
            named = pg_cluster_or_none.psql(db, f"""
                SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE 'rows_{id}%')
                     + (SELECT count(*) FROM datasource_agent.datasources WHERE id = '{id}')
                     + (SELECT count(*) FROM datasource_agent.originals WHERE datasource_id = '{id}')
                     + (SELECT count(*) FROM datasource_agent.processing_issues WHERE datasource_id = '{id}')""")
            assert named == "0", f"{named} relations or rows of {id} are left"
        else:
            left = [p.name for p in store.rglob(f"*{id}*")]
            assert left == [], left
        time.sleep(1)


def race(reader, deleter, id, urls, bodies, delay):
    """Sends every read of `id` at once (and starts the link fetches), has `deleter` delete
    `id` after `delay` seconds, and checks every answer."""
    outcomes: list = []
    fetchers = [threading.Thread(target=fetch_whole_or_not_found, args=(url, body, outcomes))
                for url, body in zip(urls, bodies)]
    for fetcher in fetchers:
        fetcher.start()
    pending = [(reader.request(method, params), method, check) for method, params, check in reads(id) * 3]
    time.sleep(delay)
    deleted = deleter.request("datasources/delete", {"datasourceId": id})
    whole = [assert_whole_or_not_found(reader.response(request, 60), method, id, check) for request, method, check in pending]
    assert deleter.response(deleted, 60)["result"]["datasourceId"] == id
    for fetcher in fetchers:
        fetcher.join(timeout=90)
        assert not fetcher.is_alive(), "a link answer never ended"
    assert len(outcomes) == len(urls)
    assert reader.error("datasources/data", {"datasourceId": id})["code"] == NOT_FOUND
    return whole, outcomes


@pytest.mark.parametrize("same_agent", [False, True], ids=["another-agent", "same-agent"])
def test_reads_racing_a_delete(store, request, big_csv, same_agent):
    pg_cluster = request.getfixturevalue("pg_cluster") if is_postgres(store) else None
    with Agent(store) as reader, Agent(store) as other:
        reader.initialize()
        other.initialize()
        deleter = reader if same_agent else other
        bodies = expected_bodies(reader, big_csv)
        seen_whole, seen_not_found = 0, 0
        for delay in (0.0, 0.01, 0.05, 0.15):
            id = upload_and_wait(reader, path=str(big_csv))[0]["datasourceId"]
            whole, outcomes = race(reader, deleter, id, links(reader, id), bodies, delay)
            seen_whole += sum(whole)
            seen_not_found += len(whole) - sum(whole)
            assert_nothing_left(store, pg_cluster, id)
        # The race was a race: some reads finished before the delete and some after it.
        assert seen_not_found > 0, "every read finished before the delete: nothing raced"
        assert reader.proc.poll() is None and other.proc.poll() is None
        assert reader.call("datasources/list", {})["pagination"]["total"] == 1
