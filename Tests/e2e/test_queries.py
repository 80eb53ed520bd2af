"""datasources/data, list, get, delete (§4, §6, §7), on both stores: a local directory and a
PostgreSQL database (§12); tests about the local store's files say so and run there only."""
import json
import random
import uuid

import pytest

from agentproc import Agent
from conftest import all_rows, upload_and_wait
from schema_check import validate_result

CATALOGUE = """sku,name,category,price,in_stock,released,discount,`unit price`
SKU-001,Widget,Electronics,19.99,true,2023-01-15,,1
SKU-002,Gadget,Electronics,149.50,false,2023-03-01,10,2
SKU-003,München Mug,Kitchen,12.00,true,2022-11-30,NA,3
SKU-004,Big Widget,Electronics,250,true,2024-02-29,5,4
SKU-005,Spoon,Kitchen,-3.5,yes,2021-06-01,,5
SKU-006,O'Brien's Ladle,Kitchen,1e2,no,2020-01-01,0,6
SKU-007,widget pro,Toys,49.99,true,,2.5,7
SKU-008,Puzzle,Toys,19.99,false,2023-01-15,,8
""".replace("`unit price`", "unit price")


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def catalogue(agent):
    result, note = upload_and_wait(agent, fileName="catalogue.csv", content=CATALOGUE)
    assert note["status"] == "completed", note
    return result["datasourceId"]


def skus(page):
    return [r["sku"] for r in page["data"]]


def query(agent, id, **params):
    page = agent.call("datasources/data", {"datasourceId": id, **params})
    validate_result("datasources/data", page)
    return page


def invalid(agent, params):
    err = agent.error("datasources/data", params)
    assert err["code"] == -32602 and err["data"]["code"] == "INVALID_PARAMETERS", err
    return err["data"]["details"]


def test_types_and_values(agent, catalogue):
    page = query(agent, catalogue, limit=1)
    assert page["columns"] == [
        {"name": "sku", "type": "string"}, {"name": "name", "type": "string"}, {"name": "category", "type": "string"},
        {"name": "price", "type": "number"}, {"name": "in_stock", "type": "boolean"}, {"name": "released", "type": "date"},
        {"name": "discount", "type": "number"}, {"name": "unit price", "type": "number"}]
    assert page["data"] == [{"sku": "SKU-001", "name": "Widget", "category": "Electronics", "price": 19.99,
                             "in_stock": True, "released": "2023-01-15", "discount": None, "unit price": 1}]


def test_defaults(agent, catalogue):
    page = query(agent, catalogue)
    assert page["pagination"] == {"page": 1, "limit": 50, "total": 8, "totalPages": 1, "nextCursor": None}
    assert skus(page) == [f"SKU-00{i}" for i in range(1, 9)]


def test_limit_max_1000(agent, catalogue):
    assert query(agent, catalogue, limit=1000)["pagination"]["limit"] == 1000
    details = invalid(agent, {"datasourceId": catalogue, "limit": 1001})
    assert details == {"parameter": "limit", "value": 1001, "reason": "must be at most 1000", "max": 1000}


@pytest.mark.parametrize("params, parameter", [
    ({"page": 0}, "page"), ({"limit": 0}, "limit"), ({"order": "up"}, "order"), ({"sort": "nope"}, "sort"),
    ({"filter": 5}, "filter"), ({"cursor": "garbage"}, "cursor"), ({"sort": 1}, "sort"),
])
def test_rejections(agent, catalogue, params, parameter):
    assert invalid(agent, {"datasourceId": catalogue, **params})["parameter"] == parameter


def test_pages(agent, catalogue):
    page = query(agent, catalogue, limit=3, page=3)
    assert skus(page) == ["SKU-007", "SKU-008"]
    assert page["pagination"] == {"page": 3, "limit": 3, "total": 8, "totalPages": 3, "nextCursor": None}
    assert query(agent, catalogue, limit=3, page=9)["data"] == []


