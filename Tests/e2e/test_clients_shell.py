"""The shell client's robustness (issue 9, item 13): a fast agent, unreadable params, unknown
methods, upload progress."""
import json
import os
import subprocess

import pytest

from agentproc import ROOT, agent_binary
from conftest import write_big_csv

SHELL = ROOT / "clients" / "shell" / "ds"


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def env(store):
    return dict(os.environ, DATASOURCE_AGENT=agent_binary(), DATASOURCE_AGENT_STORE=str(store))


def ds(args, env, timeout=60):
    return subprocess.run(["bash", str(SHELL), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_shell_list_50_times_with_an_agent_faster_than_the_shell(env, tmp_path):
    # A release agent can exit (and bash reap it, forgetting AGENT_PID and closing the coproc's
    # pipes) before the client has finished with it. In every other run a DEBUG trap, loaded
    # through BASH_ENV, makes the four commands after the `exit` notification slow (20 ms
    # each), so that the debug agent is always that fast.
    slow = tmp_path / "slow.bash"
    slow.write_text("set -T\n"
                    "trap 'if [ \"${SLOW_AFTER_EXIT:-0}\" -gt 0 ]; then SLOW_AFTER_EXIT=$((SLOW_AFTER_EXIT - 1)); sleep 0.02; "
                    "elif [[ $BASH_COMMAND == *'\\''\"method\":\"exit\"'\\''* ]]; then SLOW_AFTER_EXIT=4; fi' DEBUG\n")
    slowed = dict(env, BASH_ENV=str(slow))
    failures = []
    for attempt in range(50):
        out = ds(["list"], slowed if attempt % 2 == 0 else env)
        if out.returncode != 0 or json.loads(out.stdout)["pagination"]["total"] != 0:
            failures.append((attempt, out.returncode, out.stderr[-300:]))
    assert failures == []


def test_shell_call_with_malformed_json_answers(env):
    out = ds(["call", "datasources/list", "{bad"], env, timeout=20)
    assert out.returncode == 1 and out.stdout == ""
    error = json.loads(out.stderr)
    assert error["code"] == "INVALID_PARAMETERS" and error["details"] == {"parameter": "params"}
    # JSON the client lets through but the agent cannot read (a raw control character in a
    # string): the agent answers with id null, which answers the pending request.
    out = ds(["call", "datasources/list", '{"status": "a\x01b"}'], env, timeout=20)
    assert out.returncode == 1 and out.stdout == ""
    error = json.loads(out.stderr)
    assert error["code"] == "-32700" and error["error"] == "Parse error"


def test_shell_call_unknown_method_names_it_in_valid_json(env):
    out = ds(["call", "datasources/lsit", "{}"], env, timeout=20)
    assert out.returncode == 1 and out.stdout == ""
    error = json.loads(out.stderr)
    assert error["code"] == "-32601" and error["error"] == "Method not found"
    assert error["details"]["method"] == "datasources/lsit"
    # Multi-line params are fine (sent as one line).
    out = ds(["call", "datasources/list", '{\n  "limit": 2\n}'], env, timeout=20)
    assert out.returncode == 0 and json.loads(out.stdout)["pagination"]["limit"] == 2, out.stderr


def test_shell_upload_wait_shows_progress_on_stderr(env, tmp_path):
    big = write_big_csv(tmp_path / "big.csv", 200_000)
    out = ds(["upload", str(big), "--wait"], env, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # stdout holds the result JSON only
    assert result["status"] == "completed" and result["rowCount"] == 200_000
    assert [c["name"] for c in result["columns"]] == ["id", "amount", "label", "flag"]
    lines = out.stderr.splitlines()
    assert lines and lines[0].startswith("begin:") and lines[-1].startswith("end:"), out.stderr
    reports = [line for line in lines if line.startswith("report:")]
    assert reports and all(line.split()[1].endswith("%") for line in reports), out.stderr
    # Without --wait: no progress, no waiting.
    out = ds(["upload", str(big)], env, timeout=120)
    assert out.returncode == 0 and out.stderr == "" and json.loads(out.stdout)["status"] == "processing"
