"""Query latency over stdio on a 1,000,000-row source, with Datasette serving the same query
over the same rows as the reference. Prints a Markdown table.
Usage: python bench/query.py [--rows N] [--repeat R]"""
import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class StdioAgent:
    def __init__(self, binary, store):
        self.proc = subprocess.Popen([binary, "--store", str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.next_id = 0

    def call(self, method, params=None):
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()
        while True:
            reply = json.loads(self.proc.stdout.readline())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply["result"]

    def wait_for(self, method):
        while True:
            message = json.loads(self.proc.stdout.readline())
            if message.get("method") == method:
                return message["params"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def timed(fn, repeat):
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--binary", default=str(ROOT / ".build" / "release" / "datasource-agent"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="query-bench-"))
    csv_path = workdir / "bench.csv"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_csv.py"), str(csv_path), str(args.rows)], check=True)
    agent = StdioAgent(args.binary, workdir / "store")
    agent.call("initialize")
    id = agent.call("datasources/upload", {"path": str(csv_path)})["datasourceId"]
    assert agent.wait_for("datasources/statusChanged")["status"] == "completed"

    filtered = {"datasourceId": id, "filter": "price > 500 AND category = 'Toys'", "sort": "price", "order": "desc", "limit": 50}
    first = time.perf_counter()
    page = agent.call("datasources/data", filtered)  # builds the sort index and caches the count
    first_ms = (time.perf_counter() - first) * 1000
    assert len(page["data"]) == 50
    filtered_p50, filtered_p95 = timed(lambda: agent.call("datasources/data", filtered), args.repeat)

    deep = agent.call("datasources/data", {"datasourceId": id, "sort": "price", "limit": 50, "page": args.rows // 100})
    deep_cursor = deep["pagination"]["nextCursor"]
    cursor_p50, cursor_p95 = timed(
        lambda: agent.call("datasources/data", {"datasourceId": id, "sort": "price", "limit": 50, "cursor": deep_cursor}), args.repeat)
    offset_p50, _ = timed(
        lambda: agent.call("datasources/data", {"datasourceId": id, "sort": "price", "limit": 50, "page": args.rows // 100 + 1}), 20)
    first_cursor = agent.call("datasources/data", {"datasourceId": id, "limit": 50})["pagination"]["nextCursor"]
    shallow_p50, _ = timed(lambda: agent.call("datasources/data", {"datasourceId": id, "limit": 50, "cursor": first_cursor}), args.repeat)
    get_p50, get_p95 = timed(lambda: agent.call("datasources/get", {"datasourceId": id}), 1000)
    list_p50, _ = timed(lambda: agent.call("datasources/list"), 1000)
    agent.close()

    # Datasette: the same rows (the agent's own table file, with its index) and the same query.
    table = workdir / "store" / "tables" / f"{id}.sqlite"
    db = workdir / "rows.db"
    shutil.copy(table, db)
    datasette = shutil.which("datasette") or str(Path(sys.executable).parent / "datasette")
    port = free_port()
    server = subprocess.Popen([datasette, "serve", "--immutable", str(db), "--port", str(port), "--setting", "max_returned_rows", "1000", "--setting", "sql_time_limit_ms", "60000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        where = urllib.parse.urlencode({"_where": "c4 > 500 and c3 = 'Toys'", "_sort_desc": "c4", "_size": "50"})
        url = f"http://127.0.0.1:{port}/rows/rows.json?{where}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=30).read()
                break
            except OSError:
                time.sleep(0.2)
        datasette_p50, datasette_p95 = timed(lambda: urllib.request.urlopen(url, timeout=60).read(), min(args.repeat, 30))
    finally:
        server.terminate()
        server.wait()
    shutil.rmtree(workdir, ignore_errors=True)

    print(f"{args.rows:,} rows x 10 columns; {args.repeat} sequential requests each; milliseconds\n")
    print("| request | p50 | p95 | goal |")
    print("|---|---|---|---|")
    print(f"| filtered + sorted page over stdio (`price > 500 AND category = 'Toys'`, sort price desc, limit 50) | {filtered_p50:.2f} | {filtered_p95:.2f} | ≤ 20 |")
    print(f"| the same, first call (builds the sort index, counts) | {first_ms:.0f} | | |")
    print(f"| Datasette, same query over HTTP on the same rows (reference; {min(args.repeat, 30)} requests) | {datasette_p50:.2f} | {datasette_p95:.2f} | |")
    print(f"| cursor page at depth {args.rows // 2:,} (sort price) | {cursor_p50:.2f} | {cursor_p95:.2f} | ≤ 5 |")
    print(f"| cursor page at depth 50 (original order) | {shallow_p50:.2f} | | ≤ 5 |")
    print(f"| offset page at depth {args.rows // 2:,} (sort price), for comparison | {offset_p50:.2f} | | |")
    print(f"| datasources/get | {get_p50:.3f} | {get_p95:.3f} | ≤ 1 |")
    print(f"| datasources/list | {list_p50:.3f} | | |")


if __name__ == "__main__":
    main()
