"""A corpus of polluted CSV files: one clean product table, then one kind of pollution per
file, each with the table a good loader should produce from it. Shared by
Tests/e2e/test_messy_csv.py (a few files per kind) and bench/csv_quality.py (all of them),
which score a loader's table against the expected one:

- records: precision / recall of the loaded data rows as whole records (a multiset);
- cells: precision / recall of (row, column, value) triples;
- header: whether the column names came out as expected (where the file has a header).

Values are compared as normalised text (numbers by value, booleans lower-case, dates ISO),
so a loader's typing does not count; only structure does."""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

HEADER = ["id", "sku", "name", "category", "price", "quantity", "in_stock", "released", "description"]
NAMES = ["Desk lamp", "Café table", "Office chair", "Bookshelf", "Monitor stand", "Paper tray", "Cable box", "Coat rack",
         "Standing desk", "Filing cabinet", "Wall clock", "Footrest"]
CATEGORIES = ["Furniture", "Lighting", "Storage", "Décor", "Accessories"]
DESCRIPTIONS = [
    "Sturdy, won't let you down.",
    "Bright LED, warm white",
    'The "classic" model, now in oak',
    "Fits A4 and letter",
    "It's compact; easy to move",
    "Solid steel frame",
    "Holds 20 kg, assembly required",
    "Quiet and smooth",
]


def clean_table(rows: int = 24, seed: int = 7) -> list[list[str]]:
    rnd = random.Random(seed)
    table = []
    for i in range(1, rows + 1):
        table.append([
            str(i),
            f"SKU-{1000 + i * 7}",
            NAMES[(i * 5) % len(NAMES)],
            CATEGORIES[i % len(CATEGORIES)],
            f"{rnd.randint(100, 99999) / 100:.2f}",
            str(rnd.randint(0, 300)),
            "true" if rnd.random() < 0.6 else "false",
            f"20{rnd.randint(15, 24)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
            DESCRIPTIONS[(i * 3) % len(DESCRIPTIONS)],
        ])
    return table


def field_text(value: str, delimiter: str, quote: str | None, always: bool = False) -> str:
    if quote is None:
        return value
    needs = always or delimiter in value or quote in value or "\n" in value or "\r" in value \
        or value != value.strip() or (delimiter == " " and " " in value) or (delimiter == ", " and "," in value)
    if not needs:
        return value
    return quote + value.replace(quote, quote + quote) + quote


def render_row(row: list[str], delimiter: str = ",", quote: str | None = '"', always: bool = False) -> str:
    return delimiter.join(field_text(v, delimiter, quote, always) for v in row)


def render(header: list[str] | None, rows: list[list[str]], delimiter: str = ",", quote: str | None = '"',
           line_end: str = "\n") -> str:
    lines = ([render_row(header, delimiter, quote)] if header is not None else []) + [render_row(r, delimiter, quote) for r in rows]
    return line_end.join(lines) + line_end


@dataclass
class Case:
    kind: str
    name: str
    data: bytes
    rows: list[list[str]]
    header: list[str] | None = None  # None: the header is not scored (absent or unrecoverable)
    notes: dict = field(default_factory=dict)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8")


def corpus(per_kind: int | None = None, seed: int = 1, variants: int = 1) -> list[Case]:
    """Every polluted file, made from `variants` clean tables (of 24, 40 and 15 rows, in
    turn); `per_kind` keeps only the first N of each kind."""
    cases: list[Case] = []
    for variant in range(variants):
        table = clean_table(rows=[24, 40, 15][variant % 3], seed=7 + variant)
        _pollute(cases, table, random.Random(seed + variant), "" if variant == 0 else f"-v{variant}")
    if per_kind is not None:
        seen: Counter = Counter()
        kept = []
        for case in cases:
            if seen[case.kind] < per_kind:
                kept.append(case)
                seen[case.kind] += 1
        cases = kept
    return cases


