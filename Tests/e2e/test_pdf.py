"""PDF uploads (issue 16): tables drawn with reportlab, rebuilt from the text's positions by the
real agent, and every value compared with what the generator wrote."""
import datetime as dt
import io
import re

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

import pytest

from agentproc import Agent
from conftest import all_rows, upload_and_wait


@pytest.fixture
def store(any_store):
    return any_store

HEADER = ["sku", "product name", "qty", "unit price", "delivered", "note"]


def table_pdf(path, header, rows, title="Supplier price list", footer=True, **doc_options):
    """A document whose table repeats its header on every page (`repeatRows=1`), with a title
    above it and a page-number footer on every page."""

    def page_number(c, doc):
        c.setFont("Helvetica", 8)
        c.drawString(40, 20, f"Page {doc.page} - ACME Supplies confidential")

    cells = [header] + [["" if v is None else str(v) for v in row] for row in rows]
    table = Table(cells, repeatRows=1)
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"), ("GRID", (0, 0), (-1, -1), 0.5, colors.grey)]))
    doc = SimpleDocTemplate(str(path), pagesize=A4, **doc_options)
    story = [Paragraph(title, getSampleStyleSheet()["Title"]), Spacer(1, 12), table]
    hooks = {"onFirstPage": page_number, "onLaterPages": page_number} if footer else {}
    doc.build(story, **hooks)
    return path


def page_count(path):
    return int(re.search(rb"/Count (\d+)", path.read_bytes()).group(1))


def mixed_rows(count):
    """Numbers, dates, text with spaces inside cells, and empty cells."""
    rows = []
    for i in range(1, count + 1):
        rows.append([
            f"SKU-{i:04d}",
            f"Blue widget model {i}" if i % 3 else f"Gear {i}",
            i * 7,
            round(i * 1.25 + 0.5, 2),
            (dt.date(2024, 1, 1) + dt.timedelta(days=i)).isoformat(),
            None if i % 4 == 0 else ("fragile, keep dry" if i % 2 else "ok"),
        ])
    return rows


def completed(agent, path):
    result, note = upload_and_wait(agent, path=str(path))
    assert note["status"] == "completed", note
    details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
    return details, all_rows(agent, result["datasourceId"])


def failed(agent, path):
    result, note = upload_and_wait(agent, path=str(path))
    assert note["status"] == "failed", note
    details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
    assert details["status"] == "failed"
    # Still answering after a PDF that could not be read.
    assert agent.call("datasources/list", {})["pagination"]["total"] >= 1
    return details["error"]["message"]


def expected(value):
    return None if value is None or value == "" else value


def assert_same_table(details, got, rows):
    assert [c["name"] for c in details["columns"]] == HEADER
    kinds = {c["name"]: c["type"] for c in details["columns"]}
    assert kinds == {"sku": "string", "product name": "string", "qty": "number", "unit price": "number",
                     "delivered": "date", "note": "string"}
    assert details["rowCount"] == len(rows) == len(got)
    for g, want in zip(got, rows):
        assert [g[name] for name in HEADER] == [expected(v) for v in want]


def test_mixed_types_and_empty_cells_match_the_generator(agent, tmp_path):
    rows = mixed_rows(12)
    details, got = completed(agent, table_pdf(tmp_path / "prices.pdf", HEADER, rows))
    assert_same_table(details, got, rows)


def test_multi_page_table_joins_once_without_repeated_headers_or_footers(agent, tmp_path):
    rows = mixed_rows(150)
    path = table_pdf(tmp_path / "long.pdf", HEADER, rows)
    assert page_count(path) >= 4
    details, got = completed(agent, path)
    assert_same_table(details, got, rows)
    # Nothing of the title, headers or footers leaked into the rows.
    assert not any("Page" in str(v) or "sku" == v for row in got for v in row.values())


def test_right_aligned_numbers_under_left_aligned_headers(agent, tmp_path):
    rows = [[f"item {i}", i * 1000 + 5, f"{i * 3.5:.2f}"] for i in range(1, 9)]
    cells = [["item", "count", "amount"]] + [[str(v) for v in r] for r in rows]
    table = Table(cells, colWidths=[120, 120, 120])
    table.setStyle(TableStyle([("ALIGN", (1, 1), (-1, -1), "RIGHT")]))
    path = tmp_path / "aligned.pdf"
    SimpleDocTemplate(str(path), pagesize=A4).build([table])
    details, got = completed(agent, path)
    assert [c["name"] for c in details["columns"]] == ["item", "count", "amount"]
    assert [[g["item"], g["count"], g["amount"]] for g in got] == [[r[0], r[1], float(r[2])] for r in rows]


def test_pdf_named_bin_loads_and_csv_named_pdf_is_a_clear_error(agent, tmp_path):
    rows = mixed_rows(3)
    path = table_pdf(tmp_path / "table.bin", HEADER, rows)
    result, note = upload_and_wait(agent, path=str(path))
    assert note["status"] == "completed", note
    assert agent.call("datasources/get", {"datasourceId": result["datasourceId"]})["contentType"] == "application/pdf"
    fake = tmp_path / "fake.pdf"
    fake.write_text("a,b\n1,2\n")
    assert "not a PDF" in failed(agent, fake)


