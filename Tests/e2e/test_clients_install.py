"""Installing the agent and finding it from the installed clients (issue 9, item 11)."""
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentproc import ROOT, agent_binary

INSTALL = ROOT / "scripts" / "install"
SHELL = ROOT / "clients" / "shell" / "ds"
USE_CLIENT = """
import json, sys
from datasource_agent import Client
try:
    with Client() as client:
        print(json.dumps(client.list()))
except OSError as error:
    print(str(error), file=sys.stderr)
    sys.exit(3)
"""


def path_without_agent() -> str:
    """PATH minus any directory that holds a datasource-agent."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "datasource-agent").exists()]
    return os.pathsep.join(dirs)


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATASOURCE_AGENT") and k != "PYTHONPATH"}
    env["PATH"] = path_without_agent()
    env.update(extra)
    return env


@pytest.fixture
def installed_python(tmp_path):
    """This interpreter, run outside the repository, where `datasource_agent` is the copy pip
    installed (as scripts/test does), not the source tree."""
    probe = subprocess.run([sys.executable, "-c", "import datasource_agent; print(datasource_agent.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=clean_env())
    if probe.returncode != 0:
        pytest.skip("the Python client is not installed in this interpreter (scripts/test installs it)")
    location = Path(probe.stdout.strip()).resolve()
    if (ROOT / "clients").resolve() in location.parents:
        pytest.skip("the Python client is installed in editable mode")
    return sys.executable


def run_python(python, code_or_args, tmp_path, env, timeout=60):
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    return subprocess.run([python, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=timeout)


def test_installed_python_client_honours_DATASOURCE_AGENT(installed_python, tmp_path):
    # A command line, split like a shell: a path with a space, and an argument.
    agent_dir = tmp_path / "agent dir"
    agent_dir.mkdir()
    (agent_dir / "datasource-agent").symlink_to(agent_binary())
    store = tmp_path / "store from env"
    command = f"{shlex.quote(str(agent_dir / 'datasource-agent'))} --store {shlex.quote(str(store))}"
    env = clean_env(DATASOURCE_AGENT=command)

    out = run_python(installed_python, USE_CLIENT, tmp_path, env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pagination"]["total"] == 0
    assert store.is_dir()  # the --store inside DATASOURCE_AGENT reached the agent

    out = run_python(installed_python, ["-m", "datasource_agent", "list", "--format", "json"], tmp_path, env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["dataSources"] == []


def test_installed_python_client_not_found_says_how_to_install(installed_python, tmp_path):
    env = clean_env()
    out = run_python(installed_python, USE_CLIENT, tmp_path, env)
    assert out.returncode == 3, out.stderr
    assert "not found" in out.stderr and "scripts/install" in out.stderr and "DATASOURCE_AGENT" in out.stderr

    out = run_python(installed_python, ["-m", "datasource_agent", "list"], tmp_path, env)
    assert out.returncode == 1 and out.stdout == ""
    error = json.loads(out.stderr)
    assert "scripts/install" in error["error"] and "DATASOURCE_AGENT" in error["error"]

    # A DATASOURCE_AGENT that names nothing runnable gets the same advice.
    out = run_python(installed_python, USE_CLIENT, tmp_path, clean_env(DATASOURCE_AGENT=str(tmp_path / "missing-agent")))
    assert out.returncode == 3 and "missing-agent" in out.stderr and "scripts/install" in out.stderr


def test_shell_client_not_found_says_how_to_install(tmp_path):
    copy = tmp_path / "ds"  # outside the repository, so no build to fall back on
    shutil.copy(SHELL, copy)
    for env in (clean_env(), clean_env(DATASOURCE_AGENT=str(tmp_path / "missing-agent"))):
        out = subprocess.run(["bash", str(copy), "list"], capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 1 and out.stdout == ""
        error = json.loads(out.stderr)
        assert "scripts/install" in error["error"] and "DATASOURCE_AGENT" in error["error"]


def test_install_script_help():
    out = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for word in ("--binary", "--prefix", "PREFIX", "swift build -c release", "PATH"):
        assert word in out.stdout
    out = subprocess.run(["bash", str(INSTALL), "--bogus"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--help" in out.stderr


def test_install_script_installs_into_prefix(installed_python, tmp_path):
    prefix = tmp_path / "prefix"
    bindir = prefix / "bin"
    env = clean_env(PREFIX=str(prefix))
    # --binary skips the (long) release build.
    out = subprocess.run(["bash", str(INSTALL), "--binary", agent_binary()], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    target = bindir / "datasource-agent"
    assert target.is_file() and os.access(target, os.X_OK)
    assert str(target) in out.stdout
    assert "not on PATH" in out.stderr and str(bindir) in out.stderr
    version = subprocess.run([str(target), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.strip() in out.stdout

    # Installed again with its bin directory on PATH: no warning, and both clients find it.
    on_path = dict(env, PATH=f"{bindir}{os.pathsep}{env['PATH']}")
    out = subprocess.run(["bash", str(INSTALL), "--binary", agent_binary()], capture_output=True, text=True, env=on_path, timeout=120)
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    with_store = dict(on_path, DATASOURCE_AGENT_STORE=str(tmp_path / "store"))
    out = run_python(installed_python, USE_CLIENT, tmp_path, with_store)
    assert out.returncode == 0, out.stderr
    copy = tmp_path / "ds"
    shutil.copy(SHELL, copy)
    out = subprocess.run(["bash", str(copy), "list"], capture_output=True, text=True, env=with_store, timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout)["pagination"]["total"] == 0, out.stderr

    # --prefix wins over PREFIX.
    other = tmp_path / "other"
    out = subprocess.run(["bash", str(INSTALL), "--prefix", str(other), "--binary", agent_binary()],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and (other / "bin" / "datasource-agent").is_file(), out.stderr