def test_sort_stable_nulls_last(agent, catalogue):
    assert skus(query(agent, catalogue, sort="price")) == ["SKU-005", "SKU-003", "SKU-001", "SKU-008", "SKU-007", "SKU-006", "SKU-002", "SKU-004"]
    assert skus(query(agent, catalogue, sort="price", order="desc")) == ["SKU-004", "SKU-002", "SKU-006", "SKU-007", "SKU-001", "SKU-008", "SKU-003", "SKU-005"]
    # ties (19.99 and 2023-01-15) keep the original order in both directions
    assert skus(query(agent, catalogue, sort="released")) == ["SKU-006", "SKU-005", "SKU-003", "SKU-001", "SKU-008", "SKU-002", "SKU-004", "SKU-007"]
    assert skus(query(agent, catalogue, sort="released", order="desc")) == ["SKU-004", "SKU-002", "SKU-001", "SKU-008", "SKU-003", "SKU-005", "SKU-006", "SKU-007"]
    # nulls last in both directions
    assert skus(query(agent, catalogue, sort="discount"))[-4:] == ["SKU-001", "SKU-003", "SKU-005", "SKU-008"]
    assert skus(query(agent, catalogue, sort="discount", order="desc"))[-4:] == ["SKU-001", "SKU-003", "SKU-005", "SKU-008"]
    assert skus(query(agent, catalogue, sort="unit price", order="DESC"))[0] == "SKU-008"


@pytest.mark.parametrize("expression, expected", [
    ("price > 100", ["SKU-002", "SKU-004"]),
    ("price >= 100", ["SKU-002", "SKU-004", "SKU-006"]),
    ("price < 0", ["SKU-005"]),
    ("price <= -3.5", ["SKU-005"]),
    ("price = 1e2", ["SKU-006"]),
    ("price == 100", ["SKU-006"]),
    ("price != 19.99", ["SKU-002", "SKU-003", "SKU-004", "SKU-005", "SKU-006", "SKU-007"]),
    ("price <> 19.99", ["SKU-002", "SKU-003", "SKU-004", "SKU-005", "SKU-006", "SKU-007"]),
    ("price > -4 AND price < 13", ["SKU-003", "SKU-005"]),
    ("category = 'Electronics' AND (price <= 50 OR in_stock = true)", ["SKU-001", "SKU-004"]),
    ("category = 'Kitchen' OR category = 'Toys' AND price > 40", ["SKU-003", "SKU-005", "SKU-006", "SKU-007"]),
    ("(category = 'Kitchen' OR category = 'Toys') AND price > 40", ["SKU-006", "SKU-007"]),
    ("NOT in_stock", ["SKU-002", "SKU-006", "SKU-008"]),
    ("in_stock", ["SKU-001", "SKU-003", "SKU-004", "SKU-005", "SKU-007"]),
    ("not in_stock = true and category = \"Kitchen\"", ["SKU-006"]),
    ("name CONTAINS 'widget'", ["SKU-001", "SKU-004", "SKU-007"]),
    ("name CONTAINS 'MÜNCHEN'", ["SKU-003"]),
    ("name contains 'o''brien'", ["SKU-006"]),
    ("name CONTAINS \"O'Brien\"", ["SKU-006"]),
    ("sku STARTSWITH 'SKU-00'", [f"SKU-00{i}" for i in range(1, 9)]),
    ("name ENDSWITH 'PRO'", ["SKU-007"]),
    ("category IN ('Kitchen', 'Toys')", ["SKU-003", "SKU-005", "SKU-006", "SKU-007", "SKU-008"]),
    ("category NOT IN ('Kitchen', 'Toys')", ["SKU-001", "SKU-002", "SKU-004"]),
    ("price IN (19.99, 250)", ["SKU-001", "SKU-004", "SKU-008"]),
    ("discount IS NULL", ["SKU-001", "SKU-003", "SKU-005", "SKU-008"]),
    ("discount is not null", ["SKU-002", "SKU-004", "SKU-006", "SKU-007"]),
    ("discount = null", ["SKU-001", "SKU-003", "SKU-005", "SKU-008"]),
    ("released > '2023-01-15'", ["SKU-002", "SKU-004"]),
    ("released = '2023-01-15'", ["SKU-001", "SKU-008"]),
    ("released < '2021-01-01' OR released IS NULL", ["SKU-006", "SKU-007"]),
    ("`unit price` >= 7", ["SKU-007", "SKU-008"]),
    ("NOT (price > 20)", ["SKU-001", "SKU-003", "SKU-005", "SKU-008"]),
    ("NOT discount > 1", ["SKU-006"]),
    ("PRICE > 1" if False else "price > +200", ["SKU-004"]),
])
def test_filters(agent, catalogue, expression, expected):
    page = query(agent, catalogue, filter=expression)
    assert skus(page) == expected, expression
    assert page["pagination"]["total"] == len(expected)


