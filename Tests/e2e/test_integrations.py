"""docs/INTEGRATIONS.md's editor snippets, run for real: headless Neovim and batch Emacs each
spawn the built agent (found on PATH as `datasource-agent`, as the docs assume), upload a
small CSV by absolute path, wait for `datasources/statusChanged`, read `datasources/data`,
then shut the agent down with `shutdown` + `exit`.

The code run is the text of the tagged fenced blocks (`<!-- snippet: NAME -->`) in the doc,
byte for byte; the small harnesses in integrations/ only capture what the blocks print and
what the documented function hands to its caller. An editor that is not installed skips
the test locally; under CI (`CI` set) it fails, because scripts/test installs both.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agentproc import ROOT, agent_binary

DOC = ROOT / "docs" / "INTEGRATIONS.md"
HARNESS = Path(__file__).parent / "integrations"
TIMEOUT = 60  # seconds for one editor run, agent included

CSV = (
    "sku,name,category,price,in_stock\n"
    "SKU-0001,Wireless Mouse,Electronics,138.49,no\n"
    "SKU-0002,USB-C Hub,Electronics,201.99,yes\n"
    "SKU-0003,Desk Lamp,Home,24.50,yes\n"
    "SKU-0004,Standing Desk,Furniture,1299.00,no\n"
    "SKU-0005,Notebook,Office,3.99,yes\n"
)
# What the documented query (price > 100, by price descending, 5 at most) must return.
EXPECTED = [
    ("SKU-0004", "Standing Desk", 1299.0),
    ("SKU-0002", "USB-C Hub", 201.99),
    ("SKU-0001", "Wireless Mouse", 138.49),
]


def snippet(name: str) -> str:
    """The fenced block right after `<!-- snippet: NAME -->` in docs/INTEGRATIONS.md."""
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- snippet: %s -->\n```[\w-]*\n(.*?)^```" % re.escape(name), text, re.S | re.M)
    assert len(found) == 1, f"docs/INTEGRATIONS.md must hold exactly one block tagged {name!r}"
    return found[0]


def require_editor(executable: str, package: str) -> str:
    path = shutil.which(executable)
    if path:
        return path
    message = f"{executable} is not installed (Debian package {package}; scripts/test installs it)"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI must run this test")
    pytest.skip(message)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory holding examples/products.csv (the path the snippets name, relative to
    the editor's working directory) and a bin/datasource-agent pointing at the build."""
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "products.csv").write_text(CSV)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "datasource-agent").symlink_to(Path(agent_binary()).resolve())
    return tmp_path


def editor_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATASOURCE_AGENT_API_KEY", None)
    env["PATH"] = f"{workdir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["DATASOURCE_AGENT_STORE"] = str(workdir / "store")
    env["HOME"] = str(workdir / "home")  # keep the editors away from the real user's files
    env["XDG_CONFIG_HOME"] = str(workdir / "home" / ".config")
    env["XDG_DATA_HOME"] = str(workdir / "home" / ".local" / "share")
    env["XDG_STATE_HOME"] = str(workdir / "home" / ".local" / "state")
    env["XDG_CACHE_HOME"] = str(workdir / "home" / ".cache")
    env.update(extra)
    return env


def run_editor(command: list[str], workdir: Path, env: dict[str, str], result_file: Path) -> dict:
    (workdir / "home").mkdir(exist_ok=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"{command[0]} did not finish within {TIMEOUT} s; stderr: {timeout.stderr!r}")
    elapsed = time.monotonic() - started
    logs = f"exit {proc.returncode} after {elapsed:.1f} s\nstdout: {proc.stdout[-3000:]!r}\nstderr: {proc.stderr[-3000:]!r}"
    assert result_file.exists(), f"the harness wrote no result\n{logs}"
    result = json.loads(result_file.read_text())
    result["_logs"] = logs
    return result


def check_rows(rows: list[dict]) -> None:
    assert [(r["sku"], r["name"], r["price"]) for r in rows] == EXPECTED
    assert all(isinstance(r["price"], (int, float)) and not isinstance(r["price"], bool) for r in rows)
    assert [r["in_stock"] for r in rows] == [False, True, False]


