"""XLSX uploads (issue 16): workbooks made with openpyxl, read back through the real agent."""
import datetime as dt
import io
import zipfile

import openpyxl
import pytest

from conftest import all_rows, upload_and_wait


@pytest.fixture
def store(any_store):
    """Both stores: a local directory and a PostgreSQL database (§12)."""
    return any_store


def save(wb, path):
    wb.save(path)
    return str(path)


def load(agent, path, **extra):
    result, note = upload_and_wait(agent, path=str(path), **extra)
    return result, note


def completed(agent, path, **extra):
    result, note = load(agent, path, **extra)
    assert note["status"] == "completed", note
    details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
    return details, all_rows(agent, result["datasourceId"])


def expected_text(value):
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def same(got, want):
    want = expected_text(want)
    if isinstance(want, str) and isinstance(got, str) and "T" in want:
        return got.replace(" ", "T").rstrip("Z").startswith(want)
    if isinstance(want, float):
        return abs(got - want) < 1e-9
    return got == want


def test_mixed_types_empty_cells_and_values_match_openpyxl(agent, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["name", "qty", "price", "ok", "when", "note"])
    rows = [
        ["a & <b>", 1, 1.5, True, dt.date(2024, 1, 15), "x"],
        ["é ü 中", 2, 2.25, False, dt.date(1999, 12, 31), None],
        [None, 3, None, True, dt.date(2000, 2, 29), "z"],
        ["d", 40, 0.1, False, None, "w"],
    ]
    for r in rows:
        ws.append(r)
    for row in ws.iter_rows(min_row=2, min_col=5, max_col=5):
        row[0].number_format = "yyyy-mm-dd"
    path = save(wb, tmp_path / "mixed.xlsx")
    details, got = completed(agent, path)
    names = [c["name"] for c in details["columns"]]
    assert names == ["name", "qty", "price", "ok", "when", "note"]
    kinds = {c["name"]: c["type"] for c in details["columns"]}
    assert kinds["qty"] == "number" and kinds["price"] == "number" and kinds["ok"] == "boolean" and kinds["name"] == "string"
    assert kinds["when"] == "date"
    truth = list(openpyxl.load_workbook(path, read_only=True).active.iter_rows(min_row=2, values_only=True))
    assert len(got) == len(truth)
    for g, t in zip(got, truth):
        for name, want in zip(names, t):
            assert same(g[name], want), (name, g[name], want)


@pytest.mark.parametrize("epoch", ["1900", "1904"])
def test_dates_in_both_date_systems_and_several_formats(agent, tmp_path, epoch):
    wb = openpyxl.Workbook()
    if epoch == "1904":
        wb.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    ws = wb.active
    ws.append(["d1", "d2", "dt", "d3"])
    values = [
        (dt.date(2024, 3, 1), dt.date(1970, 1, 1), dt.datetime(2024, 3, 1, 13, 45, 30), dt.date(2010, 7, 4)),
        (dt.date(1905, 6, 30), dt.date(2038, 1, 19), dt.datetime(1999, 12, 31, 23, 59, 59), dt.date(2024, 2, 29)),
    ]
    for v in values:
        ws.append(list(v))
    for row in ws.iter_rows(min_row=2):
        row[0].number_format = "d-mmm-yy"          # built-in 15
        row[1].number_format = 'dd/mm/yyyy;@'      # custom
        row[2].number_format = "yyyy-mm-dd hh:mm:ss"
        row[3].number_format = '[$-409]mmmm d, yyyy'
    path = save(wb, tmp_path / f"dates{epoch}.xlsx")
    details, got = completed(agent, path)
    kinds = {c["name"]: c["type"] for c in details["columns"]}
    assert kinds["d1"] == "date" and kinds["d2"] == "date" and kinds["d3"] == "date"
    assert kinds["dt"] == "datetime"
    for g, v in zip(got, values):
        assert g["d1"] == v[0].isoformat() and g["d2"] == v[1].isoformat() and g["d3"] == v[3].isoformat()
        assert same(g["dt"], v[2])


def test_sheets_and_options_sheet(agent, tmp_path):
    wb = openpyxl.Workbook()
    first = wb.active
    first.title = "First"
    first.append(["a", "b"])
    first.append([1, 2])
    second = wb.create_sheet("Second sheet")
    second.append(["x", "y", "z"])
    for i in range(5):
        second.append([i, f"s{i}", i * 0.5])
    path = save(wb, tmp_path / "sheets.xlsx")
    _, got = completed(agent, path)
    assert got == [{"a": 1, "b": 2}]
    _, got = completed(agent, path, options={"sheet": "Second sheet"})
    assert len(got) == 5 and got[3] == {"x": 3, "y": "s3", "z": 1.5}
    _, got = completed(agent, path, options={"sheet": "2"})
    assert len(got) == 5
    _, note = load(agent, path, options={"sheet": "Nope"})
    assert note["status"] == "failed" and "Second sheet" in str(note)