@pytest.mark.parametrize("expression, position, fragment", [
    ("nope > 1", 0, "unknown column"),
    ("price > 'cheap'", 8, "type mismatch"),
    ("name > 5", 7, "type mismatch"),
    ("in_stock > true", 9, "boolean"),
    ("released > 'yesterday'", 11, "type mismatch"),
    ("price >", 7, "expected a value"),
    ("price > 1 AND", 13, "expected a column"),
    ("(price > 1", 10, "expected ')'"),
    ("price > 1)", 9, "unexpected"),
    ("name = 'unterminated", 7, "unterminated"),
    ("price ~ 3", 6, "unexpected character"),
    ("price IN ()", 10, "expected a value"),
    ("name CONTAINS 5", 14, "needs a string"),
    ("price CONTAINS '1'", 6, "text columns"),
    ("name", 4, "only a boolean column"),
    ("price > 1 price < 2", 10, "unexpected"),
    ("`unclosed > 1", 0, "unterminated"),
    ("price > 1.2.3", 8, "invalid number"),
])
def test_filter_errors_carry_position(agent, catalogue, expression, position, fragment):
    details = invalid(agent, {"datasourceId": catalogue, "filter": expression})
    assert details["parameter"] == "filter" and details["filter"] == expression
    assert details["position"] == position, details
    assert fragment in details["reason"], details


def test_filter_limits(agent, catalogue):
    deep = "(" * 100 + "price > 1" + ")" * 100
    assert "nested deeper" in invalid(agent, {"datasourceId": catalogue, "filter": deep})["reason"]
    long = "price > 1 OR " * 400 + "price > 1"
    assert invalid(agent, {"datasourceId": catalogue, "filter": long})["parameter"] == "filter"


@pytest.mark.parametrize("attack", [
    "price > 1; DROP TABLE rows",
    "name = '' OR 1=1 --'",
    "name = 'x'' OR ''1''=''1'",
    "name CONTAINS '%' ",
    "name = \"\\\"; DELETE FROM rows; --\"",
])
def test_injection_through_filter_is_inert(agent, catalogue, attack):
    err = agent.response(agent.request("datasources/data", {"datasourceId": catalogue, "filter": attack}))
    if "result" in err:
        assert err["result"]["pagination"]["total"] < 8 or attack.startswith("name CONTAINS")
    assert query(agent, catalogue)["pagination"]["total"] == 8


def test_contains_percent_and_underscore_are_literal(agent):
    result, _ = upload_and_wait(agent, fileName="p.csv", content="t\n100%\n1000\na_b\naxb\n")
    id = result["datasourceId"]
    assert [r["t"] for r in query(agent, id, filter="t CONTAINS '%'")["data"]] == ["100%"]
    assert [r["t"] for r in query(agent, id, filter="t CONTAINS '_'")["data"]] == ["a_b"]


@pytest.mark.parametrize("attack", ["price; DROP TABLE rows", "c0", "rowid", "price DESC, name", "\"price\""])
def test_injection_through_sort_is_rejected(agent, catalogue, attack):
    assert invalid(agent, {"datasourceId": catalogue, "sort": attack})["parameter"] == "sort"


def test_datetime_filters(agent):
    text = "t,v\n2024-03-14T15:30:00Z,1\n2024-03-14T17:30:00+02:00,2\n2024-03-15T00:00:00Z,3\n2024-03-13 23:59:59,4\n"
    result, _ = upload_and_wait(agent, fileName="t.csv", content=text)
    id = result["datasourceId"]
    assert [r["v"] for r in query(agent, id, filter="t = '2024-03-14T15:30:00Z'")["data"]] == [1, 2]
    assert [r["v"] for r in query(agent, id, filter="t >= '2024-03-14'")["data"]] == [1, 2, 3]
    assert [r["v"] for r in query(agent, id, filter="t < '2024-03-14T16:30:00+01:00'")["data"]] == [4]
    assert [r["v"] for r in query(agent, id, sort="t", order="desc")["data"]] == [3, 1, 2, 4]