def check_printed_rows(lines: list[str], separator: str) -> None:
    """The usage blocks print `sku name price` per row (a float may print as 1299 or 1299.0)."""
    assert len(lines) == len(EXPECTED), lines
    for line, (sku, name, price) in zip(lines, EXPECTED):
        assert line.startswith(f"{sku}{separator}{name}{separator}"), lines
        assert float(line.rsplit(separator, 1)[1]) == price, lines


def check_no_agent_left(workdir: Path) -> None:
    """The agent exited after `exit` (the snippets wait for it); no process still runs it."""
    binary = str(Path(agent_binary()).resolve())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        assert not (exe == binary and str(workdir / "store").encode() in environ), f"agent {pid} still runs"


def test_neovim_snippet(workdir: Path) -> None:
    nvim = require_editor("nvim", "neovim")
    rtp = workdir / "nvim-rtp"
    (rtp / "lua").mkdir(parents=True)
    (rtp / "lua" / "datasource.lua").write_text(snippet("nvim-module"))
    usage = workdir / "usage.lua"
    usage.write_text(snippet("nvim-usage"))
    result_file = workdir / "nvim-result.json"
    env = editor_env(
        workdir, DS_RTP=str(rtp), DS_USAGE=str(usage), DS_RESULT_FILE=str(result_file),
        DS_TIMEOUT_MS=str((TIMEOUT - 10) * 1000),
    )
    result = run_editor(
        [nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n",
         "-c", f"luafile {HARNESS / 'nvim_harness.lua'}", "-c", "qa!"],
        workdir, env, result_file,
    )
    logs = result["_logs"]
    assert "harness_error" not in result, f"{result['harness_error']}\n{logs}"
    assert result["finished"], f"the documented callback never ran\n{result}\n{logs}"
    assert result.get("err") is None, f"{result['err']}\n{logs}"
    assert "callback_error" not in result, f"{result['callback_error']}\n{logs}"
    assert result["path"] == str(workdir / "examples" / "products.csv")
    change = result["change"]
    assert change["status"] == "completed" and change["previousStatus"] == "processing"
    assert change["fileName"] == "products.csv" and change["rowCount"] == 5
    page = result["page"]
    check_rows(page["data"])
    assert page["pagination"]["total"] == 3
    # What the usage block printed, as a user would see it.
    assert result["output"][0] == "products.csv is completed: 5 rows", logs
    check_printed_rows(result["output"][1:], "\t")
    check_no_agent_left(workdir)


def test_emacs_snippet(workdir: Path) -> None:
    emacs = require_editor("emacs", "emacs-nox")
    module = workdir / "datasource-agent.el"
    module.write_text(snippet("emacs-module"))
    usage = workdir / "usage.el"
    usage.write_text(snippet("emacs-usage"))
    result_file = workdir / "emacs-result.json"
    env = editor_env(
        workdir, DS_MODULE=str(module), DS_USAGE=str(usage), DS_RESULT_FILE=str(result_file),
        DS_TIMEOUT_S=str(TIMEOUT - 10),
    )
    result = run_editor(
        [emacs, "-Q", "--batch", "-l", str(HARNESS / "emacs_harness.el")], workdir, env, result_file)
    logs = result["_logs"]
    assert "harness_error" not in result, f"{result['harness_error']}\n{logs}"
    assert result["finished"] is True, f"{result}\n{logs}"
    returned = result["result"]
    assert returned["exit-status"] == 0, logs  # shutdown, then exit → 0
    change = returned["change"]
    assert change["status"] == "completed" and change["previousStatus"] == "processing"
    assert change["fileName"] == "products.csv" and change["rowCount"] == 5
    page = returned["page"]
    check_rows(page["data"])
    assert page["pagination"]["total"] == 3
    printed = [line for line in result["output"] if not line.startswith("[jsonrpc]")]
    assert printed[0] == "products.csv is completed: 5 rows", logs
    check_printed_rows(printed[1:], " ")
    check_no_agent_left(workdir)
