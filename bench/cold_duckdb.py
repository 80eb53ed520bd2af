"""DuckDB's time for the page and count that bench/compare_builds.py's cold sorted page asks
the agent for (filter price > 500 AND category = 'Toys', sorted by name, 51 rows, and the
filtered count), warm in-process on a table loaded from the benchmark CSV: the reference for
issue 12's goal "first filtered, sorted page <= 10x DuckDB". Prints the median and min-max.

    python bench/cold_duckdb.py [--rows 1000000] [--repeat 20]
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    csv_path = Path(tempfile.mkdtemp()) / "bench.csv"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_csv.py"), str(csv_path), str(args.rows)], check=True)
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM read_csv_auto(?)", [str(csv_path)])
    where = "price > 500 AND category = 'Toys'"
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        con.execute(f"SELECT * FROM t WHERE {where} ORDER BY name NULLS LAST LIMIT 51").fetchall()
        con.execute(f"SELECT count(*) FROM t WHERE {where}").fetchone()
        times.append((time.perf_counter() - started) * 1000)
    print(f"DuckDB page + count, {args.rows:,} rows, {args.repeat} runs: median {statistics.median(times):.1f} ms "
          f"(min {min(times):.1f}, max {max(times):.1f})")


if __name__ == "__main__":
    main()
