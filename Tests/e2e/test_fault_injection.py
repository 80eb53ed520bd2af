"""Fault injection (issue 18): the agent is killed with SIGKILL at random moments while it
accepts uploads, processes them and deletes sources; each round a new agent starts on the
same store (its own recovery runs), and then:

- every upload that was answered and not deleted ends `completed` with all its rows;
- every delete that was answered stays deleted;
- whatever else the store holds is an upload sent just before the kill, complete;
- `datasource-agent check` finds the store consistent.

CI runs FAULT_ROUNDS rounds (default 12: 20 s alone, about 50 s beside a build); `scripts/fault-injection`
runs more (60 by default) and writes the figures (FAULT_REPORT) for RELIABILITY.md.
FAULT_SEED replays a run."""
import json
import os
import random
import signal
import time
from collections import Counter

from agentproc import Agent
from conftest import check_store, write_big_csv

ROUNDS = int(os.environ.get("FAULT_ROUNDS", "12"))
SEED = int(os.environ.get("FAULT_SEED", str(random.randrange(1 << 30))))
BIG_ROWS = 60_000


def inline_csv(rows):
    return "id,v\n" + "".join(f"{i},{i * 3}\n" for i in range(rows))


class Ledger:
    """What the client was told: the sources it may rely on, and what each must hold."""

    def __init__(self):
        self.expected = {}  # datasourceId -> rows it must hold once processed
        self.deleted = set()  # deletes that were answered
        self.unanswered_uploads = {}  # fileName -> rows, for uploads the kill cut short
        self.unanswered_deletes = set()
        self.figures = Counter()

    def wait_idle(self, agent, timeout=180):
        deadline = time.monotonic() + timeout
        while agent.call("datasources/list", {"status": "processing", "limit": 1})["pagination"]["total"]:
            assert time.monotonic() < deadline, "processing never finished after recovery"
            time.sleep(0.1)

    def verify(self, agent):
        listed = []
        page = 1
        while True:
            result = agent.call("datasources/list", {"page": page, "limit": 100})
            listed += result["dataSources"]
            if page * 100 >= result["pagination"]["total"]:
                break
            page += 1
        by_id = {d["datasourceId"]: d for d in listed}
        for id, rows in self.expected.items():
            if id in self.unanswered_deletes and id not in by_id:
                continue
            assert id in by_id, f"an accepted upload ({id}, {rows} rows) was lost (seed {SEED})"
            self.check_rows(agent, id, rows)
        for id in self.deleted:
            assert id not in by_id, f"a deleted source came back: {id} (seed {SEED})"
        for id, source in by_id.items():
            if id in self.expected:
                continue
            # An upload the kill cut short may have been stored: then it is whole.
            rows = self.unanswered_uploads.get(source["fileName"])
            assert rows is not None, f"a source nobody uploaded: {source} (seed {SEED})"
            self.expected[id] = rows
            self.check_rows(agent, id, rows)
            self.figures["unanswered uploads found complete"] += 1
        self.unanswered_uploads.clear()
        self.expected = {id: rows for id, rows in self.expected.items() if id in by_id}
        self.unanswered_deletes.clear()
        self.figures["sources verified"] += len(self.expected)

    def check_rows(self, agent, id, rows):
        details = agent.call("datasources/get", {"datasourceId": id})
        assert details["status"] == "completed", (details, SEED)
        assert details["rowCount"] == rows, (details, rows, SEED)
        last = agent.call("datasources/data", {"datasourceId": id, "sort": "id", "order": "desc", "limit": 1})
        assert last["data"][0]["id"] == rows - 1 and last["pagination"]["total"] == rows, (last, SEED)


