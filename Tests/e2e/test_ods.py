"""ODS uploads (issue 16): OpenDocument spreadsheets made with odfpy, read back through the real
agent and compared with the values the generator wrote."""
import io
import time
import zipfile
from pathlib import Path

from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import CoveredTableCell, Table, TableCell, TableRow
from odf.text import P, S, Span

import pytest

from agentproc import Agent
from conftest import all_rows, upload_and_wait
from restproc import RestServer, create_key


@pytest.fixture
def store(any_store):
    return any_store


def cell(shown=None, /, **attributes):
    """A cell of the given odfpy attributes, showing `shown` as its text (when given)."""
    c = TableCell(**attributes)
    if shown is not None:
        c.addElement(P(text=str(shown)))
    return c


def row(*cells, **attributes):
    r = TableRow(**attributes)
    for c in cells:
        r.addElement(c)
    return r


def sheet(name, *rows):
    t = Table(name=name)
    for r in rows:
        t.addElement(r)
    return t


def save(path, *tables):
    doc = OpenDocumentSpreadsheet()
    for t in tables:
        doc.spreadsheet.addElement(t)
    doc.save(str(path))
    return path


def header(*names):
    return row(*[cell(n, valuetype="string") for n in names])


def completed(agent, path, **extra):
    result, note = upload_and_wait(agent, path=str(path), **extra)
    assert note["status"] == "completed", note
    details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
    return details, all_rows(agent, result["datasourceId"])


def failed(agent, path, **extra):
    _, note = upload_and_wait(agent, path=str(path), **extra)
    assert note["status"] == "failed", note
    return note["error"]["message"]


def test_mixed_types_and_empty_cells_match_the_generator(agent, tmp_path):
    rich = TableCell(valuetype="string")
    p = P(text="two")
    p.addElement(S(c=3))
    p.addElement(Span(text="spaced"))
    rich.addElement(p)
    rich.addElement(P(text="second line"))
    rows = [
        # name, qty, price, share, paid, day, stamp, clock, ok
        ("a & <b>", 1, 1.5, 0.25, 12.5, "2024-01-15", "2024-03-01T13:45:30", "PT13H45M30S", True),
        (None, 2, 2.25, 0.5, 3.0, "1999-12-31", "1999-12-31T23:59:59", "PT00H00M01S", False),
        ("é ü 中", 30, None, 1.0, None, "2000-02-29", "2000-02-29T00:00:00", "PT23H59M59S", True),
    ]
    table_rows = [header("name", "qty", "price", "share", "paid", "day", "stamp", "clock", "ok")]
    for name, qty, price, share, paid, day, stamp, clock, ok in rows:
        table_rows.append(row(
            cell(name, valuetype="string") if name is not None else cell(),
            cell(qty, valuetype="float", value=qty),
            cell(price, valuetype="float", value=price) if price is not None else cell(),
            cell(f"{share:.0%}", valuetype="percentage", value=share),
            cell(f"€{paid}", valuetype="currency", currency="EUR", value=paid) if paid is not None else cell(),
            cell(day, valuetype="date", datevalue=day),
            cell(stamp, valuetype="date", datevalue=stamp),
            cell(clock, valuetype="time", timevalue=clock),
            cell("TRUE" if ok else "FALSE", valuetype="boolean", booleanvalue="true" if ok else "false"),
        ))
    table_rows.append(row(rich, cell(4, valuetype="float", value=4), TableCell(numbercolumnsrepeated=7)))
    path = save(tmp_path / "mixed.ods", sheet("Data", *table_rows))
    details, got = completed(agent, path)
    kinds = {c["name"]: c["type"] for c in details["columns"]}
    assert list(kinds) == ["name", "qty", "price", "share", "paid", "day", "stamp", "clock", "ok"]
    assert kinds == {
        "name": "string", "qty": "number", "price": "number", "share": "number", "paid": "number",
        "day": "date", "stamp": "datetime", "clock": "string", "ok": "boolean",
    }
    assert details["sheets"] == ["Data"] and details["sheet"] == "Data"
    assert len(got) == 4
    for g, (name, qty, price, share, paid, day, stamp, clock, ok) in zip(got, rows):
        assert g["name"] == name and g["qty"] == qty and g["price"] == price
        assert g["share"] == share and g["paid"] == paid and g["ok"] is ok
        assert g["day"] == day
        assert g["stamp"].replace(" ", "T").rstrip("Z").startswith(stamp)
        h, rest = clock[2:].split("H")
        m, s = rest.rstrip("S").split("M")
        assert g["clock"] == f"{int(h):02d}:{int(m):02d}:{int(s):02d}"
    assert got[3]["name"] == "two   spaced\nsecond line"
    assert got[3]["qty"] == 4 and all(got[3][k] is None for k in ["price", "share", "paid", "day", "stamp", "clock", "ok"])


