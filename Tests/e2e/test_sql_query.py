"""datasources/query (§4): read-only SQL over completed sources, compared with DuckDB on the
same files, and every way out of read-only refused with its exact error.

Every test whose statements mean the same in SQLite's and PostgreSQL's dialects runs on both
stores (SPEC §12); those written in SQLite's dialect (`?` and `:name` parameters, `PRAGMA`,
`printf`, SQLite's own escapes) run on the local store only (`only_on("local")`), and their
PostgreSQL counterparts are in test_postgres_store.py."""
import math

import duckdb
import pytest

from agentproc import Agent
from conftest import only_on, upload_and_wait, write_big_csv
from schema_check import validate_result

PRODUCTS = """sku,category,price,in_stock,released,updated
A1,Toys,10.5,true,2024-01-02,2024-01-02T10:00:00Z
A2,Toys,20,false,2024-02-03,2024-02-03T11:30:00Z
A3,Books,7.25,true,,2024-03-04T12:00:00.123456Z
A4,Books,,true,2023-12-31,
A5,Garden,99.99,false,2024-05-06,2024-05-06T00:00:00Z
"""

ORDERS = """order_id,sku,quantity
1,A1,3
2,A1,1
3,A3,2
4,A9,5
"""


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def sources(agent, tmp_path):
    ids = {}
    for name, content in [("products", PRODUCTS), ("orders", ORDERS)]:
        path = tmp_path / f"{name}.csv"
        path.write_text(content)
        result, note = upload_and_wait(agent, path=str(path))
        assert note["status"] == "completed"
        ids[name] = (result["datasourceId"], path)
    return ids


def query(agent, **params):
    result = agent.call("datasources/query", params)
    validate_result("datasources/query", result)
    assert result["rowCount"] == len(result["rows"])
    return result


def invalid(agent, **params):
    error = agent.error("datasources/query", params)
    assert error["code"] == -32602 and error["data"]["code"] == "INVALID_PARAMETERS", error
    return error["data"]["details"]


def duck(sql, files):
    connection = duckdb.connect()
    for name, path in files.items():
        connection.execute(f"CREATE VIEW {name} AS SELECT * FROM read_csv_auto('{path}')")
    return connection.execute(sql).fetchall()


def same(agent_rows, duck_rows):
    assert len(agent_rows) == len(duck_rows), (agent_rows, duck_rows)
    for got, want in zip(agent_rows, duck_rows):
        got = list(got.values())
        for a, b in zip(got, want):
            if isinstance(a, float) or isinstance(b, float):
                assert (a is None and b is None) or math.isclose(float(a), float(b), rel_tol=1e-9), (got, want)
            else:
                assert a == (b if not hasattr(b, "isoformat") else b.isoformat()), (got, want)


def test_aggregates_match_duckdb(agent, sources):
    products, path = sources["products"]
    result = query(agent, sql=f'SELECT category, count(*) AS n, sum(price) AS total, avg(price) AS mean FROM "{products}" GROUP BY category ORDER BY category')
    assert [c["name"] for c in result["columns"]] == ["category", "n", "total", "mean"]
    assert [c["type"] for c in result["columns"]] == ["string", "number", "number", "number"]
    same(result["rows"], duck("SELECT category, count(*), sum(price), avg(price) FROM p GROUP BY category ORDER BY category", {"p": path}))


def test_join_of_two_sources_with_aliases_matches_duckdb(agent, sources):
    products, ppath = sources["products"]
    orders, opath = sources["orders"]
    sql = "SELECT o.order_id, p.category, o.quantity * p.price AS amount FROM o LEFT JOIN p ON p.sku = o.sku ORDER BY o.order_id"
    result = query(agent, sql=sql, sources={"p": products, "o": orders})
    same(result["rows"], duck(sql, {"p": ppath, "o": opath}))
    assert result["rows"][3]["category"] is None and result["rows"][3]["amount"] is None


@only_on("local")  # `?`/`:name` parameters and date() are SQLite's dialect
def test_nulls_dates_and_typed_values(agent, sources):
    products, path = sources["products"]
    result = query(agent, sql=f'SELECT sku, price, in_stock, released, updated FROM "{products}" WHERE released >= ? ORDER BY released', params=["2024-01-01"])
    assert [c["type"] for c in result["columns"]] == ["string", "number", "boolean", "date", "datetime"]
    assert [r["sku"] for r in result["rows"]] == ["A1", "A2", "A5"]
    assert result["rows"][0] == {"sku": "A1", "price": 10.5, "in_stock": True, "released": "2024-01-02", "updated": "2024-01-02T10:00:00Z"}
    same(query(agent, sql=f'SELECT count(*) FROM "{products}" WHERE price IS NULL OR released IS NULL')["rows"],
         duck("SELECT count(*) FROM p WHERE price IS NULL OR released IS NULL", {"p": path}))
    # Date-times read as ISO text, so SQLite's date functions and string comparisons work on them.
    rows = query(agent, sql=f'SELECT date(updated) AS day FROM "{products}" WHERE updated > \'2024-03-01\' ORDER BY 1')["rows"]
    assert rows == [{"day": "2024-03-04"}, {"day": "2024-05-06"}]
    micro = query(agent, sql=f'SELECT updated FROM "{products}" WHERE sku = :sku', params={"sku": "A3"})["rows"]
    assert micro == [{"updated": "2024-03-04T12:00:00.123456Z"}]


