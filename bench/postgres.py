"""The PostgreSQL store's goals (issue 17), on a throw-away cluster (Tests/e2e/pgcluster.py):
ingest of the benchmark CSV into PostgreSQL against `psql \\copy` of the same file into an
untyped table (alternating runs, medians), and the warm filtered + sorted page over stdio.

    python bench/postgres.py [--rows N] [--runs K] [--agent PATH]
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))

import pgcluster  # noqa: E402
from agentproc import Agent  # noqa: E402

COLUMNS = ["id", "sku", "name", "category", "price", "quantity", "in_stock", "released", "updated_at", "description"]


def psql_copy(cluster, db, csv):
    table = "untyped_" + str(time.monotonic_ns())
    cluster.psql(db, f"CREATE TABLE {table} ({', '.join(c + ' text' for c in COLUMNS)})")
    started = time.monotonic()
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", cluster.superuser, "-d", db,
                    "-c", f"\\copy {table} FROM '{csv}' WITH (FORMAT csv, HEADER true)"], check=True)
    elapsed = time.monotonic() - started
    cluster.psql(db, f"DROP TABLE {table}")
    return elapsed


def agent_ingest(agent, csv):
    started = time.monotonic()
    id = agent.call("datasources/upload", {"path": str(csv)})["datasourceId"]
    note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=3600)
    elapsed = time.monotonic() - started
    assert note["status"] == "completed", note
    return elapsed, id


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--agent")
    args = parser.parse_args()
    if args.agent:
        import os
        os.environ["DATASOURCE_AGENT_BIN"] = args.agent
    work = Path(tempfile.mkdtemp(prefix="dsa-pg-bench-"))
    csv = work / "bench.csv"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_csv.py"), str(csv), str(args.rows)], check=True)
    work.chmod(0o755)
    csv.chmod(0o644)
    cluster = pgcluster.Cluster().start()
    try:
        db = cluster.fresh_database()
        copies, ingests = [], []
        with Agent(cluster.url(db)) as agent:
            agent.initialize()
            id = None
            for _ in range(args.runs):
                copies.append(psql_copy(cluster, db, csv))
                elapsed, id = agent_ingest(agent, csv)
                ingests.append(elapsed)
            params = {"datasourceId": id, "filter": "price > 500 AND category = 'Toys'", "sort": "price", "order": "desc", "limit": 50}
            agent.call("datasources/data", params)
            pages = []
            for _ in range(args.pages):
                started = time.monotonic()
                agent.call("datasources/data", params)
                pages.append((time.monotonic() - started) * 1000)
        copy, ingest = statistics.median(copies), statistics.median(ingests)
        print(f"rows: {args.rows}, runs: {args.runs}")
        print(f"psql \\copy (untyped): median {copy:.2f} s  {[round(c, 2) for c in copies]}")
        print(f"agent ingest (upload → statusChanged): median {ingest:.2f} s  {[round(i, 2) for i in ingests]}")
        print(f"ratio agent / psql: {ingest / copy:.2f}x  (goal ≤ 1.5x)")
        print(f"warm filtered + sorted page over stdio: p50 {statistics.median(pages):.1f} ms (goal ≤ 20 ms)")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
