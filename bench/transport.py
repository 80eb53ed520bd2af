"""Transport figures over real pipes: process start to the initialize response (median of
20), a trivial request's round trip (median of 1,000 sequential), and requests per second
with 100 in flight. Usage: python bench/transport.py [--binary PATH]"""
import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / ".build" / "release" / "datasource-agent"))
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp()) / "store"
    init = b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}\n'

    starts = []
    for _ in range(20):
        started = time.perf_counter()
        proc = subprocess.Popen([args.binary, "--store", str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        proc.stdin.write(init)
        proc.stdin.flush()
        proc.stdout.readline()
        starts.append((time.perf_counter() - started) * 1000)
        proc.stdin.close()
        proc.wait()

    proc = subprocess.Popen([args.binary, "--store", str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdin.write(init)
    proc.stdin.flush()
    proc.stdout.readline()
    round_trips = []
    for i in range(1, 1001):
        message = b'{"jsonrpc":"2.0","id":%d,"method":"datasources/list"}\n' % i
        started = time.perf_counter()
        proc.stdin.write(message)
        proc.stdin.flush()
        proc.stdout.readline()
        round_trips.append((time.perf_counter() - started) * 1000)

    total = 20_000
    window = 100
    sent = received = 0
    next_id = 10_000
    started = time.perf_counter()
    while received < total:
        batch = b""
        while sent - received < window and sent < total:
            next_id += 1
            sent += 1
            batch += b'{"jsonrpc":"2.0","id":%d,"method":"datasources/list"}\n' % next_id
        if batch:
            proc.stdin.write(batch)
            proc.stdin.flush()
        json.loads(proc.stdout.readline())
        received += 1
    throughput = total / (time.perf_counter() - started)
    proc.stdin.close()
    proc.wait()

    print("| figure | value |")
    print("|---|---|")
    print(f"| start of the binary to the initialize response (median of 20) | {statistics.median(starts):.1f} ms |")
    print(f"| trivial request round trip, `datasources/list` on an empty store (median of 1,000 sequential) | {statistics.median(round_trips) * 1000:.0f} µs |")
    print(f"| requests per second with 100 in flight ({total:,} `datasources/list`) | {throughput:,.0f} |")


if __name__ == "__main__":
    main()
