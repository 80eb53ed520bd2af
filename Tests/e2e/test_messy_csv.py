"""Messy real-world CSV (issue 10): structure from the data rows, header repairs, preambles,
multi-row headers, second tables, dialect corner cases, and the cleaning report."""
import random

import pytest

import csv_corpus
from conftest import all_rows, upload_and_wait
from schema_check import validate_result


@pytest.fixture
def store(any_store):
    """Both stores: a local directory and a PostgreSQL database (§12)."""
    return any_store


EXACT_KINDS = {
    "clean", "delimiter", "quote_char", "header_extra_field", "header_missing_field", "header_stray_quote",
    "header_other_delimiter", "header_only", "preamble", "multirow_header", "multiple_tables", "no_header",
    "line_ends", "encoding",
}
SUBSET = csv_corpus.corpus(per_kind=3)


def load(agent, name, data, **extra):
    result, note = upload_and_wait(agent, fileName=name, content=__import__("base64").b64encode(data).decode(),
                                   encoding="base64", **extra)
    details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
    rows = all_rows(agent, result["datasourceId"]) if note["status"] == "completed" else None
    return note, details, rows


def completed(agent, text, name="t.csv", **extra):
    note, details, rows = load(agent, name, text.encode() if isinstance(text, str) else text, **extra)
    assert note["status"] == "completed", note
    return details, rows


def names(details):
    return [c["name"] for c in details["columns"]]


def kinds(details):
    return {i["kind"] for i in details["issues"]}


@pytest.mark.parametrize("case", SUBSET, ids=[c.name for c in SUBSET])
def test_corpus_structure(agent, case):
    note, details, rows = load(agent, case.name + ".csv", case.data)
    assert note["status"] == "completed", note
    header = names(details)
    got = [[r[n] for n in header] for r in rows]
    s = csv_corpus.score(case, header, got)
    if case.kind in EXACT_KINDS:
        assert (s.record_p, s.record_r, s.cell_p, s.cell_r) == (1, 1, 1, 1), (case.name, s, header, got[:3])
        assert s.header in (None, 1.0), (case.name, header)
        assert len(header) == len(csv_corpus.HEADER)
    else:
        # One polluted row: every other row comes out whole.
        n = len(case.rows)
        assert s.record_r >= (n - 1) / n and s.record_p >= (n - 1) / n, (case.name, s)


def test_header_only_completes_with_columns(agent):
    details, rows = completed(agent, "id,name,price\n")
    assert details["rowCount"] == 0 and rows == []
    assert [(c["name"], c["type"]) for c in details["columns"]] == [("id", "string"), ("name", "string"), ("price", "string")]


def test_empty_file_fails(agent):
    note, details, _ = load(agent, "empty.csv", b"")
    assert note["status"] == "failed" and "empty" in note["error"]["message"]


def test_space_delimiter(agent):
    details, rows = completed(agent, 'id name price\n1 "Desk lamp" 9.99\n2 Chair 45\n3 "Big table" 120.5\n')
    assert names(details) == ["id", "name", "price"]
    assert rows[0] == {"id": 1, "name": "Desk lamp", "price": 9.99}


def test_comma_space_with_quotes(agent):
    details, rows = completed(agent, 'id, name, note\n1, "Lamp, large", "say ""hi"""\n2, "Chair", plain\n')
    assert names(details) == ["id", "name", "note"]
    assert rows[0] == {"id": 1, "name": "Lamp, large", "note": 'say "hi"'}
    assert rows[1]["name"] == "Chair"


def test_apostrophe_is_not_a_quote(agent):
    text = ('id,name,description\n1,Lamp,"Sturdy, won\'t let you down."\n2,Chair,It\'s fine\n'
            '3,Desk,"Don\'t, ever"\n4,Shelf,plain\n')
    details, rows = completed(agent, text)
    assert [r["description"] for r in rows] == ["Sturdy, won't let you down.", "It's fine", "Don't, ever", "plain"]


def test_single_quote_files_still_read(agent):
    details, rows = completed(agent, "id,name\n1,'Lamp, large'\n2,'Chair, small'\n3,'Desk, oak'\n")
    assert [r["name"] for r in rows] == ["Lamp, large", "Chair, small", "Desk, oak"]


@pytest.mark.parametrize("header, want", [
    ("id,name,price,extra", ["id", "name", "price extra"]),
    ("id,name", ["id", "name", "column_3"]),
])
def test_polluted_header_width_follows_the_rows(agent, header, want):
    text = header + '\n1,"Lamp, large",9.99\n2,"Chair, ""small""",45\n3,Desk,120\n'
    details, rows = completed(agent, text)
    assert names(details) == want
    assert rows[0][want[1]] == "Lamp, large" and rows[1][want[1]] == 'Chair, "small"'
    assert "header_repaired" in kinds(details)


