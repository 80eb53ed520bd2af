"""Load drivers shared by the bounded e2e tests (Tests/e2e/test_load.py) and the full-length runs
(scripts/load): many requests in flight over stdio, wrk against the REST face, several agents
on one store. Each driver checks that every request is answered exactly once, counts errors
by kind, and samples the agents' resident memory; it returns a figures dict and leaves the
judging to its caller."""
from __future__ import annotations

import json
import os
import queue
import random
import re
import shutil
import statistics
import sys
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from agentproc import Agent
from conftest import upload_and_wait
from restproc import RestServer, create_key

# Errors a mixed workload provokes on purpose, by JSON-RPC code: a source another agent
# deleted, data of a source still processing.
NOT_FOUND = -31404
PROCESSING = -31409


def rss_kib(pid: int) -> int | None:
    """Resident memory of a process in KiB (Linux /proc), None once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RSSSampler:
    """Samples a process's RSS every `interval` seconds on a thread."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            value = rss_kib(self.pid)
            if value is not None:
                self.samples.append((time.monotonic() - start, value))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RSSSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mib(self) -> float:
        return max(v for _, v in self.samples) / 1024 if self.samples else 0.0

    def peak_in(self, first: float, last: float) -> float:
        """Peak over the [first, last] fraction of the run, in MiB."""
        if not self.samples:
            return 0.0
        end = self.samples[-1][0]
        chosen = [v for t, v in self.samples if first * end <= t <= last * end]
        return max(chosen or [self.samples[-1][1]]) / 1024


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def small_csv(rows: int, seed: int) -> str:
    rng = random.Random(seed)
    lines = ["id,category,price,in_stock,label"]
    for i in range(rows):
        lines.append(f"{i},{rng.choice(['toys', 'books', 'tools', 'food'])},{rng.randint(1, 50000) / 100},"
                     f"{rng.choice(['yes', 'no'])},item {rng.randint(0, 10**6)}")
    return "\n".join(lines) + "\n"


def read_params(rng: random.Random, ids: list[str]) -> tuple[str, dict]:
    """One list, get or data request over known sources."""
    kind = rng.random()
    if kind < 0.3 or not ids:
        return "datasources/list", {"limit": rng.choice([5, 20, 100]), "page": rng.randint(1, 2)}
    id = rng.choice(ids)
    if kind < 0.6:
        return "datasources/get", {"datasourceId": id}
    params: dict[str, Any] = {"datasourceId": id, "limit": rng.choice([10, 50, 200]), "page": rng.randint(1, 5)}
    if rng.random() < 0.4:
        params["filter"] = rng.choice(["price > 100", "category = 'toys' AND in_stock = true", "label CONTAINS '7'"])
    if rng.random() < 0.4:
        params["sort"] = rng.choice(["price", "category,price", "label"])
        params["order"] = rng.choice(["asc", "desc"])
    return "datasources/data", params