def test_repeated_rows_and_columns(agent, tmp_path):
    path = save(
        tmp_path / "repeated.ods",
        sheet(
            "S",
            header("k", "a", "b", "c"),
            row(cell("x", valuetype="string"), cell(7, valuetype="float", value=7, numbercolumnsrepeated=3)),
            # A row with values repeated: each repeat is a row.
            row(cell("r", valuetype="string"), cell(1, valuetype="float", value=1), TableCell(numbercolumnsrepeated=2),
                numberrowsrepeated=3),
            # Empty rows in the middle, then a sparse row whose value follows repeated empty cells.
            row(TableCell(numbercolumnsrepeated=1024), numberrowsrepeated=2),
            row(cell("z", valuetype="string"), TableCell(numbercolumnsrepeated=2), cell(9, valuetype="float", value=9),
                TableCell(numbercolumnsrepeated=16000)),
            # What LibreOffice writes after the last row: the rest of the sheet, empty.
            row(TableCell(numbercolumnsrepeated=1024), numberrowsrepeated=1048570),
        ),
    )
    started = time.monotonic()
    details, got = completed(agent, path)
    assert time.monotonic() - started < 30
    assert [c["name"] for c in details["columns"]] == ["k", "a", "b", "c"]
    assert details["rowCount"] == 5
    assert got == [
        {"k": "x", "a": 7, "b": 7, "c": 7},
        {"k": "r", "a": 1, "b": None, "c": None},
        {"k": "r", "a": 1, "b": None, "c": None},
        {"k": "r", "a": 1, "b": None, "c": None},
        {"k": "z", "a": None, "b": None, "c": 9},
    ]


def test_several_sheets_options_sheet_and_sheets_in_get(agent, tmp_path):
    path = save(
        tmp_path / "sheets.ods",
        sheet("First", header("a", "b"), row(cell(1, valuetype="float", value=1), cell(2, valuetype="float", value=2))),
        sheet("Second sheet", header("x", "y"), *[
            row(cell(i, valuetype="float", value=i), cell(f"s{i}", valuetype="string")) for i in range(5)
        ]),
        sheet("Empty"),
    )
    details, got = completed(agent, path)
    assert got == [{"a": 1, "b": 2}]
    assert details["sheets"] == ["First", "Second sheet", "Empty"] and details["sheet"] == "First"
    details, got = completed(agent, path, options={"sheet": "Second sheet"})
    assert details["sheet"] == "Second sheet" and got[3] == {"x": 3, "y": "s3"} and len(got) == 5
    details, got = completed(agent, path, options={"sheet": "2"})
    assert details["sheet"] == "Second sheet" and len(got) == 5
    message = failed(agent, path, options={"sheet": "Nope"})
    assert "Second sheet" in message and "Nope" in message
    message = failed(agent, path, options={"sheet": "Empty"})
    assert "Empty" in message and "no values" in message


def test_merged_header_and_covered_cells(agent, tmp_path):
    path = save(
        tmp_path / "merged.ods",
        sheet(
            "M",
            row(cell("id", valuetype="string"), cell("score", valuetype="string", numbercolumnsspanned=2),
                CoveredTableCell(), cell("label", valuetype="string")),
            row(cell(1, valuetype="float", value=1), cell(10, valuetype="float", value=10),
                cell(11, valuetype="float", value=11), cell("p", valuetype="string")),
            row(cell(2, valuetype="float", value=2), TableCell(numbercolumnsrepeated=2), cell("q", valuetype="string", numberrowsspanned=2)),
            # A vertical merge: the covered cell below takes the anchor's value.
            row(cell(3, valuetype="float", value=3), TableCell(numbercolumnsrepeated=2), CoveredTableCell()),
            row(cell(4, valuetype="float", value=4), TableCell(numbercolumnsrepeated=2), CoveredTableCell()),
        ),
    )
    details, got = completed(agent, path)
    assert [c["name"] for c in details["columns"]] == ["id", "score", "score_2", "label"]
    assert got == [
        {"id": 1, "score": 10, "score_2": 11, "label": "p"},
        {"id": 2, "score": None, "score_2": None, "label": "q"},
        {"id": 3, "score": None, "score_2": None, "label": "q"},
        {"id": 4, "score": None, "score_2": None, "label": None},
    ]