def test_header_in_another_delimiter(agent):
    details, rows = completed(agent, 'id;name;price\n1,"Lamp, large",9.99\n2,Chair,45\n')
    assert names(details) == ["id", "name", "price"] and rows[0]["name"] == "Lamp, large"
    assert "header_repaired" in kinds(details)


def test_preamble_skipped_with_a_warning(agent):
    text = "Product export\nGenerated 2024-05-01, by the ERP\n\nid,name,price\n1,Lamp,9.99\n2,Chair,45\n3,Desk,120\n"
    details, rows = completed(agent, text)
    assert names(details) == ["id", "name", "price"] and len(rows) == 3
    issue = next(i for i in details["issues"] if i["kind"] == "preamble_skipped")
    assert issue["severity"] == "warning" and issue["line"] == 1
    # Issues keep the file's own line numbers.
    text2 = text.replace("2,Chair,45", "2,Chair,45,extra")
    details, _ = completed(agent, text2)
    assert any(i["kind"] == "extra_fields" and i["line"] == 6 for i in details["issues"])


def test_two_row_header_joined(agent):
    text = "id,name,Price,Price\n,,EUR,USD\n1,Lamp,9.99,10.5\n2,Chair,45,48\n3,Desk,120,130\n"
    details, rows = completed(agent, text)
    assert names(details) == ["id", "name", "Price / EUR", "Price / USD"]
    assert rows[0] == {"id": 1, "name": "Lamp", "Price / EUR": 9.99, "Price / USD": 10.5}


def test_second_table_after_blank_line(agent):
    text = "id,name,price\n1,Lamp,9.99\n2,Chair,45\n3,Desk,120\n\nstore,city\nS1,Berlin\n"
    details, rows = completed(agent, text)
    assert len(rows) == 3 and names(details) == ["id", "name", "price"]
    issue = next(i for i in details["issues"] if i["kind"] == "second_table")
    assert issue["line"] == 6 and "line 6" in issue["reason"]


def test_cleaning_report_in_get(agent):
    text = "sku,price,when,ok\nA,$74.69,31/01/2024,yes\nB,\"$1,200.00\",03/04/2024,no\nC, $5 ,N/A,yes\n"
    details, rows = completed(agent, text)
    validate_result("datasources/get", details)
    columns = {c["name"]: c for c in details["columns"]}
    price = {n["rule"]: n for n in columns["price"]["cleaning"]}
    assert price["currencySymbolRemoved"]["count"] == 3
    assert price["currencySymbolRemoved"]["example"] == {"from": "$74.69", "to": 74.69}
    assert price["thousandsSeparatorRemoved"]["count"] == 1
    assert price["whitespaceTrimmed"]["count"] == 1
    when = {n["rule"]: n for n in columns["when"]["cleaning"]}
    assert when["dateOrderAssumed"]["detail"] == "DD/MM/YYYY" and when["dateOrderAssumed"]["count"] == 2
    assert when["nullTokenReplaced"]["count"] == 1
    assert {n["rule"] for n in columns["ok"]["cleaning"]} == {"booleanNormalized"}
    assert "cleaning" not in columns["sku"]
    assert [r["when"] for r in rows] == ["2024-01-31", "2024-04-03", None]


def test_ambiguous_dates_decided_per_column(agent):
    # Column a: 13/02 settles DD/MM for the whole column; b: 02/13 settles MM/DD;
    # c: every value ambiguous, so it stays text (never decided per cell).
    text = "a,b,c\n03/04/2024,04/03/2024,03/04/2024\n13/02/2024,02/13/2024,05/06/2024\n"
    details, rows = completed(agent, text)
    types = {c["name"]: c["type"] for c in details["columns"]}
    assert types == {"a": "date", "b": "date", "c": "string"}
    assert rows[0]["a"] == "2024-04-03" and rows[0]["b"] == "2024-04-03" and rows[0]["c"] == "03/04/2024"
    detail = {c["name"]: [n.get("detail") for n in c.get("cleaning", []) if n["rule"] == "dateOrderAssumed"] for c in details["columns"]}
    assert detail == {"a": ["DD/MM/YYYY"], "b": ["MM/DD/YYYY"], "c": []}


