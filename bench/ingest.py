"""Upload-to-completed time of the agent against sqlite3's `.import` of the same CSV (and
DuckDB's read_csv_auto as a reference), measured alternately in one run. Prints a Markdown
table. Usage: python bench/ingest.py [--rows N] [--rounds R]"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))


def agent_run(binary, csv_path, workdir):
    store = workdir / f"store-{time.monotonic_ns()}"
    proc = subprocess.Popen([binary, "--store", str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def send(message):
        proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()

    send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    json.loads(proc.stdout.readline())
    started = time.perf_counter()
    send({"jsonrpc": "2.0", "id": 2, "method": "datasources/upload", "params": {"path": str(csv_path)}})
    while True:
        message = json.loads(proc.stdout.readline())
        if message.get("method") == "datasources/statusChanged":
            elapsed = time.perf_counter() - started
            status = message["params"]
            break
    peak_kib = 0
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak_kib = int(line.split()[1])
    proc.stdin.close()
    proc.wait(timeout=30)
    shutil.rmtree(store, ignore_errors=True)
    assert status["status"] == "completed", status
    return elapsed, peak_kib / 1024, status["rowCount"]


def sqlite_run(csv_path, workdir):
    db = workdir / f"import-{time.monotonic_ns()}.db"
    started = time.perf_counter()
    subprocess.run(["sqlite3", str(db), "-cmd", ".mode csv", f".import {csv_path} t"], check=True)
    elapsed = time.perf_counter() - started
    db.unlink()
    return elapsed


def duckdb_run(csv_path, workdir):
    db = workdir / f"duck-{time.monotonic_ns()}.duckdb"
    code = (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); t = time.perf_counter(); "
        "con.execute(\"CREATE TABLE t AS SELECT * FROM read_csv_auto(?)\", [sys.argv[2]]); con.close(); print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(db), str(csv_path)], check=True, capture_output=True, text=True)
    db.unlink(missing_ok=True)
    return float(out.stdout.strip())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", default=str(ROOT / ".build" / "release" / "datasource-agent"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    csv_path = workdir / "bench.csv"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_csv.py"), str(csv_path), str(args.rows)], check=True)
    size_mb = csv_path.stat().st_size / 1e6
    try:
        import duckdb  # noqa: F401
        have_duckdb = True
    except ImportError:
        have_duckdb = False
    agent_times, sqlite_times, duck_times, peaks = [], [], [], []
    for _ in range(args.rounds):
        elapsed, peak, rows = agent_run(args.binary, csv_path, workdir)
        assert rows == args.rows
        agent_times.append(elapsed)
        peaks.append(peak)
        sqlite_times.append(sqlite_run(csv_path, workdir))
        if have_duckdb:
            duck_times.append(duckdb_run(csv_path, workdir))
    shutil.rmtree(workdir, ignore_errors=True)
    agent, sqlite = statistics.median(agent_times), statistics.median(sqlite_times)
    print(f"CSV: {args.rows:,} rows x 10 columns, {size_mb:.0f} MB; {args.rounds} alternating rounds; medians\n")
    print("| run | seconds | ratio to sqlite3 .import | peak RSS |")
    print("|---|---|---|---|")
    print(f"| datasource-agent upload → completed (typed, cleaned) | {agent:.2f} | {agent / sqlite:.2f} | {max(peaks):.0f} MiB |")
    print(f"| sqlite3 `.mode csv` + `.import` (untyped) | {sqlite:.2f} | 1.00 | |")
    if duck_times:
        duck = statistics.median(duck_times)
        print(f"| DuckDB `read_csv_auto` (reference) | {duck:.2f} | {duck / sqlite:.2f} | |")
    print(f"\nall runs: agent {[round(t, 2) for t in agent_times]}, sqlite3 {[round(t, 2) for t in sqlite_times]}, duckdb {[round(t, 2) for t in duck_times]}")


if __name__ == "__main__":
    main()