@only_on("postgres")  # the same expectations in PostgreSQL's dialect: `$n` parameters, real dates and timestamps
def test_nulls_dates_and_typed_values_in_postgres_dialect(agent, sources):
    products, path = sources["products"]
    result = query(agent, sql=f'SELECT sku, price, in_stock, released, updated FROM "{products}" WHERE released >= $1::date ORDER BY released', params=["2024-01-01"])
    assert [c["type"] for c in result["columns"]] == ["string", "number", "boolean", "date", "datetime"]
    assert [r["sku"] for r in result["rows"]] == ["A1", "A2", "A5"]
    assert result["rows"][0] == {"sku": "A1", "price": 10.5, "in_stock": True, "released": "2024-01-02", "updated": "2024-01-02T10:00:00Z"}
    same(query(agent, sql=f'SELECT count(*) FROM "{products}" WHERE price IS NULL OR released IS NULL')["rows"],
         duck("SELECT count(*) FROM p WHERE price IS NULL OR released IS NULL", {"p": path}))
    rows = query(agent, sql=f"SELECT updated::date AS day FROM \"{products}\" WHERE updated > '2024-03-01' ORDER BY 1")["rows"]
    assert rows == [{"day": "2024-03-04"}, {"day": "2024-05-06"}]
    micro = query(agent, sql=f'SELECT updated FROM "{products}" WHERE sku = $1', params=["A3"])["rows"]
    assert micro == [{"updated": "2024-03-04T12:00:00.123456Z"}]


def test_limit_truncates(agent, sources):
    products, _ = sources["products"]
    result = query(agent, sql=f'SELECT * FROM "{products}"', limit=2)
    assert result["rowCount"] == 2 and result["truncated"] is True
    assert query(agent, sql=f'SELECT * FROM "{products}"', limit=5)["truncated"] is False


@only_on("local")  # SQLite's escapes; PostgreSQL's are refused in test_postgres_store.py
@pytest.mark.parametrize("sql, fragment", [
    ('DELETE FROM "{p}"', ""),
    ('UPDATE "{p}" SET price = 0', ""),
    ('INSERT INTO "{p}" (sku) VALUES (1)', ""),
    ('DROP VIEW "{p}"', ""),
    ('CREATE TABLE t (x)', ""),
    ("ATTACH DATABASE '/tmp/x.db' AS x", "ATTACH"),
    ("DETACH DATABASE s0", "DETACH"),
    ("PRAGMA table_info('x')", "PRAGMA"),
    ('SELECT 1; DELETE FROM "{p}"', "only one statement"),
    ("SELECT 1; SELECT 2", "only one statement"),
    ("SELECT load_extension('/tmp/x.so')", "load_extension"),
    ("SELECT readfile('/etc/passwd')", "readfile"),
    ("SELECT random()", "random"),
    ("SELECT * FROM sqlite_master", "only the data sources"),
    ('SELECT * FROM s0.issues, "{p}"', "only the data sources"),
    ("BEGIN", ""),
    ("VACUUM", ""),
    ("SELEC 1", "syntax error"),
    ("SELECT * FROM nope", "no such table"),
    ('SELECT nope FROM "{p}"', "no such column"),
])
def test_every_way_out_of_read_only_is_refused(agent, sources, sql, fragment):
    products, _ = sources["products"]
    details = invalid(agent, sql=sql.replace("{p}", products))
    assert details["parameter"] == "sql" and fragment in details["reason"], details


@only_on("local")  # load_extension and the splitting of statements are SQLite's
def test_offsets_point_into_the_statement(agent, sources):
    details = invalid(agent, sql="SELECT 1; SELECT 2")
    assert details["offset"] == 9
    details = invalid(agent, sql="SELECT load_extension('x')")
    assert details["offset"] == 7


def test_runaway_recursion_times_out(agent):
    details = invalid(agent, sql="WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", timeoutMs=200)
    assert details["reason"] == "timed out after 200 ms"


@only_on("local")  # `?` and `:name` parameters are SQLite's dialect
def test_parameter_errors(agent, sources):
    products, _ = sources["products"]
    sql = f'SELECT * FROM "{products}" WHERE price > ?'
    assert invalid(agent, sql=sql)["parameter"] == "params"
    assert invalid(agent, sql=sql, params=[1, 2])["parameter"] == "params"
    assert invalid(agent, sql=f'SELECT * FROM "{products}" WHERE price > :min', params={"max": 1})["parameter"] == "params.min"


