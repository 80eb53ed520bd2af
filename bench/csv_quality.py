"""Scores the agent's CSV loading against DuckDB's read_csv_auto on the polluted corpus of
Tests/e2e/csv_corpus.py: per kind of pollution, record- and cell-level precision and recall
(and header accuracy) against the expected tables, averaged over the files of the kind;
then overall (mean over all files). Prints a Markdown table and writes it into
bench/RESULTS.md under "CSV loading quality".

Usage: python bench/csv_quality.py [--per-kind N] [--no-write]"""
import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))

import csv_corpus  # noqa: E402
from agentproc import Agent  # noqa: E402

SECTION = "## CSV loading quality"


def agent_load(agent, path):
    result = agent.call("datasources/upload", {"path": str(path), "contentType": "text/csv"})
    sid = result["datasourceId"]
    agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == sid, timeout=60)
    details = agent.call("datasources/get", {"datasourceId": sid})
    if details["status"] != "completed":
        return None, None
    names = [c["name"] for c in details["columns"]]
    rows, page = [], 1
    while True:
        data = agent.call("datasources/data", {"datasourceId": sid, "page": page, "limit": 1000})
        rows += [[r[n] for n in names] for r in data["data"]]
        if page >= data["pagination"]["totalPages"]:
            break
        page += 1
    return names, rows


def duckdb_load(path, lenient=False):
    import duckdb
    try:
        con = duckdb.connect()
        options = ", strict_mode = false, null_padding = true" if lenient else ""
        relation = con.sql(f"SELECT * FROM read_csv_auto('{path}'{options})")
        return list(relation.columns), [list(r) for r in relation.fetchall()]
    except Exception:
        return None, None


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def fmt(value):
    return "–" if value is None else f"{value:.3f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-kind", type=int, default=None)
    parser.add_argument("--variants", type=int, default=3, help="clean tables the corpus is made from")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    cases = csv_corpus.corpus(per_kind=args.per_kind, variants=args.variants)
    scores = {"agent": defaultdict(list), "duckdb": defaultdict(list), "lenient": defaultdict(list)}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Agent(store=tmp / "store") as agent:
            agent.initialize()
            for case in cases:
                path = tmp / f"{case.name}.csv"
                path.write_bytes(case.data)
                names, rows = agent_load(agent, path)
                scores["agent"][case.kind].append(csv_corpus.score(case, names, rows))
                names, rows = duckdb_load(path)
                scores["duckdb"][case.kind].append(csv_corpus.score(case, names, rows))
                names, rows = duckdb_load(path, lenient=True)
                scores["lenient"][case.kind].append(csv_corpus.score(case, names, rows))
    kinds = list(dict.fromkeys(c.kind for c in cases))
    metrics = ["record_p", "record_r", "cell_p", "cell_r", "header"]
    lines = [
        f"{len(cases)} files, {len(kinds)} kinds of pollution (Tests/e2e/csv_corpus.py). Each cell: "
        f"**agent** / DuckDB {_duckdb_version()} `read_csv_auto` with its defaults / DuckDB with "
        "`strict_mode = false, null_padding = true` (a reference). P/R = precision/recall of records "
        "and of cells against the expected table, averaged over the kind's files (a load that fails "
        "scores 0); header = share of files whose column names came out as expected (– where the "
        "header is not scored: absent or unrecoverable).",
        "",
        "| kind | files | record P | record R | cell P | cell R | header |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(label, groups):
        cells = []
        for metric in metrics:
            a, d, lenient = (mean([getattr(s, metric) for s in group]) for group in groups)
            cells.append(f"**{fmt(a)}** / {fmt(d)} / {fmt(lenient)}")
        return f"| {label} | {len(groups[0])} | " + " | ".join(cells) + " |"

    loaders = ["agent", "duckdb", "lenient"]
    for kind in kinds:
        lines.append(row(kind, [scores[name][kind] for name in loaders]))
    lines.append(row("**overall**", [[s for k in kinds for s in scores[name][k]] for name in loaders]))
    table = "\n".join(lines)
    print(table)
    print(f"\n({time.monotonic() - started:.1f} s)")
    if not args.no_write:
        results = ROOT / "bench" / "RESULTS.md"
        text = results.read_text() if results.exists() else ""
        section = f"{SECTION}\n\n`python bench/csv_quality.py`\n\n{table}\n"
        if SECTION in text:
            before, _, after = text.partition(SECTION)
            rest = after.split("\n## ", 1)
            text = before + section + ("\n## " + rest[1] if len(rest) > 1 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + section
        results.write_text(text)


def _duckdb_version():
    try:
        import duckdb
        return duckdb.__version__
    except Exception:
        return "(not installed)"


if __name__ == "__main__":
    main()