def with_error_cells(path):
    """odfpy does not write LibreOffice's `calcext:value-type`; add it to the formula cells, as
    LibreOffice marks a formula whose result is an error (the cell shows `#DIV/0!`)."""
    with zipfile.ZipFile(path) as z:
        parts = {i.filename: z.read(i.filename) for i in z.infolist()}
    content = parts["content.xml"].decode()
    content = content.replace('table:formula="of:=1/0"', 'table:formula="of:=1/0" calcext:value-type="error"')
    content = content.replace(
        "<office:document-content ",
        '<office:document-content xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0" ',
        1)
    parts["content.xml"] = content.encode()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), parts.pop("mimetype"), compress_type=zipfile.ZIP_STORED)
        for name, data in parts.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_error_cells_become_null_with_a_warning(agent, tmp_path):
    path = save(
        tmp_path / "errors.ods",
        sheet(
            "E",
            header("n", "ratio"),
            row(cell(1, valuetype="float", value=1), cell(0.5, valuetype="float", value=0.5)),
            row(cell(2, valuetype="float", value=2), cell("#DIV/0!", valuetype="float", value=0, formula="of:=1/0")),
            row(cell(3, valuetype="float", value=3), cell(1.5, valuetype="float", value=1.5)),
        ),
    )
    with_error_cells(path)
    details, got = completed(agent, path)
    assert [g["ratio"] for g in got] == [0.5, None, 1.5]
    assert details["processingStats"]["warnings"] >= 1
    issue = next(i for i in details["issues"] if i["kind"] == "error_cell")
    assert issue["column"] == "ratio" and issue["line"] == 3 and "#DIV/0!" in issue["reason"]
    assert issue["severity"] == "warning"


def test_no_header_row_is_detected_as_for_csv(agent, tmp_path):
    path = save(tmp_path / "noheader.ods", sheet("N", *[
        row(cell(i, valuetype="float", value=i), cell(i * 2.5, valuetype="float", value=i * 2.5)) for i in range(1, 6)
    ]))
    details, got = completed(agent, path)
    assert [c["name"] for c in details["columns"]] == ["column_1", "column_2"]
    assert got[0] == {"column_1": 1, "column_2": 2.5} and len(got) == 5


def test_ods_named_bin_loads_and_csv_named_ods_is_a_clear_error(agent, tmp_path):
    path = save(tmp_path / "book.ods", sheet("S", header("k", "v"), row(cell("one", valuetype="string"), cell(1, valuetype="float", value=1))))
    renamed = tmp_path / "book.bin"
    path.rename(renamed)
    result, note = upload_and_wait(agent, path=str(renamed))
    assert note["status"] == "completed", note
    assert result["contentType"] == "application/vnd.oasis.opendocument.spreadsheet"
    assert all_rows(agent, result["datasourceId"]) == [{"k": "one", "v": 1}]
    fake = tmp_path / "fake.ods"
    fake.write_text("a,b\n1,2\n")
    message = failed(agent, fake)
    assert "ODS" in message and "zip" in message