def test_exponent_and_negative_literals(agent):
    result, _ = upload_and_wait(agent, fileName="n.csv", content="x\n-1.5e3\n2E-2\n0.5\n-0\n")
    id = result["datasourceId"]
    assert [r["x"] for r in query(agent, id, filter="x < -1e3")["data"]] == [-1500]
    assert [r["x"] for r in query(agent, id, filter="x = 2e-2")["data"]] == [0.02]
    assert [r["x"] for r in query(agent, id, filter="x >= .5")["data"]] == [0.5]


def test_cursor_walk_equals_offset_walk(agent):
    rnd = random.Random(7)
    lines = ["k,v,s"] + [f"{i},{rnd.choice(['', str(rnd.randint(0, 20))])},{rnd.choice(['a', 'b', 'c', ''])}" for i in range(237)]
    result, _ = upload_and_wait(agent, fileName="c.csv", content="\n".join(lines) + "\n")
    id = result["datasourceId"]
    for sort, order, flt in [(None, "asc", None), ("v", "asc", None), ("v", "desc", None), ("s", "desc", "v > 3"), ("s", "asc", "v IS NULL OR s = 'b'")]:
        base = {"datasourceId": id, "limit": 17, "order": order}
        if sort:
            base["sort"] = sort
        if flt:
            base["filter"] = flt
        offset_rows = []
        page_number = 1
        while True:
            page = agent.call("datasources/data", {**base, "page": page_number})
            if not page["data"]:
                break
            offset_rows += page["data"]
            page_number += 1
        cursor_rows = []
        params = dict(base)
        pages = 0
        while True:
            page = agent.call("datasources/data", params)
            cursor_rows += page["data"]
            pages += 1
            assert page["pagination"]["page"] == pages
            if not page["pagination"]["nextCursor"]:
                break
            params["cursor"] = page["pagination"]["nextCursor"]
        assert cursor_rows == offset_rows, (sort, order, flt)
        assert pages == max(1, page["pagination"]["totalPages"])


def test_cursor_is_bound_to_its_query(agent, catalogue):
    page = query(agent, catalogue, limit=2, sort="price")
    cursor = page["pagination"]["nextCursor"]
    assert query(agent, catalogue, limit=2, sort="price", cursor=cursor)["pagination"]["page"] == 2
    for other in [{"sort": "name"}, {"sort": "price", "order": "desc"}, {"sort": "price", "filter": "price > 1"}]:
        assert invalid(agent, {"datasourceId": catalogue, "limit": 2, "cursor": cursor, **other})["parameter"] == "cursor"
    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    assert invalid(agent, {"datasourceId": catalogue, "limit": 2, "sort": "price", "cursor": tampered})["parameter"] == "cursor"
    other_source, _ = upload_and_wait(agent, fileName="o.csv", content=CATALOGUE)
    assert invalid(agent, {"datasourceId": other_source["datasourceId"], "limit": 2, "sort": "price", "cursor": cursor})["parameter"] == "cursor"


def test_list_newest_first_with_filters(agent):
    ids = []
    for i, (name, content) in enumerate([("a.csv", "x\n1\n"), ("b.json", '[{"x":1}]'), ("c.csv", "")]):
        result, note = upload_and_wait(agent, fileName=name, content=content)
        ids.append(result["datasourceId"])
    listing = agent.call("datasources/list")
    validate_result("datasources/list", listing)
    assert [d["datasourceId"] for d in listing["dataSources"]] == ids[::-1]
    assert listing["pagination"] == {"page": 1, "limit": 20, "total": 3, "totalPages": 1}
    assert [d["datasourceId"] for d in agent.call("datasources/list", {"status": "failed"})["dataSources"]] == [ids[2]]
    assert [d["datasourceId"] for d in agent.call("datasources/list", {"contentType": "application/json"})["dataSources"]] == [ids[1]]
    second = agent.call("datasources/list", {"limit": 2, "page": 2})
    assert [d["datasourceId"] for d in second["dataSources"]] == [ids[0]]
    assert second["pagination"]["totalPages"] == 2
    completed = agent.call("datasources/list", {"status": "completed"})["dataSources"][0]
    assert completed["processedAt"].endswith("Z") and completed["uploadedAt"].endswith("Z")


def test_get_validates_against_schema(agent, catalogue):
    details = agent.call("datasources/get", {"datasourceId": catalogue})
    validate_result("datasources/get", details)
    assert details["rowCount"] == 8 and details["processingStats"]["cleanedRows"] == 8
    assert details["columns"][3] == {"name": "price", "type": "number", "sampleValues": [19.99, 149.5, 12]}


