#!/usr/bin/env python3
"""XLSX load benchmark (issue 16): the agent's upload → completed of a 100,000-row × 10-column
workbook against openpyxl read-only iterating the same rows, with peak RSS of each.

    /work/main/.venv/bin/python bench/xlsx.py [--rows 100000] [--agent .build/release/datasource-agent]
"""
import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))

import openpyxl  # noqa: E402

from agentproc import Agent  # noqa: E402


def make(path: Path, rows: int) -> None:
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("data")
    ws.append(["id", "name", "qty", "price", "ok", "day", "city", "score", "code", "note"])
    base = dt.date(2020, 1, 1)
    cities = ["Paris", "Lyon", "Oslo", "Lima", "Kyiv", "Rome"]
    for i in range(rows):
        ws.append([i, f"name {i}", i % 1000, round(i * 0.37, 2), i % 3 == 0, base + dt.timedelta(days=i % 3000),
                   cities[i % len(cities)], (i * 7919) % 10007 / 7.0, f"C{i:07d}", "x" * (i % 20)])
    wb.save(path)


def openpyxl_run(path: Path) -> tuple[float, float]:
    """Runs openpyxl in a child so its peak RSS is its own: (seconds, peak MiB)."""
    code = (
        "import openpyxl,resource,sys,time\n"
        "t=time.perf_counter()\n"
        "wb=openpyxl.load_workbook(sys.argv[1],read_only=True)\n"
        "n=sum(1 for _ in wb.active.iter_rows(values_only=True))\n"
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def agent_run(path: Path, binary: str | None) -> tuple[float, float, int]:
    if binary:
        os.environ["DATASOURCE_AGENT_BIN"] = binary
    with tempfile.TemporaryDirectory() as store:
        with Agent(Path(store)) as agent:
            agent.initialize()
            t = time.perf_counter()
            result = agent.call("datasources/upload", {"path": str(path)})
            note = agent.wait_notification(
                "datasources/statusChanged", lambda p: p["datasourceId"] == result["datasourceId"], timeout=600)
            seconds = time.perf_counter() - t
            assert note["status"] == "completed", note
            rss = peak_rss_mib(agent.proc.pid)
            rows = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
            return seconds, rss, rows.get("rowCount", -1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--agent")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.xlsx"
        make(path, args.rows)
        print(f"workbook: {args.rows} rows × 10 columns, {path.stat().st_size / 2**20:.1f} MiB")
        agent_times, peer_times, agent_rss, peer_rss = [], [], 0.0, 0.0
        for _ in range(args.rounds):
            s, rss, count = agent_run(path, args.agent)
            agent_times.append(s)
            agent_rss = max(agent_rss, rss)
            p, prss = openpyxl_run(path)
            peer_times.append(p)
            peer_rss = max(peer_rss, prss)
        a = sorted(agent_times)[len(agent_times) // 2]
        p = sorted(peer_times)[len(peer_times) // 2]
        print(f"agent upload→completed: median {a:.2f} s, peak RSS {agent_rss:.0f} MiB, rowCount {count}")
        print(f"openpyxl read-only iteration: median {p:.2f} s, peak RSS {peer_rss:.0f} MiB")
        print(f"speed-up: {p / a:.1f}× (goal ≥ 5×); agent peak RSS goal ≤ 200 MiB")


if __name__ == "__main__":
    main()