def test_limit_timeout_statement_and_sources_are_checked(agent):
    assert invalid(agent, sql="SELECT 1", limit=10001)["max"] == 10000
    assert invalid(agent, sql="SELECT 1", timeoutMs=60001)["max"] == 60000
    assert invalid(agent, sql="   ")["reason"] == "the statement is empty"
    assert invalid(agent, sql="SELECT 1", sources={"p": "not-an-id"})["parameter"] == "sources.p"


def test_unknown_source_and_too_many(agent, sources):
    missing = "550e8400-e29b-41d4-a716-446655440000"
    assert "no data source" in invalid(agent, sql=f'SELECT * FROM "{missing}"')["reason"]
    products, _ = sources["products"]
    many = {f"a{i}": products for i in range(9)}
    assert invalid(agent, sql="SELECT 1", sources=many)["parameter"] == "sources"


def test_a_source_still_processing(agent, tmp_path):
    path = write_big_csv(tmp_path / "big.csv", 400_000)
    id = agent.call("datasources/upload", {"path": str(path)})["datasourceId"]
    error = agent.error("datasources/query", {"sql": f'SELECT count(*) FROM "{id}"'})
    if error["data"]["code"] != "PROCESSING_IN_PROGRESS":
        pytest.skip("processing finished before the query")
    assert error["code"] == -31409
    agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=120)
    assert query(agent, sql=f'SELECT count(*) AS n FROM "{id}"')["rows"] == [{"n": 400_000}]


@only_on("local")  # reads the local store's table files
def test_the_store_is_unchanged_by_any_attempt(agent, sources, store):
    products, _ = sources["products"]
    before = (store / "tables" / f"{products}.sqlite").read_bytes()
    for sql in [f'DELETE FROM "{products}"', "PRAGMA writable_schema = 1", f'SELECT 1; DROP VIEW "{products}"']:
        agent.error("datasources/query", {"sql": sql})
    assert (store / "tables" / f"{products}.sqlite").read_bytes() == before
    assert query(agent, sql=f'SELECT count(*) AS n FROM "{products}"')["rows"] == [{"n": 5}]


def test_sql_query_tool_over_mcp(store, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(PRODUCTS)
    with Agent(store) as agent:
        agent.initialize()
        result, _ = upload_and_wait(agent, path=str(path))
    with Agent(store) as mcp:
        mcp.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        tools = {t["name"]: t for t in mcp.call("tools/list", {})["tools"]}
        assert "sql_query" in tools and tools["sql_query"]["inputSchema"]["required"] == ["sql"]
        reply = mcp.call("tools/call", {"name": "sql_query", "arguments": {"sql": f'SELECT count(*) AS n FROM "{result["datasourceId"]}"'}})
        assert reply["isError"] is False and reply["structuredContent"]["rows"] == [{"n": 5}]
        reply = mcp.call("tools/call", {"name": "sql_query", "arguments": {"sql": "PRAGMA user_version"}})
        assert reply["isError"] is True and "INVALID_PARAMETERS" in reply["content"][0]["text"]


@only_on("local")  # printf() is SQLite's
def test_huge_values_and_results_are_refused_not_fatal(agent):
    # A value past 16 MiB is never built: SQLite answers null or "too big", the agent lives on.
    reply = agent.response(agent.request("datasources/query", {"sql": "SELECT printf('%.*c', 200000000, 'x') AS big"}), timeout=30)
    if "error" in reply:
        assert "too big" in reply["error"]["data"]["details"]["reason"]
    else:
        assert reply["result"]["rows"] == [{"big": None}]
    details = invalid(agent, sql="WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 10) "
                                 "SELECT printf('%.*c', 10000000, 'x') FROM r", limit=10)
    assert "larger than 64 MiB" in details["reason"]
    assert agent.call("ping", {}) == {}


def test_alias_clashes_are_invalid_parameters(agent, sources):
    products, _ = sources["products"]
    orders, _ = sources["orders"]
    details = invalid(agent, sql=f'SELECT * FROM "{orders}"', sources={orders: products})
    assert details["parameter"] == f"sources.{orders}"
    error = agent.error("datasources/query", {"sql": "SELECT 1", "sources": {"sqlite_master": products}})
    assert error["data"]["details"]["parameter"] == "sources"


def test_slow_statements_neither_block_others_nor_outlive_cancellation(agent):
    runaway = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    slow = [agent.request("datasources/query", {"sql": runaway, "timeoutMs": 4000}) for _ in range(3)]
    listed = agent.request("datasources/list", {})
    first = agent.next_message(timeout=10)
    assert first.get("id") == listed and "result" in first, "a slow query held up another request"
    for id in slow:
        agent.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": id}})
    answers = [agent.response(id, timeout=10) for id in slow]
    assert all(a["error"]["code"] == -32800 for a in answers)
    assert query(agent, sql="SELECT 2 AS two")["rows"] == [{"two": 2}]