def _pollute(cases: list[Case], table: list[list[str]], rnd: random.Random, suffix: str) -> None:
    def add(kind, name, text_or_bytes, rows=table, header=HEADER, **notes):
        data = text_or_bytes if isinstance(text_or_bytes, bytes) else _utf8(text_or_bytes)
        cases.append(Case(kind, f"{kind}-{name}{suffix}", data, rows, header, notes))

    add("clean", "plain", render(HEADER, table))

    # Delimiters, and `, ` with quoted fields (skipinitialspace).
    for name, delimiter in [("semicolon", ";"), ("tab", "\t"), ("pipe", "|"), ("space", " "), ("comma_space", ", ")]:
        add("delimiter", name, render(HEADER, table, delimiter=delimiter))
    add("delimiter", "comma_space_quote_all", "\n".join(render_row(r, ", ", '"', always=True) for r in [HEADER] + table) + "\n")

    # The single quote as the quote character; and apostrophes in a double-quoted file.
    add("quote_char", "single", render(HEADER, table, quote="'"))
    add("quote_char", "single_semicolon", render(HEADER, table, delimiter=";", quote="'"))
    apostrophes = [r[:8] + [r[8].replace("Sturdy", "Don't worry, it's sturdy")] for r in table]
    add("quote_char", "apostrophes", render(HEADER, apostrophes), rows=apostrophes)
    add("quote_char", "apostrophes_semicolon", render(HEADER, apostrophes, delimiter=";"), rows=apostrophes)

    # The header row polluted: one field more or fewer, a stray quote, another delimiter.
    body = render(None, table)
    for position in [9, 4, 0]:
        header = HEADER[:position] + ["extra"] + HEADER[position:]
        add("header_extra_field", f"at{position}", render_row(header) + "\n" + body, header=None)
    add("header_extra_field", "trailing_delimiter", render_row(HEADER) + ",\n" + body)
    for position in [8, 3, 0]:
        header = HEADER[:position] + HEADER[position + 1:]
        add("header_missing_field", f"at{position}", render_row(header) + "\n" + body, header=None)
    for position in [0, 2, 8]:
        stray = list(HEADER)
        stray[position] = '"' + stray[position]
        add("header_stray_quote", f"start{position}", ",".join(stray) + "\n" + body, header=None)
        stray = list(HEADER)
        stray[position] = stray[position][:2] + '"' + stray[position][2:]
        add("header_stray_quote", f"inside{position}", ",".join(stray) + "\n" + body, header=None)
    for delimiter in [";", "\t", "|"]:
        add("header_other_delimiter", {";": "semicolon", "\t": "tab", "|": "pipe"}[delimiter],
            delimiter.join(HEADER) + "\n" + body)

    # Header only.
    add("header_only", "comma", render(HEADER, []), rows=[])
    add("header_only", "semicolon_crlf", render(HEADER, [], delimiter=";", line_end="\r\n"), rows=[])
    add("header_only", "no_newline", ",".join(HEADER), rows=[])

    # Preambles.
    preambles = [
        ["Product export"],
        ["Product export", "Generated 2024-05-01 by ERP v2.3"],
        ["ACME Corp. — product list", "Prices in EUR, VAT included", ""],
        ["Product export" + "," * 8],
        ["# exported from the shop", "# 24 products", ""],
        ["Report: products", "", "Generated on May 1, 2024", ""],
    ]
    for i, lines in enumerate(preambles):
        add("preamble", f"p{i}", "\n".join(lines) + "\n" + render(HEADER, table))
    add("preamble", "excel_sep", "sep=;\n" + render(HEADER, table, delimiter=";"))
    add("preamble", "quoted_title", '"Products, all stores"\n"As of May 1, 2024"\n' + render(HEADER, table))

    # Two- and three-row headers.
    units = ["", "", "", "", "EUR", "pcs", "", "", ""]
    joined = [h + (f" / {u}" if u else "") for h, u in zip(HEADER, units)]
    add("multirow_header", "two_rows", render_row(HEADER) + "\n" + render_row(units) + "\n" + body, header=joined)
    groups = ["Product", "", "", "", "Stock", "", "", "", "Text"]
    group_names = ["Product"] * 4 + ["Stock"] * 4 + ["Text"]
    joined3 = [f"{g} / {j}" for g, j in zip(group_names, joined)]
    add("multirow_header", "three_rows", render_row(groups) + "\n" + render_row(HEADER) + "\n" + render_row(units) + "\n" + body,
        header=joined3)
    add("multirow_header", "two_rows_semicolon",
        render_row(HEADER, ";") + "\n" + render_row(units, ";") + "\n" + render(None, table, delimiter=";"), header=joined)

    # Several tables in one file: the first is loaded.
    second_header = ["store", "city", "opened"]
    second = [["S1", "Berlin", "2019-04-01"], ["S2", "Paris", "2020-09-15"], ["S3", "Madrid", "2021-01-20"]]
    add("multiple_tables", "blank_line", render(HEADER, table) + "\n" + render(second_header, second))
    add("multiple_tables", "titled", render(HEADER, table) + "\n\nStores\n" + render(second_header, second))
    add("multiple_tables", "same_width", render(HEADER, table) + "\n" + render(HEADER, clean_table(6, seed=99)))
    add("multiple_tables", "summary_table", render(HEADER, table) + "\n" + render(["metric", "value"], [["rows", "24"], ["sum", "1234.5"]]))

    # No header.
    add("no_header", "comma", render(None, table), header=None)
    add("no_header", "semicolon", render(None, table, delimiter=";"), header=None)
    add("no_header", "tab", render(None, table, delimiter="\t"), header=None)

    # One row polluted: an extra delimiter, a missing delimiter, another delimiter.
    for n in range(3):
        r = rnd.randrange(2, len(table) - 2)
        lines = render(HEADER, table).splitlines()
        cells = [field_text(v, ",", '"') for v in table[r]]
        cells[2] = cells[2].replace(" ", ", ", 1) if " " in cells[2] else cells[2] + ","
        lines[r + 1] = ",".join(cells)
        add("row_extra_delimiter", f"r{r}", "\n".join(lines) + "\n")
        lines = render(HEADER, table).splitlines()
        cells = [field_text(v, ",", '"') for v in table[r]]
        cells[3:5] = [cells[3] + cells[4]]
        lines[r + 1] = ",".join(cells)
        add("row_missing_delimiter", f"r{r}", "\n".join(lines) + "\n")
        lines = render(HEADER, table).splitlines()
        lines[r + 1] = render_row(table[r], ";")
        add("row_other_delimiter", f"r{r}", "\n".join(lines) + "\n")

    # A stray quote in one cell.
    for n, (where, column) in enumerate([("inside", 2), ("start", 2), ("end", 3), ("inside", 8)]):
        r = rnd.randrange(2, len(table) - 2)
        lines = render(HEADER, table).splitlines()
        cells = [field_text(v, ",", '"') for v in table[r]]
        value = table[r][column]
        if "," in value or '"' in value:
            column, value = 2, table[r][2]
        cells[column] = {"inside": value[:3] + '"' + value[3:], "start": '"' + value, "end": value + '"'}[where]
        lines[r + 1] = ",".join(cells)
        add("cell_stray_quote", f"{where}{n}", "\n".join(lines) + "\n")

    # Line ends.
    add("line_ends", "crlf", render(HEADER, table, line_end="\r\n"))
    add("line_ends", "cr", render(HEADER, table, line_end="\r"))
    mixed = render(HEADER, table).splitlines()
    add("line_ends", "mixed", "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(mixed)))
    add("line_ends", "no_final_newline", render(HEADER, table).rstrip("\n"))

    # Encodings.
    text = render(HEADER, table)
    add("encoding", "utf8_bom", b"\xef\xbb\xbf" + text.encode("utf-8"))
    add("encoding", "latin1", text.encode("latin-1"))
    add("encoding", "utf16le_bom", text.encode("utf-16"))
    add("encoding", "cp1252_semicolon", render(HEADER, table, delimiter=";").encode("cp1252"))


# ---------------------------------------------------------------- scoring

def norm(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _num(float(value))
    text = str(value).strip()
    try:
        number = float(text)
        if math.isfinite(number) and text.lower() not in ("nan", "inf", "infinity"):
            return _num(number)
    except ValueError:
        pass
    if text in ("True", "False"):
        return text.lower()
    return text


def _num(number: float) -> str:
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(round(number, 9))


@dataclass
class Score:
    record_p: float
    record_r: float
    cell_p: float
    cell_r: float
    header: float | None


def score(case: Case, header: list[str] | None, rows: list[list] | None) -> Score:
    """`rows` None means the loader failed."""
    want_header = [norm(h) for h in case.header] if case.header is not None else None
    if rows is None:
        return Score(0, 0, 0, 0, 0 if want_header is not None else None)
    want = [tuple(norm(v) for v in r) for r in case.rows]
    got = [tuple(norm(v) for v in r) for r in rows]
    if not want:
        p = 1.0 if not got else 0.0
        return Score(p, 1.0, p, 1.0, _header(want_header, header))
    common = sum((Counter(want) & Counter(got)).values())
    record_p = common / len(got) if got else 0.0
    record_r = common / len(want)
    want_cells = {(i, j, v) for i, r in enumerate(want) for j, v in enumerate(r) if v != ""}
    got_cells = {(i, j, v) for i, r in enumerate(got) for j, v in enumerate(r) if v != ""}
    hit = len(want_cells & got_cells)
    cell_p = hit / len(got_cells) if got_cells else 0.0
    cell_r = hit / len(want_cells) if want_cells else 1.0
    return Score(record_p, record_r, cell_p, cell_r, _header(want_header, header))


def _header(want, got):
    if want is None:
        return None
    return 1.0 if got is not None and [norm(h) for h in got] == want else 0.0