def test_corrupt_ods_fails_cleanly(agent, tmp_path):
    path = save(tmp_path / "whole.ods", sheet("S", header("a"), row(cell("x", valuetype="string"))))
    data = path.read_bytes()
    cut = tmp_path / "corrupt.ods"
    cut.write_bytes(data[: len(data) // 2])
    assert "zip" in failed(agent, cut)
    # A zip that is not a spreadsheet at all.
    other = tmp_path / "other.ods"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "hello")
    assert "content.xml" in failed(agent, other)
    assert agent.call("datasources/list", {})


def test_zip_bomb_is_refused(agent, tmp_path):
    path = tmp_path / "bomb.ods"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", b"<office:document-content><office:body><office:spreadsheet><table:table table:name=\"S\">"
                   + b" " * (300 << 20) + b"</table:table></office:spreadsheet></office:body></office:document-content>",
                   compress_type=zipfile.ZIP_DEFLATED)
    path.write_bytes(buf.getvalue())
    assert path.stat().st_size < 1 << 20
    _, note = upload_and_wait(agent, path=str(path), timeout=120)
    assert note["status"] == "failed" and "limit" in note["error"]["message"]
    assert agent.call("datasources/list", {})


def test_hostile_repeat_and_span_counts_are_bounded(agent, tmp_path):
    """Counts an attacker writes (a row repeated 2^63-1 times, spans past any sheet) end at the
    sheet's largest size, 1,048,576 rows, instead of loading forever or overflowing."""
    path = save(
        tmp_path / "hostile.ods",
        sheet(
            "H",
            header("k", "v"),
            row(cell("a", valuetype="string", numberrowsspanned=2**62, numbercolumnsspanned=2**62), CoveredTableCell()),
            row(cell("x", valuetype="string"), cell(1, valuetype="float", value=1), numberrowsrepeated=2**63 - 1),
            row(cell("never", valuetype="string")),
        ),
    )
    result, note = upload_and_wait(agent, path=str(path), timeout=240)
    assert note["status"] == "completed", note
    details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
    assert details["rowCount"] == 1_048_575
    first = agent.call("datasources/data", {"datasourceId": result["datasourceId"], "limit": 3})["data"]
    assert first == [{"k": "a", "v": "a"}, {"k": "x", "v": "1"}, {"k": "x", "v": "1"}]
    last = agent.call("datasources/data", {"datasourceId": result["datasourceId"], "filter": "k = 'never'"})
    assert last["pagination"]["total"] == 0


def test_a_repeat_bomb_fails_at_once(agent, tmp_path):
    """A few hundred bytes can repeat a row of 1,999 values a million times: two billion cells,
    hours of loading. Repeated rows may add at most as many cells as the inflation cap lets
    a sheet written out hold (16.7 million for a small file), so this fails at once, naming
    the row; the million rows of two columns above still load."""
    path = save(
        tmp_path / "repeat-bomb.ods",
        sheet(
            "B",
            header("k", "v"),
            row(cell(1, valuetype="float", value=1, numbercolumnsrepeated=1999), numberrowsrepeated=1_000_000),
        ),
    )
    assert path.stat().st_size < 10_000
    started = time.monotonic()
    message = failed(agent, path, timeout=60)
    assert time.monotonic() - started < 30
    assert "repeats row 2 1000000 times" in message and "repeat bomb" in message, message
    assert agent.call("datasources/list", {})


def test_many_merged_ranges_under_long_covered_runs_load_quickly(agent, tmp_path):
    """Found while bounding FuzzODS's slow input: 1,000 merged ranges and rows of 16,383
    repeated covered cells (a 1 KB file) searched every range for every covered cell, 330
    million comparisons, 267 s in a debug build. Each row now resolves its covered cells once."""
    ranges = "".join(
        '<table:table-cell table:number-rows-spanned="1000000" office:value-type="string"><text:p>a</text:p></table:table-cell>'
        for _ in range(1000))
    covered = ('<table:table-row><table:table-cell office:value-type="string"><text:p>x</text:p></table:table-cell>'
               '<table:covered-table-cell table:number-columns-repeated="16383"/></table:table-row>')
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content'
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:spreadsheet>'
        '<table:table table:name="S"><table:table-row><table:table-cell office:value-type="string"><text:p>k</text:p>'
        '</table:table-cell>' + ranges + '</table:table-row>' + covered * 20
        + '</table:table></office:spreadsheet></office:body></office:document-content>')
    path = tmp_path / "ranges.ods"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content)
    assert path.stat().st_size < 2_000
    started = time.monotonic()
    details, got = completed(agent, path, timeout=60)
    assert time.monotonic() - started < 30
    # No header is detected (every row is text), so the ranges' own row is the first row.
    assert details["rowCount"] == 21 and len(details["columns"]) == 1001
    assert list(got[0].values()) == ["k"] + ["a"] * 1000
    # Every covered cell under a range took the range's value; past the ranges they are empty.
    assert all(list(r.values()) == ["x"] + ["a"] * 1000 for r in got[1:])


