"""Load, bounded for CI (issue 18): many requests in flight over stdio, wrk against the REST
face, four agents on one store, and a cheap request that overtakes heavy ones. scripts/load
runs the full-length versions (loadkit.py) and prints the figures RELIABILITY.md records.
No absolute time is asserted: these machines are shared and noisy."""
import shutil
import pytest

import loadkit

pytestmark = pytest.mark.timeout(300)


def assert_memory_bounded(figures, label):
    # The second half of a run holds no more than the first half did, plus slack for caches
    # warming up (SQLite page caches, sort indexes): growth with the request count would show.
    first, second, peak = figures["rss_first_half_peak_mib"], figures["rss_second_half_peak_mib"], figures["rss_peak_mib"]
    assert second <= first * 1.25 + 16, f"{label}: RSS grew from {first} MiB to {second} MiB"
    assert peak < 512, f"{label}: RSS peaked at {peak} MiB"


def assert_answered_once(figures, label):
    assert figures["answered"] == figures["sent"] > 0, figures
    assert figures["duplicates"] == 0 and figures["unknown"] == 0 and figures["unanswered"] == 0, figures
    assert figures["unexpected"] == [], f"{label}: unexpected errors {figures['unexpected']}"
    assert figures["stdout_garbage"] == 0 and figures["exit_code"] == 0, figures


def test_many_requests_in_flight_over_stdio(tmp_path):
    figures = loadkit.stdio_many_in_flight(tmp_path / "store", requests=4_000, in_flight=200)
    assert_answered_once(figures, "stdio")
    assert figures["errors"] == {}, figures
    assert_memory_bounded(figures, "stdio")


def test_four_agents_on_one_store(any_store, request):
    figures = loadkit.many_agents_one_store(any_store, agents=4, seconds=12, window=16)
    for index, agent in enumerate(figures["agents"]):
        assert_answered_once(agent, f"agent {index}")
        assert_memory_bounded(agent, f"agent {index}")
        # Every kind of operation ran on every agent.
        assert set(agent["by_method"]) == {"datasources/upload", "datasources/list", "datasources/get",
                                           "datasources/data", "datasources/delete"}, agent["by_method"]
        # Status changes reach every agent while it is busy (processing may lag behind uploads).
        assert agent["notifications"].get("datasources/statusChanged", 0) >= 10, agent
    assert figures["sources_at_end"] > 0
    assert figures["orphan_files"] == [], "files of deleted sources were left (or recreated) in the store"
    if isinstance(any_store, str):  # PostgreSQL: no table or original outlives its source
        cluster, database = request.getfixturevalue("pg_cluster"), any_store.rsplit("/", 1)[1]
        tables = cluster.psql(database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'datasource_agent' AND tablename LIKE 'rows\\_%' "
                                        "AND substr(tablename, 6) NOT IN (SELECT id FROM datasource_agent.datasources)")
        originals = cluster.psql(database, "SELECT count(*) FROM datasource_agent.originals o WHERE NOT EXISTS "
                                           "(SELECT 1 FROM datasource_agent.datasources d WHERE d.id = o.datasource_id)")
        assert (tables, originals) == ("0", "0"), "tables or originals of deleted sources were left in the database"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (scripts/test installs it)")
def test_wrk_against_the_rest_face(tmp_path):
    figures = loadkit.wrk_rest(tmp_path / "store", seconds=5, connections=32)
    assert figures["wrk_exit"] == 0 and figures["server_alive_after"], figures["wrk_output"]
    assert figures["requests"] > 0, figures["wrk_output"]
    assert figures["non_2xx"] == 0 and figures["socket_errors"] == 0, figures["wrk_output"]
    assert_memory_bounded(figures, "serve-http")


def test_a_cheap_request_overtakes_heavy_ones(tmp_path):
    """A `get` sent behind 200 heavy `data` requests and a batch of 5,000 `list` calls is
    answered before most of the heavy requests and long before the batch. Were requests served
    one at a time, or cheap catalog reads queued behind row reads (as before the store had two
    lanes), the get would come after all 200 heavy answers; were a batch's 5,000 calls all
    queued at once (as before BatchGate), it would wait for nearly all of them (its latency
    was 85-88% of the batch's)."""
    figures = loadkit.cheap_behind_heavy(tmp_path / "store")
    print(figures["report"])
    assert figures["heavy_before_get"] <= 50, figures["report"]
    assert figures["get_under_load_ms"] <= figures["all_heavy_ms"] / 2, figures["report"]
    assert figures["get_under_load_ms"] <= figures["batch_ms"] / 3, figures["report"]
