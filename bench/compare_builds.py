"""Before/after: two builds of the agent measured alternately in one run, so that a refactor
can show it made nothing slower on a noisy machine. For each round and each binary:
start to the initialize answer, a trivial request's round trip, an ingest of the benchmark
CSV (upload to statusChanged), the first filtered page sorted by a column never sorted
before, and a warm filtered, sorted page. Prints medians and the
ratio after/before (below 1 is faster).

    python bench/compare_builds.py BEFORE_BINARY AFTER_BINARY [--rows 300000] [--rounds 3]
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from suite import Agent  # noqa: E402  (the suite's stdio client)


def measure(binary, csv_path):
    store = Path(tempfile.mkdtemp()) / "store"
    started = time.perf_counter()
    agent = Agent.start(binary, store)
    agent.call("initialize", {})
    startup = (time.perf_counter() - started) * 1000
    trips = []
    for _ in range(500):
        t = time.perf_counter()
        agent.call("datasources/list", {"limit": 1})
        trips.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    id = agent.call("datasources/upload", {"path": str(csv_path)})["datasourceId"]
    agent.wait_for(lambda m: m.get("method") == "datasources/statusChanged" and m["params"]["datasourceId"] == id)
    ingest = time.perf_counter() - t
    query = {"datasourceId": id, "filter": "price > 500 AND category = 'Toys'", "sort": "price", "order": "desc", "limit": 50}
    t = time.perf_counter()
    agent.call("datasources/data", {**query, "sort": "name"})  # a column never sorted before
    cold = (time.perf_counter() - t) * 1000
    agent.call("datasources/data", query)
    time.sleep(3)  # lets a background index build finish before the warm pages
    pages = []
    for _ in range(100):
        t = time.perf_counter()
        agent.call("datasources/data", query)
        pages.append((time.perf_counter() - t) * 1000)
    agent.close()
    return {"startup ms": startup, "round trip ms": statistics.median(trips), "ingest s": ingest,
            "cold sorted page ms": cold, "warm page ms": statistics.median(pages)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    csv_path = Path(tempfile.mkdtemp()) / "bench.csv"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_csv.py"), str(csv_path), str(args.rows)], check=True)
    runs = {"before": [], "after": []}
    for _ in range(args.rounds):
        for name in ("before", "after"):
            runs[name].append(measure(getattr(args, name), csv_path))
    print(f"{args.rows:,} rows, {args.rounds} alternating rounds")
    print("| measure | before: median (min–max) | after: median (min–max) | after / before |")
    print("|---|---|---|---|")
    for key in runs["before"][0]:
        values = {name: [r[key] for r in runs[name]] for name in runs}
        before, after = (statistics.median(values[name]) for name in ("before", "after"))
        spread = {name: f"{min(values[name]):.3f}–{max(values[name]):.3f}" for name in runs}
        print(f"| {key} | {before:.3f} ({spread['before']}) | {after:.3f} ({spread['after']}) | {after / before:.2f} |")


if __name__ == "__main__":
    main()