def test_a_deflate_stream_that_never_ends_fails_instead_of_hanging(agent, tmp_path):
    """Found by FuzzODS (a 716-byte file, kept as its seed regress-endless-deflate): content.xml's
    deflate stream does not end within the part. ZIPFoundation's inflater on Linux read on past
    the part and then empty chunks at the end of the file forever, so the load never finished;
    parts are now inflated reading no further than their compressed size."""
    path = tmp_path / "endless.ods"
    path.write_bytes((Path(__file__).resolve().parents[2] / "Fuzz/Corpus/FuzzODS/regress-endless-deflate").read_bytes())
    started = time.monotonic()
    message = failed(agent, path, timeout=30)
    assert time.monotonic() - started < 10
    assert message == "the ODS file is corrupt: content.xml ends before its compressed data does"
    assert agent.call("datasources/list", {})


def test_options_sheet_and_sheets_through_the_remote_backend(tmp_path):
    """The remote backend forwards options.sheet and reads `sheets`/`sheet` back from this
    project's REST face (another process, another store)."""
    path = save(
        tmp_path / "remote.ods",
        sheet("One", header("a"), row(cell(1, valuetype="float", value=1))),
        sheet("Two", header("b"), row(cell("two", valuetype="string"))),
    )
    server_store = tmp_path / "server"
    key = create_key(server_store, "write")
    with RestServer(server_store) as server:
        with Agent(tmp_path / "agent", args=["--backend", "remote", "--base-url", server.base + "/api/v2"],
                   env={"CLARO_API_KEY": key}) as agent:
            agent.initialize()
            uploaded = agent.call("datasources/upload", {"path": str(path), "options": {"sheet": "Two"}})
            assert uploaded["contentType"] == "application/vnd.oasis.opendocument.spreadsheet"
            id = uploaded["datasourceId"]
            note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=60)
            assert note["status"] == "completed", note
            details = agent.call("datasources/get", {"datasourceId": id, "maxAge": 0})
            assert details["sheets"] == ["One", "Two"] and details["sheet"] == "Two"
            assert agent.call("datasources/data", {"datasourceId": id})["data"] == [{"b": "two"}]


def test_the_zip_parts_decide_between_ods_and_xlsx(agent, tmp_path):
    """A name that says the other spreadsheet format does not matter: the parts decide."""
    import openpyxl

    ods = save(tmp_path / "really-ods.ods", sheet("S", header("k"), row(cell("from ods", valuetype="string"))))
    named_xlsx = tmp_path / "named.xlsx"
    ods.rename(named_xlsx)
    result, note = upload_and_wait(agent, path=str(named_xlsx))
    assert note["status"] == "completed", note
    assert all_rows(agent, result["datasourceId"]) == [{"k": "from ods"}]
    wb = openpyxl.Workbook()
    wb.active.append(["k"])
    wb.active.append(["from xlsx"])
    named_ods = tmp_path / "named.ods"
    wb.save(named_ods)
    result, note = upload_and_wait(agent, path=str(named_ods))
    assert note["status"] == "completed", note
    assert all_rows(agent, result["datasourceId"]) == [{"k": "from xlsx"}]


def test_password_protected_files_fail_with_a_clear_message(agent, tmp_path):
    # ODF encrypts the parts and lists how in its manifest.
    locked = tmp_path / "locked.ods"
    with zipfile.ZipFile(locked, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", bytes(range(256)) * 64)
        z.writestr("META-INF/manifest.xml",
                   '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                   '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
                   '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="AAAA"/>'
                   '</manifest:file-entry></manifest:manifest>')
    message = failed(agent, locked)
    assert "password-protected" in message
    # Office writes a protected workbook as an OLE compound file, whatever its name.
    ole = tmp_path / "locked.xlsx"
    ole.write_bytes(bytes([0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) + bytes(4096))
    message = failed(agent, ole)
    assert "OLE" in message and "password" in message