def test_truncated_pdf_fails_cleanly(agent, tmp_path):
    data = table_pdf(tmp_path / "whole.pdf", HEADER, mixed_rows(60)).read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(data[: len(data) * 2 // 3])
    assert "truncated" in failed(agent, path)


def test_encrypted_pdf_fails_cleanly(agent, tmp_path):
    path = table_pdf(tmp_path / "secret.pdf", HEADER, mixed_rows(5), encrypt="s3cret")
    assert b"/Encrypt" in path.read_bytes()
    assert "encrypted" in failed(agent, path)


def test_image_only_pdf_fails_with_no_text_and_no_ocr(agent, tmp_path):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (400, 100), "white")
    ImageDraw.Draw(image).text((10, 40), "sku qty price  SKU-1 3 4.50", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path = tmp_path / "scan.pdf"
    c = canvas.Canvas(str(path), pagesize=A4)
    c.drawImage(ImageReader(io.BytesIO(buffer.getvalue())), 50, 600, width=400, height=100)
    c.showPage()
    c.save()
    message = failed(agent, path)
    assert "no extractable text" in message and "OCR" in message


def test_corrupt_pdf_fails_cleanly_and_quietly(agent, tmp_path):
    path = tmp_path / "corrupt.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 400 + b"\n%%EOF\n")
    assert "damaged" in failed(agent, path)
    # A valid document with bytes overwritten in its first objects (the catalog among them).
    data = bytearray(table_pdf(tmp_path / "whole.pdf", HEADER, mixed_rows(5)).read_bytes())
    data[400:900] = b"\x07" * 500
    path.write_bytes(bytes(data))
    assert "damaged" in failed(agent, path)
    # poppler's diagnostics are silenced (its default prints "poppler/error: ..." lines).
    assert b"poppler" not in bytes(agent.stderr)


def test_pdfs_processed_at_once_on_both_workers(agent, tmp_path):
    # poppler is used from both processing threads at the same time.
    tables = {f"t{i}.pdf": mixed_rows(40 + 20 * i) for i in range(4)}
    ids = {}
    for name, rows in tables.items():
        path = table_pdf(tmp_path / name, HEADER, rows)
        ids[agent.call("datasources/upload", {"path": str(path)})["datasourceId"]] = rows
    for id, rows in ids.items():
        note = agent.wait_notification("datasources/statusChanged", lambda p, id=id: p["datasourceId"] == id, timeout=60)
        assert note["status"] == "completed", note
        assert_same_table(agent.call("datasources/get", {"datasourceId": id}), all_rows(agent, id), rows)


def test_pdf_with_only_an_owner_password_opens(agent, tmp_path):
    from reportlab.lib.pdfencrypt import StandardEncryption

    rows = mixed_rows(4)
    path = table_pdf(tmp_path / "owner.pdf", HEADER, rows, encrypt=StandardEncryption("", ownerPassword="owner", canPrint=1))
    assert b"/Encrypt" in path.read_bytes()
    details, got = completed(agent, path)
    assert_same_table(details, got, rows)


def test_progress_is_reported_while_the_pages_are_read(agent, tmp_path):
    path = table_pdf(tmp_path / "pages.pdf", HEADER, mixed_rows(150))
    reply = agent.response(agent.request("datasources/upload", {"path": str(path), "workDoneToken": "pdf-1"}))
    id = reply["result"]["datasourceId"]
    assert agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=60)["status"] == "completed"
    values = []
    while not values or values[-1]["kind"] != "end":
        values.append(agent.wait_notification("$/progress", lambda p: p["token"] == "pdf-1", timeout=5)["value"])
    percentages = [v["percentage"] for v in values if v["kind"] == "report" and "percentage" in v]
    assert percentages == sorted(percentages)
    # Reading the pages is the first half: reports come from it, page by page.
    assert len([p for p in percentages if 0 < p <= 50]) >= 2, values


def test_a_reader_that_crashes_fails_the_upload_not_the_agent(tmp_path):
    # PDFs are read by a process of the agent's own executable; the debug switch makes that
    # reader die of SIGSEGV, as poppler could on a crafted file.
    with Agent(tmp_path / "store", env={"DATASOURCE_AGENT_DEBUG_PDF_READER": "crash"}) as agent:
        agent.initialize()
        message = failed(agent, table_pdf(tmp_path / "t.pdf", HEADER, mixed_rows(3)))
        assert "the PDF reader stopped on signal" in message
        csv = tmp_path / "after.csv"
        csv.write_text("a,b\n1,2\n")
        result, note = upload_and_wait(agent, path=str(csv))
        assert note["status"] == "completed"
        assert agent.proc.poll() is None