def test_merged_header_and_sparse_cells(agent, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"] = "id"
    ws["B1"] = "score"
    ws.merge_cells("B1:C1")
    ws["D1"] = "label"
    ws["A2"], ws["B2"], ws["C2"], ws["D2"] = 1, 10, 11, "p"
    ws["A3"], ws["D3"] = 2, "q"          # B3, C3 empty
    ws["A7"], ws["C7"] = 3, 99           # a gap of rows, a sparse row
    path = save(wb, tmp_path / "merged.xlsx")
    details, got = completed(agent, path)
    names = [c["name"] for c in details["columns"]]
    assert names == ["id", "score", "score_2", "label"]
    assert got[0] == {"id": 1, "score": 10, "score_2": 11, "label": "p"}
    assert got[1] == {"id": 2, "score": None, "score_2": None, "label": "q"}
    assert got[2] == {"id": 3, "score": None, "score_2": 99, "label": None}


def test_xlsx_named_bin_loads(agent, tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(["k", "v"])
    wb.active.append(["one", 1])
    path = tmp_path / "workbook.bin"
    wb.save(path)
    _, got = completed(agent, path)
    assert got == [{"k": "one", "v": 1}]


def test_csv_named_xlsx_is_a_clear_error(agent, tmp_path):
    path = tmp_path / "fake.xlsx"
    path.write_text("a,b\n1,2\n")
    _, note = load(agent, path)
    assert note["status"] == "failed"
    assert "zip" in str(note).lower()


def test_corrupt_zip_fails_cleanly(agent, tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(["a"])
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    path = tmp_path / "corrupt.xlsx"
    path.write_bytes(data[: len(data) // 2])
    _, note = load(agent, path)
    assert note["status"] == "failed" and "zip" in str(note).lower()
    # The agent is still there.
    assert agent.call("datasources/list", {})


def test_zip_bomb_is_refused(agent, tmp_path):
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", '<workbook><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>')
        z.writestr("xl/worksheets/sheet1.xml", b"<worksheet><sheetData>" + b" " * (300 << 20) + b"</sheetData></worksheet>")
    _, note = load(agent, path, timeout=120)
    assert note["status"] == "failed" and "limit" in str(note)


def test_error_cells_become_null_with_a_warning(agent, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["n", "ratio", "lookup"])
    ws.append([1, 0.5, "a"])
    ws.append([2, "#DIV/0!", "#N/A"])      # openpyxl writes these as error cells (t="e")
    ws.append([3, 1.5, "c"])
    path = save(wb, tmp_path / "errors.xlsx")
    with zipfile.ZipFile(path) as z:
        assert 't="e"' in z.read("xl/worksheets/sheet1.xml").decode()
    details, got = completed(agent, path)
    assert [g["ratio"] for g in got] == [0.5, None, 1.5]
    assert [g["lookup"] for g in got] == ["a", None, "c"]
    kinds = {c["name"]: c["type"] for c in details["columns"]}
    assert kinds["ratio"] == "number"
    errors = [i for i in details["issues"] if i["kind"] == "error_cell"]
    assert [(i["column"], i["line"], i["severity"]) for i in errors] == [("ratio", 3, "warning"), ("lookup", 3, "warning")]
    assert "#DIV/0!" in errors[0]["reason"] and "#N/A" in errors[1]["reason"]
    assert details["processingStats"]["warnings"] >= 2


def test_sheets_reported_in_get(agent, tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "Summary"
    wb.active.append(["a"])
    wb.active.append([1])
    data = wb.create_sheet("Data 2024")
    data.append(["x"])
    data.append([2])
    path = save(wb, tmp_path / "named.xlsx")
    details, _ = completed(agent, path)
    assert details["sheets"] == ["Summary", "Data 2024"] and details["sheet"] == "Summary"
    details, got = completed(agent, path, options={"sheet": "2"})
    assert details["sheet"] == "Data 2024" and got == [{"x": 2}]
    # Not a spreadsheet: no sheets in `get`.
    csv = tmp_path / "plain.csv"
    csv.write_text("a,b\n1,2\n")
    details, _ = completed(agent, csv)
    assert "sheets" not in details and "sheet" not in details


def test_custom_date_formats_and_1904_serials_read_from_the_xml(agent, tmp_path):
    """The serials themselves, checked in the sheet's XML: 1904 dates are stored 1,462 days
    below their 1900 serials, and custom formats mark them as dates."""
    wb = openpyxl.Workbook()
    wb.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    ws = wb.active
    ws.append(["when", "at"])
    ws.append([dt.date(2024, 2, 29), dt.datetime(2001, 9, 9, 1, 46, 40)])
    ws["A2"].number_format = "dddd, d mmmm yyyy"
    ws["B2"].number_format = "yy.mm.dd hh:mm"
    path = save(wb, tmp_path / "custom1904.xlsx")
    with zipfile.ZipFile(path) as z:
        assert 'date1904="1"' in z.read("xl/workbook.xml").decode()
        assert "<v>43889</v>" in z.read("xl/worksheets/sheet1.xml").decode()  # 45351 - 1462
    details, got = completed(agent, path)
    assert {c["name"]: c["type"] for c in details["columns"]} == {"when": "date", "at": "datetime"}
    assert got[0]["when"] == "2024-02-29"
    assert same(got[0]["at"], dt.datetime(2001, 9, 9, 1, 46, 40))
