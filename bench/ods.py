#!/usr/bin/env python3
"""ODS load benchmark (issue 16): the agent's upload → completed of a 100,000-row × 10-column
OpenDocument spreadsheet, with the agent's peak RSS, against odfpy loading the same file and
walking its rows (odfpy builds a DOM; `--no-peer` leaves it out).

The file is written as LibreOffice writes one — value types, repeated empty cells at the end
of each row, and the rest of the sheet as one empty row repeated — straight from XML, since
odfpy itself takes minutes to write 100,000 rows.

    /work/main/.venv/bin/python bench/ods.py [--rows 100000] [--agent .build/release/datasource-agent] [--no-peer]
"""
import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))

# The agent side is the XLSX benchmark's own: one upload timed to its statusChanged, peak RSS.
from xlsx import agent_run  # noqa: E402

MIMETYPE = "application/vnd.oasis.opendocument.spreadsheet"
NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.3"'
)


def make(path: Path, rows: int) -> None:
    def s(v):
        return f'<table:table-cell office:value-type="string"><text:p>{escape(v)}</text:p></table:table-cell>'

    def f(v):
        return f'<table:table-cell office:value-type="float" office:value="{v}"><text:p>{v}</text:p></table:table-cell>'

    def b(v):
        t = "true" if v else "false"
        return f'<table:table-cell office:value-type="boolean" office:boolean-value="{t}"><text:p>{t.upper()}</text:p></table:table-cell>'

    def d(v):
        return f'<table:table-cell office:value-type="date" office:date-value="{v.isoformat()}"><text:p>{v}</text:p></table:table-cell>'

    base = dt.date(2020, 1, 1)
    cities = ["Paris", "Lyon", "Oslo", "Lima", "Kyiv", "Rome"]
    tail = '<table:table-cell table:number-columns-repeated="1014"/></table:table-row>\n'
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                   f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{MIMETYPE}"/>'
                   '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>',
                   compress_type=zipfile.ZIP_DEFLATED)
        content = zipfile.ZipInfo("content.xml", date_time=(2026, 1, 1, 0, 0, 0))
        content.compress_type = zipfile.ZIP_DEFLATED
        with z.open(content, "w", force_zip64=True) as out:
            out.write(f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {NS}><office:body><office:spreadsheet>'
                      '<table:table table:name="data"><table:table-row>'.encode())
            out.write(("".join(s(h) for h in ["id", "name", "qty", "price", "ok", "day", "city", "score", "code", "note"]) + tail).encode())
            chunk = []
            for i in range(rows):
                note = "x" * (i % 20)
                chunk.append("<table:table-row>" + f(i) + s(f"name {i}") + f(i % 1000) + f(round(i * 0.37, 2)) + b(i % 3 == 0)
                             + d(base + dt.timedelta(days=i % 3000)) + s(cities[i % len(cities)]) + f((i * 7919) % 10007 / 7.0)
                             + s(f"C{i:07d}") + (s(note) if note else "<table:table-cell/>") + tail)
                if len(chunk) == 2000:
                    out.write("".join(chunk).encode())
                    chunk = []
            out.write("".join(chunk).encode())
            out.write(f'<table:table-row table:number-rows-repeated="{1048575 - rows}"><table:table-cell table:number-columns-repeated="1024"/>'
                      '</table:table-row></table:table></office:spreadsheet></office:body></office:document-content>'.encode())


def odfpy_run(path: Path) -> tuple[float, float]:
    """odfpy in a child so its peak RSS is its own: (seconds, peak MiB)."""
    code = (
        "import resource,sys,time\n"
        "from odf.opendocument import load\n"
        "from odf.table import Table, TableRow\n"
        "t=time.perf_counter()\n"
        "doc=load(sys.argv[1])\n"
        "n=sum(1 for tb in doc.spreadsheet.getElementsByType(Table) for _ in tb.getElementsByType(TableRow))\n"
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--agent")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.ods"
        make(path, args.rows)
        print(f"spreadsheet: {args.rows} rows × 10 columns, {path.stat().st_size / 2**20:.1f} MiB")
        times, rss_max, count = [], 0.0, -1
        for _ in range(args.rounds):
            s, rss, count = agent_run(path, args.agent)
            times.append(s)
            rss_max = max(rss_max, rss)
        a = sorted(times)[len(times) // 2]
        print(f"agent upload→completed: median {a:.2f} s of {args.rounds}, peak RSS {rss_max:.0f} MiB, rowCount {count}")
        if not args.no_peer:
            p, prss = odfpy_run(path)
            print(f"odfpy load + row walk: {p:.2f} s, peak RSS {prss:.0f} MiB (one round)")
            print(f"speed-up: {p / a:.1f}×")


if __name__ == "__main__":
    main()
