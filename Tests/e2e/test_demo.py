"""The README's Quick start demo runs to the end against the built agent."""
import subprocess
import sys
from pathlib import Path

from agentproc import ROOT, agent_binary


def test_demo_runs_to_completion(tmp_path: Path):
    for _ in range(3):  # the two uploads finish in either order; both orders must work
        store = tmp_path / f"store{_}"
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo.py"), agent_binary(), str(store)],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "agent exited with code 0" in result.stdout
        assert "→ 200" in result.stdout
