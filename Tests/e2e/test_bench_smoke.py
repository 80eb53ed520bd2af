"""The benchmark suite (bench/suite.py, run by scripts/bench) must not rot: run its driver in
--smoke mode (10,000 rows, one round) against the built agent and check that it wrote a
complete report. No time is asserted. The peers that are not installed are left out, and so
is sqlite-utils (seconds even on 10,000 rows; its code path is the sqlite3 CLI's)."""
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from agentproc import ROOT, agent_binary

pytestmark = pytest.mark.timeout(180)


def test_bench_suite_smoke(tmp_path):
    peers = []
    if shutil.which("sqlite3"):
        peers.append("sqlite3")
    for peer, module in (("duckdb", "duckdb"), ("datasette", "datasette"), ("pygls", "pygls")):
        if importlib.util.find_spec(module):
            peers.append(peer)
    if "duckdb" not in peers:
        pytest.skip("the suite's query section needs duckdb (Tests/e2e/requirements.txt)")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nhand-written history\n")
    chart = tmp_path / "ingest.png" if importlib.util.find_spec("matplotlib") else None
    cmd = [sys.executable, str(ROOT / "bench" / "suite.py"), "--smoke", "--agent", agent_binary(),
           "--peers", ",".join(peers), "--results", str(results), "--chart", str(chart or "")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=tmp_path,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert run.returncode == 0, run.stderr[-4000:]

    text = results.read_text()
    assert text.startswith("# Benchmark results\n") and text.rstrip().endswith("hand-written history")
    assert text.count("<!-- bench-suite:begin") == 1 and text.count("<!-- bench-suite:end -->") == 1
    for heading in ("### Goals", "### Ingest", "### Queries", "### Transport"):
        assert heading in text
    assert "Check failed" not in text and "**no**" not in text, text
    assert "| datasource-agent: upload" in text and "| `GROUP BY` one column" in text
    if "pygls" in peers:
        assert "| start to `initialize` answer, ms | **" in text
    if chart:
        assert chart.stat().st_size > 10_000

    # A second run (transport of the agent alone) replaces the generated section, keeping
    # what follows it.
    cmd[cmd.index("--peers") + 1] = "duckdb"
    run = subprocess.run(cmd + ["--only", "transport"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    again = results.read_text()
    assert again.count("<!-- bench-suite:begin") == 1 and "### Ingest" not in again
    assert again.rstrip().endswith("hand-written history")