class Windowed:
    """Keeps `window` requests in flight on one agent, each answered exactly once. `next_request`
    gives (method, params) or None when there is nothing more to send; `on_answer` sees each
    (method, params, reply)."""

    def __init__(self, agent: Agent, window: int):
        self.agent = agent
        self.window = window
        self.outstanding: dict[int, tuple[str, dict, float]] = {}
        self.latencies: dict[str, list[float]] = {}
        self.answered = 0
        self.sent = 0
        self.duplicates: list[Any] = []
        self.unknown: list[Any] = []
        self.errors: dict[int, int] = {}
        self.unexpected: list[dict] = []
        self.seen: set[int] = set()
        self.notifications: dict[str, int] = {}

    def _send(self, method: str, params: dict) -> None:
        id = self.agent.request(method, params)
        self.outstanding[id] = (method, params, time.monotonic())
        self.sent += 1

    def run(self, next_request: Callable[[], tuple[str, dict] | None],
            on_answer: Callable[[str, dict, dict], None] | None = None,
            expected_errors: frozenset[int] = frozenset(), timeout: float = 60) -> None:
        exhausted = False
        while True:
            while not exhausted and len(self.outstanding) < self.window:
                request = next_request()
                if request is None:
                    exhausted = True
                    break
                self._send(*request)
            if exhausted and not self.outstanding:
                return
            try:
                reply = self.agent.reader.messages.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no answer in {timeout} s; {len(self.outstanding)} requests unanswered") from None
            if isinstance(reply, EOFError):
                raise EOFError(f"the agent closed stdout; stderr: {bytes(self.agent.stderr)[-2000:]!r}")
            if isinstance(reply, dict) and "method" in reply and "id" not in reply:
                self.notifications[reply["method"]] = self.notifications.get(reply["method"], 0) + 1
                continue
            id = reply.get("id") if isinstance(reply, dict) else None
            if id in self.seen:
                self.duplicates.append(reply)
                continue
            if id not in self.outstanding:
                self.unknown.append(reply)
                continue
            self.seen.add(id)
            method, params, sent_at = self.outstanding.pop(id)
            self.latencies.setdefault(method, []).append(time.monotonic() - sent_at)
            self.answered += 1
            if "error" in reply:
                code = reply["error"].get("code")
                self.errors[code] = self.errors.get(code, 0) + 1
                if code not in expected_errors:
                    self.unexpected.append({"method": method, "params": params, "error": reply["error"]})
            if on_answer:
                on_answer(method, params, reply)

    def settle(self, quiet: float = 0.5) -> None:
        """Reads for `quiet` seconds more, so that a late second answer would be counted."""
        deadline = time.monotonic() + quiet
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                reply = self.agent.reader.messages.get(timeout=remaining)
            except queue.Empty:
                return
            if isinstance(reply, dict) and "id" in reply:
                (self.duplicates if reply["id"] in self.seen else self.unknown).append(reply)

    def figures(self) -> dict:
        every = [x for values in self.latencies.values() for x in values]
        return {
            "sent": self.sent, "answered": self.answered, "duplicates": len(self.duplicates),
            "unknown": len(self.unknown), "unanswered": len(self.outstanding),
            "errors": {str(k): v for k, v in sorted(self.errors.items())}, "unexpected": self.unexpected[:5],
            "p50_ms": round(percentile(every, 50) * 1000, 2), "p99_ms": round(percentile(every, 99) * 1000, 2),
            "by_method_p50_ms": {m: round(percentile(v, 50) * 1000, 2) for m, v in sorted(self.latencies.items())},
            "notifications": self.notifications,
        }


def seed_sources(agent: Agent, count: int, rows: int) -> list[str]:
    ids = []
    for n in range(count):
        result, note = upload_and_wait(agent, fileName=f"load-{n}.csv", content=small_csv(rows, n))
        assert note["status"] == "completed", note
        ids.append(result["datasourceId"])
    return ids


def stdio_many_in_flight(store: Path, requests: int = 10_000, in_flight: int = 200, seed: int = 1) -> dict:
    """(a) `requests` mixed list/get/data requests over one stdio session, `in_flight` at a time."""
    with Agent(store) as agent:
        agent.initialize()
        ids = seed_sources(agent, 4, 2_000)
        rng = random.Random(seed)
        driver = Windowed(agent, in_flight)
        remaining = [requests]

        def next_request():
            if remaining[0] == 0:
                return None
            remaining[0] -= 1
            return read_params(rng, ids)

        started = time.monotonic()
        with RSSSampler(agent.proc.pid) as rss:
            driver.run(next_request)
            driver.settle()
        elapsed = time.monotonic() - started
        exit_code = agent.shutdown_and_exit(timeout=30)
        figures = driver.figures()
        figures.update({
            "in_flight": in_flight, "seconds": round(elapsed, 2), "requests_per_second": round(requests / elapsed),
            "rss_peak_mib": round(rss.peak_mib(), 1), "rss_first_half_peak_mib": round(rss.peak_in(0, 0.5), 1),
            "rss_second_half_peak_mib": round(rss.peak_in(0.5, 1), 1), "exit_code": exit_code,
            "stdout_garbage": len(agent.reader.garbage),
        })
        return figures