def test_uppercase_id_accepted(agent, catalogue):
    assert agent.call("datasources/get", {"datasourceId": catalogue.upper()})["datasourceId"] == catalogue


def test_delete_removes_everything_and_reclaims_space(agent, store, request):
    secret_value = "ZebraSecretValue-" + uuid.uuid4().hex
    result, _ = upload_and_wait(agent, fileName="secret.csv", content=f"name,n\n{secret_value},1\nother,2\n")
    id = result["datasourceId"]
    query(agent, id, sort="name")  # builds an index holding the value too
    receipt = agent.call("datasources/delete", {"datasourceId": id})
    validate_result("datasources/delete", receipt)
    assert receipt["message"] == "Data source deleted successfully" and receipt["datasourceId"] == id
    for method in ["datasources/get", "datasources/data", "datasources/delete", "datasources/download"]:
        assert agent.error(method, {"datasourceId": id})["code"] == -31404
    if isinstance(store, str):
        # PostgreSQL: nothing in the schema names the source or holds its bytes (§12).
        cluster = request.getfixturevalue("pg_cluster")
        db = store.rsplit("/", 1)[1]
        assert cluster.psql(db, f"SELECT count(*) FROM pg_tables WHERE tablename LIKE '%{id}%'") == "0"
        for table in ["datasources", "originals", "processing_issues", "status_changes"]:
            column = "id" if table == "datasources" else "datasource_id"
            assert cluster.psql(db, f"SELECT count(*) FROM datasource_agent.{table} WHERE {column} = '{id}'") == "0", table
        return
    for path in store.rglob("*"):
        if path.is_file():
            assert secret_value.encode() not in path.read_bytes(), path
            assert id not in path.name


def test_delete_unknown(agent):
    id = str(uuid.uuid4())
    err = agent.error("datasources/delete", {"datasourceId": id})
    assert err == {"code": -31404, "message": "Data source not found", "data": {"code": "DATASOURCE_NOT_FOUND", "details": {"datasourceId": id}}}


def test_columns_selects_and_orders_the_returned_columns(agent, catalogue):
    page = query(agent, catalogue, columns=["price", "sku"], sort="released", order="desc", limit=3)
    assert [c["name"] for c in page["columns"]] == ["price", "sku"]
    assert all(list(row) == ["price", "sku"] for row in page["data"])
    full = query(agent, catalogue, sort="released", order="desc", limit=3)
    assert [r["sku"] for r in page["data"]] == [r["sku"] for r in full["data"]]
    # Keyset paging by a column that is not returned walks the same rows.
    narrow = all_rows(agent, catalogue, columns=["sku"], sort="price", limit=3)
    wide = all_rows(agent, catalogue, sort="price", limit=3)
    assert [r["sku"] for r in narrow] == [r["sku"] for r in wide] and all(list(r) == ["sku"] for r in narrow)


@pytest.mark.parametrize("columns, reason", [
    (["nope"], "no such column"),
    (["sku", "sku"], "twice"),
    ([], "at least one"),
])
def test_columns_errors(agent, catalogue, columns, reason):
    details = invalid(agent, {"datasourceId": catalogue, "columns": columns})
    assert details["parameter"] == "columns" and reason in details["reason"]


def test_cold_sort_answers_from_a_scan_and_matches_the_indexed_answer(agent, store, tmp_path):
    if isinstance(store, str):
        pytest.skip("about the local store's sort indexes in its row files")
    import sqlite3
    import time
    from conftest import write_big_csv

    path = write_big_csv(tmp_path / "big.csv", 200_000)
    result, note = upload_and_wait(agent, path=str(path))
    id = result["datasourceId"]
    params = {"datasourceId": id, "sort": "label", "order": "desc", "filter": "flag = true", "limit": 20}
    cold = agent.call("datasources/data", params)
    cold_next = agent.call("datasources/data", {**params, "cursor": cold["pagination"]["nextCursor"]})

    def indexed():
        with sqlite3.connect(f"file:{store / 'tables' / (id + '.sqlite')}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'sort_c2_desc'").fetchone()[0] == 1

    deadline = time.monotonic() + 60
    while not indexed():
        assert time.monotonic() < deadline, "the index was never built"
        time.sleep(0.1)
    warm = agent.call("datasources/data", params)
    assert warm["data"] == cold["data"] and warm["pagination"] == cold["pagination"]
    assert agent.call("datasources/data", {**params, "cursor": warm["pagination"]["nextCursor"]})["data"] == cold_next["data"]