def test_kill_9_at_random_points_loses_nothing(store, tmp_path):
    rng = random.Random(SEED)
    big = write_big_csv(tmp_path / "big.csv", BIG_ROWS)
    ledger = Ledger()
    started = time.monotonic()
    for round in range(ROUNDS + 1):
        agent = Agent(store)
        try:
            agent.initialize()
            # Most rounds let the recovery finish and verify; some kill the agent while it
            # is still redoing the last round's work.
            last = round == ROUNDS
            if last or rng.random() < 0.75:
                ledger.wait_idle(agent)
                ledger.verify(agent)
                status, report, _ = check_store(store)
                assert status == 0, (report, SEED)
                ledger.figures["checks passed"] += 1
            else:
                ledger.figures["kills during recovery"] += 1
            if last:
                break
            for phase in run_and_kill(agent, rng, ledger, round, big):
                ledger.figures[f"kills during {phase}"] += 1
            ledger.figures["rounds"] += 1
        finally:
            agent.kill()
    # Reaching here, every check above held: no accepted upload or completed row was lost.
    figures = dict(ledger.figures, seed=SEED, seconds=int(time.monotonic() - started), dataLost=0)
    print(f"\nfault injection: {json.dumps(figures, sort_keys=True)}")
    if os.environ.get("FAULT_REPORT"):
        with open(os.environ["FAULT_REPORT"], "w") as f:
            json.dump(figures, f, indent=2, sort_keys=True)


def run_and_kill(agent, rng, ledger, round, big):
    """Sends a random mix of uploads and deletes, kills the agent at a random moment, and
    says what it was doing then (requests unanswered, else processing, else nothing)."""
    pending = {}  # request id -> (kind, fileName or datasourceId, rows)
    kill_at = time.monotonic() + rng.uniform(0.0, 1.2)
    operations = rng.randint(2, 6)
    for n in range(operations):
        choice = rng.random()
        if choice < 0.3 and ledger.expected:
            id = rng.choice(sorted(ledger.expected))
            pending[agent.request("datasources/delete", {"datasourceId": id})] = ("delete", id, None)
        else:
            name = f"r{round}-{n}.csv"
            if choice < 0.55:
                # A link per upload: the source's name is the path's last component.
                link = big.with_name(name)
                link.symlink_to(big)
                rows, params = BIG_ROWS, {"path": str(link)}
            else:
                rows = rng.choice([1, 20, 5_000, 40_000, 150_000])
                params = {"fileName": name, "content": inline_csv(rows)}
            pending[agent.request("datasources/upload", params)] = ("upload", name, rows)
        time.sleep(rng.uniform(0, 0.15))
        if time.monotonic() >= kill_at:
            break
    # Take in the answers that arrive before the kill.
    while True:
        remaining = kill_at - time.monotonic()
        if remaining <= 0 or not pending:
            break
        try:
            message = agent.next_message(timeout=remaining)
        except Exception:
            break
        absorb(message, pending, ledger, agent)
    kinds = {kind for kind, _, _ in pending.values()}
    processing = agent.call("datasources/list", {"status": "processing", "limit": 1}, timeout=5)["pagination"]["total"] \
        if not kinds else None
    agent.proc.send_signal(signal.SIGKILL)
    agent.wait()
    # Answers already written before the kill count: the client saw them.
    while True:
        try:
            message = agent.next_message(timeout=0.2)
        except Exception:
            break
        absorb(message, pending, ledger, agent)
    for kind, subject, rows in pending.values():
        if kind == "upload":
            ledger.unanswered_uploads[subject] = rows
        else:
            ledger.unanswered_deletes.add(subject)
    if kinds:
        return sorted(kinds)
    return ["processing"] if processing else ["idle"]


def absorb(message, pending, ledger, agent):
    if not isinstance(message, dict) or "id" not in message or message["id"] not in pending:
        if isinstance(message, dict) and "method" in message:
            agent.notifications.append(message)
        return
    kind, subject, rows = pending.pop(message["id"])
    if "error" in message:
        if kind == "delete" and message["error"]["data"]["code"] == "DATASOURCE_NOT_FOUND":
            return  # deleted by an earlier request of the same round
        raise AssertionError(f"{kind} failed: {message} (seed {SEED})")
    if kind == "upload":
        ledger.expected[message["result"]["datasourceId"]] = rows
        ledger.figures["uploads accepted"] += 1
    else:
        ledger.deleted.add(subject)
        ledger.expected.pop(subject, None)
        ledger.figures["deletes answered"] += 1