def many_agents_one_store(store: Path | str, agents: int = 4, seconds: float = 60, window: int = 16, seed: int = 7) -> dict:
    """(c) `agents` processes on one store, each keeping `window` mixed requests (upload, list,
    get, data, delete) in flight for `seconds`. Deleting a source another agent is reading and
    reading a source still processing give the expected NOT_FOUND and PROCESSING errors."""
    with Agent(store) as first:
        first.initialize()
        known = seed_sources(first, 3, 1_000)
        first.shutdown_and_exit(timeout=30)
    known_lock = threading.Lock()
    results: list[dict] = [{} for _ in range(agents)]
    failures: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def drive(index: int) -> None:
        rng = random.Random(seed + index)
        try:
            with Agent(store) as agent:
                agent.initialize()
                driver = Windowed(agent, window)
                counts: dict[str, int] = {}

                def next_request():
                    if time.monotonic() >= deadline:
                        return None
                    with known_lock:
                        ids = list(known)
                    roll = rng.random()
                    if roll < 0.08:
                        method, params = "datasources/upload", {
                            "fileName": f"agent{index}-{rng.randint(0, 10**9)}.csv",
                            "content": small_csv(rng.randint(1, 400), rng.randint(0, 10**9))}
                    elif roll < 0.13 and len(ids) > 3:
                        method, params = "datasources/delete", {"datasourceId": rng.choice(ids)}
                    else:
                        method, params = read_params(rng, ids)
                    counts[method] = counts.get(method, 0) + 1
                    return method, params

                def on_answer(method, params, reply):
                    result = reply.get("result")
                    with known_lock:
                        if method == "datasources/upload" and result:
                            known.append(result["datasourceId"])
                        elif method == "datasources/delete" and result and params["datasourceId"] in known:
                            known.remove(params["datasourceId"])

                with RSSSampler(agent.proc.pid, interval=0.25) as rss:
                    driver.run(next_request, on_answer, expected_errors=frozenset({NOT_FOUND, PROCESSING}))
                    driver.settle()
                exit_code = agent.shutdown_and_exit(timeout=60)
                figures = driver.figures()
                figures.update({"by_method": counts, "rss_peak_mib": round(rss.peak_mib(), 1),
                                "rss_first_half_peak_mib": round(rss.peak_in(0, 0.5), 1),
                                "rss_second_half_peak_mib": round(rss.peak_in(0.5, 1), 1),
                                "exit_code": exit_code, "stdout_garbage": len(agent.reader.garbage)})
                results[index] = figures
        except BaseException as error:  # reported by the caller, with the other agents' figures
            failures.append(error)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(agents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    # The store is still consistent: every source listed can be read, and its status is final.
    with Agent(store) as check:
        check.initialize()
        listed = []
        page = 1
        while True:
            answer = check.call("datasources/list", {"limit": 100, "page": page})
            listed.extend(answer["dataSources"])
            if page >= answer["pagination"]["totalPages"]:
                break
            page += 1
        for item in listed:
            check.call("datasources/get", {"datasourceId": item["datasourceId"]})
        check.shutdown_and_exit(timeout=30)
    return {"agents": results, "seconds": seconds, "window": window, "sources_at_end": len(listed),
            "still_processing_at_end": sum(1 for item in listed if item["status"] == "processing"),
            "orphan_files": orphan_files(store, {item["datasourceId"] for item in listed})}


def orphan_files(store: Path, ids: set[str]) -> list[str]:
    """Row files and originals in the store that no listed source owns (a directory store;
    a PostgreSQL store's tables and originals are checked by the caller, in the database)."""
    if isinstance(store, str):
        return []
    orphans = []
    for folder in ("tables", "originals"):
        for path in sorted((store / folder).iterdir()):
            owner = path.name.split(".")[0]
            if owner not in ids:
                orphans.append(f"{folder}/{path.name}")
    return orphans


def cheap_behind_heavy(store: Path, heavy_rows: int = 40_000, heavy: int = 200, batch: int = 5_000) -> dict:
    """A `get` sent behind `heavy` heavy `data` requests (a full-scan filter, 1,000 rows a page)
    and a batch of `batch` `list` calls: how many heavy answers came before it, and its latency
    beside the same get measured alone in the same run."""
    with Agent(store) as agent:
        agent.initialize()
        big, note = upload_and_wait(agent, timeout=120, fileName="heavy.csv", content=small_csv(heavy_rows, 3))
        assert note["status"] == "completed", note
        small, _ = upload_and_wait(agent, fileName="small.csv", content="a,b\n1,2\n")
        get = {"datasourceId": small["datasourceId"]}
        alone = []
        for _ in range(20):
            started = time.monotonic()
            agent.call("datasources/get", get)
            alone.append(time.monotonic() - started)

        started = time.monotonic()
        heavy_ids = {agent.request("datasources/data", {
            "datasourceId": big["datasourceId"], "filter": "label CONTAINS '12'", "limit": 1000, "page": 1 + n % 10})
            for n in range(heavy)}
        agent.send([{"jsonrpc": "2.0", "id": f"list-{n}", "method": "datasources/list", "params": {"limit": 100}}
                    for n in range(batch)])
        get_id = agent.request("datasources/get", get)
        get_sent = time.monotonic()
        heavy_before_get = get_latency = batch_latency = None
        heavy_answered = 0
        while heavy_answered < heavy or get_latency is None or batch_latency is None:
            message = agent.next_message(timeout=240)
            if isinstance(message, list):
                assert len(message) == batch and all("result" in m for m in message), "the batch failed"
                batch_latency = time.monotonic() - started
            elif message.get("id") == get_id:
                assert "result" in message, message
                get_latency = time.monotonic() - get_sent
                heavy_before_get = heavy_answered
            elif message.get("id") in heavy_ids:
                assert "result" in message, message
                heavy_answered += 1
        all_heavy = time.monotonic() - started
        agent.shutdown_and_exit(timeout=30)
    figures = {
        "heavy": heavy, "batch": batch, "heavy_rows": heavy_rows, "get_alone_median_ms": round(statistics.median(alone) * 1000, 2),
        "get_under_load_ms": round(get_latency * 1000, 1), "heavy_before_get": heavy_before_get,
        "all_heavy_ms": round(all_heavy * 1000), "batch_ms": round(batch_latency * 1000),
    }
    figures["report"] = (
        f"get alone: median {figures['get_alone_median_ms']} ms; behind {heavy} heavy data requests and a batch of "
        f"{batch} lists: {figures['get_under_load_ms']} ms, after {heavy_before_get} of {heavy} heavy answers; "
        f"the batch answered in {figures['batch_ms']} ms, every heavy request in {figures['all_heavy_ms']} ms")
    return figures


WRK_SCRIPT = """
-- Mixed list, get and data requests over the sources named in IDS.
local ids = {%s}
local n = 0
request = function()
  n = n + 1
  local id = ids[(n %% #ids) + 1]
  local kind = n %% 3
  if kind == 0 then return wrk.format("GET", "/api/v2/datasources?page=1&limit=20") end
  if kind == 1 then return wrk.format("GET", "/api/v2/datasources/" .. id) end
  return wrk.format("GET", "/api/v2/datasources/" .. id .. "/data?page=2&limit=50&sort=price&order=desc")
end
"""


def wrk_rest(store: Path, seconds: int = 10, connections: int = 32, threads: int = 2) -> dict:
    """(b) wrk against serve-http with a key: mixed list, get and data for `seconds`."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError("wrk is not installed (Debian package wrk; scripts/test installs it)")
    with Agent(store) as agent:
        agent.initialize()
        ids = seed_sources(agent, 3, 2_000)
        agent.shutdown_and_exit(timeout=30)
    key = create_key(store, "read", "load")
    with RestServer(store, "--rate-limit", "100000000") as server, tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "mixed.lua"
        script.write_text(WRK_SCRIPT % ", ".join(json.dumps(i) for i in ids))
        with RSSSampler(server.proc.pid, interval=0.25) as rss:
            run = subprocess.run(
                [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "10s",
                 "-s", str(script), "-H", f"Authorization: Bearer {key}", server.base],
                capture_output=True, text=True, timeout=seconds + 60)
        alive = server.proc.poll() is None
        server.terminate()
    figures = parse_wrk(run.stdout)
    figures.update({"connections": connections, "threads": threads, "seconds": seconds, "wrk_exit": run.returncode,
                    "server_alive_after": alive, "rss_peak_mib": round(rss.peak_mib(), 1),
                    "rss_first_half_peak_mib": round(rss.peak_in(0, 0.5), 1),
                    "rss_second_half_peak_mib": round(rss.peak_in(0.5, 1), 1), "wrk_output": run.stdout})
    return figures


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return round(float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit], 3)


def parse_wrk(output: str) -> dict:
    figures: dict[str, Any] = {"non_2xx": 0, "socket_errors": 0}
    if m := re.search(r"(\d+) requests in", output):
        figures["requests"] = int(m.group(1))
    if m := re.search(r"Requests/sec:\s+([\d.]+)", output):
        figures["requests_per_second"] = float(m.group(1))
    for p in ("50", "90", "99"):
        if m := re.search(rf"^\s+{p}%\s+(\S+)", output, re.M):
            figures[f"p{p}_ms"] = _ms(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        figures["non_2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        figures["socket_errors"] = sum(int(x) for x in m.groups())
    return figures


def main(argv: list[str]) -> int:
    import argparse
    parser = argparse.ArgumentParser(description="The full-length load runs (scripts/load).")
    parser.add_argument("--agent", help="the datasource-agent binary to measure")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60, help="length of the four-agent run")
    parser.add_argument("--wrk-seconds", type=int, default=30)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.agent:
        os.environ["DATASOURCE_AGENT_BIN"] = str(Path(args.agent).resolve())
    figures: dict[str, Any] = {"agent": os.environ.get("DATASOURCE_AGENT_BIN")}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ds-load-") as scratch:
        root = Path(scratch)
        print(f"== stdio: {args.requests} requests, {args.in_flight} in flight", file=sys.stderr)
        stdio = figures["stdio"] = stdio_many_in_flight(root / "stdio", args.requests, args.in_flight)
        print(f"== four agents on one store for {args.seconds:g} s", file=sys.stderr)
        agents = figures["four_agents"] = many_agents_one_store(root / "agents", 4, args.seconds)
        print(f"== wrk against serve-http for {args.wrk_seconds} s", file=sys.stderr)
        rest = figures["wrk"] = wrk_rest(root / "wrk", args.wrk_seconds, connections=64)
        print("== a get behind heavy requests", file=sys.stderr)
        cheap = figures["cheap"] = cheap_behind_heavy(root / "cheap")
    for label, run in [("stdio", stdio)] + [(f"agent {i}", a) for i, a in enumerate(agents["agents"])]:
        if run["answered"] != run["sent"] or run["duplicates"] or run["unknown"] or run["unanswered"] or run["unexpected"]:
            problems.append(f"{label}: {json.dumps({k: run[k] for k in ('sent', 'answered', 'duplicates', 'unknown', 'unexpected')})}")
    if agents["orphan_files"]:
        problems.append(f"orphan files: {agents['orphan_files'][:5]}")
    if rest["non_2xx"] or rest["socket_errors"] or not rest["server_alive_after"]:
        problems.append(f"wrk: {rest['non_2xx']} non-2xx, {rest['socket_errors']} socket errors")
    print(rest.pop("wrk_output"), file=sys.stderr)
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    print(markdown(figures))
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


def markdown(f: dict) -> str:
    s, a, w, c = f["stdio"], f["four_agents"], f["wrk"], f["cheap"]
    total = lambda key: sum(x[key] for x in a["agents"])
    errors: dict[str, int] = {}
    for x in a["agents"]:
        for code, n in x["errors"].items():
            errors[code] = errors.get(code, 0) + n
    return "\n".join([
        "| run | requests | in flight | errors | p50 | p99 | peak RSS |",
        "|---|---|---|---|---|---|---|",
        f"| stdio, one session | {s['answered']:,} of {s['sent']:,} answered once ({s['requests_per_second']}/s) | {s['in_flight']} | "
        f"{s['errors'] or 'none'} | {s['p50_ms']} ms | {s['p99_ms']} ms | {s['rss_peak_mib']} MiB |",
        f"| four agents, one store, {a['seconds']:g} s | {total('answered'):,} of {total('sent'):,} answered once | 4 × {a['window']} | "
        f"expected only: {errors or 'none'} | {max(x['p50_ms'] for x in a['agents'])} ms (worst agent) | "
        f"{max(x['p99_ms'] for x in a['agents'])} ms (worst agent) | {max(x['rss_peak_mib'] for x in a['agents'])} MiB (largest) |",
        f"| wrk, serve-http, {w['seconds']} s | {w.get('requests', 0):,} ({w.get('requests_per_second')}/s) | {w['connections']} connections | "
        f"{w['non_2xx']} non-2xx, {w['socket_errors']} socket errors | {w.get('p50_ms')} ms | {w.get('p99_ms')} ms | {w['rss_peak_mib']} MiB |",
        "",
        c["report"],
    ])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main(sys.argv[1:]))