def expected_order(rows, keys):
    """Nulls last for each column in both directions, ties in original order (by id)."""
    import functools

    def compare(a, b):
        for column, direction in keys:
            x, y = a[column], b[column]
            if x is None and y is None:
                continue
            if x is None or y is None:
                return 1 if x is None else -1
            if x != y:
                return (-1 if x < y else 1) * (1 if direction == "asc" else -1)
        return -1 if a["id"] < b["id"] else (1 if a["id"] > b["id"] else 0)

    return sorted(rows, key=functools.cmp_to_key(compare))


@pytest.mark.parametrize("sort, order", [
    ("category,price", "asc"),
    ("category,price", "asc,desc"),
    ("in_stock, released ,price", "desc,asc,desc"),
    ("discount,category", "DESC, ASC"),
])
def test_several_sort_columns_by_page_and_by_cursor(agent, tmp_path, sort, order):
    import random
    rnd = random.Random(7)
    lines = ["id,category,price,in_stock,released,discount"]
    for i in range(1, 301):
        lines.append(",".join([
            str(i), rnd.choice(["Toys", "Books", "Garden", ""]), rnd.choice(["", str(rnd.randint(1, 20))]),
            rnd.choice(["true", "false", ""]), rnd.choice(["", f"2024-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}"]),
            rnd.choice(["", "5", "10"]),
        ]))
    result, note = upload_and_wait(agent, fileName="multi.csv", content="\n".join(lines) + "\n")
    id = result["datasourceId"]
    everything = all_rows(agent, id)
    columns = [c.strip() for c in sort.split(",")]
    directions = [d.strip().lower() for d in order.split(",")]
    keys = list(zip(columns, directions if len(directions) > 1 else directions * len(columns)))
    want = [r["id"] for r in expected_order(everything, keys)]
    by_cursor = [r["id"] for r in all_rows(agent, id, sort=sort, order=order, limit=17)]
    assert by_cursor == want
    by_page = []
    for page in range(1, 100):
        data = query(agent, id, sort=sort, order=order, limit=23, page=page)["data"]
        if not data:
            break
        by_page += [r["id"] for r in data]
    assert by_page == want


@pytest.mark.parametrize("params, parameter, reason", [
    ({"sort": "price,nope"}, "sort", "no such column"),
    ({"sort": "price,price"}, "sort", "twice"),
    ({"sort": "price,"}, "sort", "empty"),
    ({"sort": "price,sku", "order": "asc,desc,asc"}, "order", "one per column"),
    ({"sort": "price", "order": "asc,up"}, "order", "asc or desc"),
])
def test_several_sort_columns_errors(agent, catalogue, params, parameter, reason):
    details = invalid(agent, {"datasourceId": catalogue, **params})
    assert details["parameter"] == parameter and reason in details["reason"], details


def test_a_wide_table_pages_sorts_and_filters_every_column(agent):
    """250 columns: more values per row than one PostgreSQL function call takes (100), so
    the PostgreSQL store reads a row as several arrays; every value must come back in place."""
    width, height = 250, 30
    names = [f"k{i}" for i in range(width)]
    lines = [",".join(names)] + [",".join(str(r * 1000 + c) if c % 3 else f"t{r}-{c}" for c in range(width)) for r in range(height)]
    result, note = upload_and_wait(agent, fileName="wide.csv", content="\n".join(lines) + "\n")
    assert note["status"] == "completed", note
    id = result["datasourceId"]
    expected = [{n: (r * 1000 + c if c % 3 else f"t{r}-{c}") for c, n in enumerate(names)} for r in range(height)]
    assert all_rows(agent, id, limit=7) == expected
    # Sorted by a numeric column past 200, descending, paged by cursor; a filter past 200.
    assert all_rows(agent, id, limit=4, sort="k248", order="desc") == expected[::-1]
    page = agent.call("datasources/data", {"datasourceId": id, "filter": "k205 >= 25205", "columns": ["k0", "k205", "k1"]})
    assert page["data"] == [{"k0": f"t{r}-0", "k205": r * 1000 + 205, "k1": r * 1000 + 1} for r in range(25, 30)]