def test_clean_false_keeps_values_as_written(agent):
    text = "sku,price,qty,when,ok,note\nA,$74.69,3,2024-01-31,true, padded \nB,12.5,NA,2024-02-01,false,N/A\n"
    details, rows = completed(agent, text, options={"clean": False})
    types = {c["name"]: c["type"] for c in details["columns"]}
    assert types == {"sku": "string", "price": "string", "qty": "string", "when": "date", "ok": "boolean", "note": "string"}
    assert rows[0]["price"] == "$74.69" and rows[1]["qty"] == "NA" and rows[0]["note"] == " padded "
    assert rows[1]["note"] == "N/A"
    assert all("cleaning" not in c for c in details["columns"])
    # Canonical numbers still become numbers.
    details, rows = completed(agent, "a,b\n1,2.5\n3,4\n", options={"clean": False})
    assert rows[0] == {"a": 1, "b": 2.5}


def test_clean_false_rejects_non_boolean(agent):
    err = agent.error("datasources/upload", {"fileName": "a.csv", "content": "x", "options": {"clean": "no"}})
    assert err["data"]["details"]["parameter"] == "options.clean"


def test_mangled_files_never_crash_or_hang(agent):
    """Corpus files with random bytes inserted, deleted or replaced (quotes, delimiters, line
    ends, NUL, high bytes) each complete or fail, and the agent keeps answering."""
    rnd = random.Random(10)
    alphabet = [b'"', b"'", b",", b";", b"\t", b"\n", b"\r", b" ", b"\x00", b"\xff", b"\xc3", b"\n\n", b'""']
    cases = csv_corpus.corpus(per_kind=1)
    for n in range(40):
        data = bytearray(rnd.choice(cases).data)
        for _ in range(rnd.randint(1, 12)):
            at = rnd.randrange(len(data) + 1)
            op = rnd.random()
            if op < 0.5:
                data[at:at] = rnd.choice(alphabet)
            elif op < 0.8:
                del data[at:at + rnd.randint(1, 20)]
            else:
                data[at:at + 1] = rnd.choice(alphabet)
        note, details, rows = load(agent, f"m{n}.csv", bytes(data))
        assert note["status"] in ("completed", "failed"), note
        if note["status"] == "completed":
            assert details["rowCount"] == len(rows)
    assert agent.call("datasources/list", {"limit": 1})["pagination"]["total"] == 40


def test_blank_line_inside_a_table_is_not_a_second_table(agent):
    text = "id,name,price\n1,Lamp,9.99\n2,Chair,45\n\n3,Desk\n4,Shelf,12\n"
    details, rows = completed(agent, text)
    assert [r["id"] for r in rows] == [1, 2, 3, 4] and rows[2]["price"] is None
    assert "second_table" not in kinds(details)


def test_sparse_first_row_is_data_not_a_preamble(agent):
    details, rows = completed(agent, "7,,,\n1,Lamp,9.99,true\n2,Chair,45,false\n3,Desk,12,true\n", options={"header": False})
    assert len(rows) == 4 and rows[0]["column_1"] == 7


def test_single_data_row_with_text_in_a_number_column_is_not_a_header_row(agent):
    details, rows = completed(agent, "name,price,qty\nLamp,call us,on request\nChair,45,3\nDesk,12,1\nShelf,8,2\n")
    assert names(details) == ["name", "price", "qty"] and len(rows) == 4


@pytest.mark.parametrize("tail", ['4,Shelf,8\n5,"Rack, wide",9\n', "4,Shelf,8\n5,Rack,9\n"])
def test_stray_quote_in_a_cell_does_not_swallow_rows(agent, tail):
    # The quote before Desk never closes on its line: with a quote further down the file the
    # field would run into it, without one to the end of the file.
    text = 'id,name,price\n1,Lamp,9.99\n2,Chair,45\n3,"Desk,12\n' + tail
    details, rows = completed(agent, text)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[2] == {"id": 3, "name": "Desk", "price": 12}
    assert rows[4]["name"] in ("Rack, wide", "Rack")
    issue = next(i for i in details["issues"] if i["kind"] == "stray_quote")
    assert issue["line"] == 4 and issue["severity"] == "warning"


def test_quoted_newlines_still_read_whole(agent):
    details, rows = completed(agent, 'id,note,price\n1,"two\nlines",9.99\n2,"a, b\nc",45\n3,plain,1\n')
    assert [r["note"] for r in rows] == ["two\nlines", "a, b\nc", "plain"]
    assert "stray_quote" not in kinds(details)


@pytest.mark.parametrize("name, content", [("blank.csv", b"\n\n  \n"), ("empty.json", b"[]"), ("obj.json", b"[{}]")])
def test_nothing_to_load_fails_clearly(agent, name, content):
    note, details, _ = load(agent, name, content)
    assert note["status"] == "failed" and note["error"]["message"]
