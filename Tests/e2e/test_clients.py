"""The Python and shell clients end to end against the built agent (§11)."""
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from agentproc import ROOT, agent_binary
from conftest import is_postgres

sys.path.insert(0, str(ROOT / "clients" / "python"))
import datasource_agent  # noqa: E402
from datasource_agent import Client, DatasourceNotFound, InvalidParameters, ProcessingFailed  # noqa: E402

PRODUCTS = ROOT / "examples" / "products.csv"
SHELL = ROOT / "clients" / "shell" / "ds"


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def client(store):
    with Client(agent_binary(), store=store) as c:
        yield c


def test_python_upload_wait_progress_and_notification(client):
    seen = []
    progress = []
    client.on_status_changed(seen.append)
    source = client.upload(PRODUCTS, wait=True, timeout=60, progress=progress.append)
    assert source["status"] == "completed" and source["rowCount"] == 36
    assert seen and seen[-1]["datasourceId"] == source["datasourceId"] and seen[-1]["status"] == "completed"
    assert progress[0]["kind"] == "begin" and progress[-1]["kind"] == "end"
    details = client.get(source["datasourceId"])
    assert details == source
    assert client.list()["pagination"]["total"] == 1


def test_python_rows_pages_by_cursor(client):
    lines = "n\n" + "".join(f"{i}\n" for i in range(2500))
    note = client.upload(content=lines, file_name="n.csv", wait=True)
    rows = list(client.rows(note["datasourceId"], limit=1000))
    assert [r["n"] for r in rows] == list(range(2500))
    filtered = list(client.rows(note["datasourceId"], filter="n >= 2400", sort="n", order="desc", limit=30))
    assert [r["n"] for r in filtered] == list(range(2499, 2399, -1))


def test_python_errors_are_typed(client):
    with pytest.raises(DatasourceNotFound) as caught:
        client.get("00000000-0000-0000-0000-000000000000")
    assert caught.value.code == "DATASOURCE_NOT_FOUND"
    assert caught.value.details == {"datasourceId": "00000000-0000-0000-0000-000000000000"}
    with pytest.raises(InvalidParameters) as caught:
        client.list(limit=5000)
    assert caught.value.details["parameter"] == "limit" and caught.value.details["max"] == 100
    with pytest.raises(ProcessingFailed) as caught:
        client.upload(content="", file_name="empty.csv", wait=True)
    assert "empty" in caught.value.details["message"]
    assert issubclass(ProcessingFailed, datasource_agent.DatasourceAgentError)


def test_python_download_and_delete(client):
    note = client.upload(PRODUCTS, wait=True)
    link = client.download(note["datasourceId"], expires_in=60)
    with urllib.request.urlopen(link["downloadUrl"]) as response:
        assert response.read() == PRODUCTS.read_bytes()
    assert client.delete(note["datasourceId"])["message"] == "Data source deleted successfully"
    with pytest.raises(DatasourceNotFound):
        client.delete(note["datasourceId"])


def test_python_close_exits_cleanly(store):
    c = Client(agent_binary(), store=store)
    assert c.close() == 0


def run_cli(args, store, env_extra=None):
    env = dict(os.environ, DATASOURCE_AGENT=agent_binary(), DATASOURCE_AGENT_STORE=str(store), PYTHONPATH=str(ROOT / "clients" / "python"))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "datasource_agent", *args], capture_output=True, text=True, env=env, timeout=60)


def test_python_cli(store, tmp_path):
    out = run_cli(["upload", str(PRODUCTS), "--wait"], store)
    assert out.returncode == 0, out.stderr
    id = json.loads(out.stdout)["datasourceId"]
    assert "end" in out.stderr  # progress lines (stderr is not a terminal here)
    out = run_cli(["data", id, "--filter", "price > 300", "--sort", "price", "--limit", "2"], store)
    assert out.returncode == 0 and len(json.loads(out.stdout)["data"]) == 2
    out = run_cli(["get", "nope"], store)
    assert out.returncode == 1 and json.loads(out.stderr)["code"] == "DATASOURCE_NOT_FOUND"
    target = tmp_path / "copy.csv"
    out = run_cli(["download", id, "--out", str(target)], store)
    assert out.returncode == 0 and target.read_bytes() == PRODUCTS.read_bytes()
    out = run_cli(["call", "datasources/list", '{"limit": 1}'], store)
    assert json.loads(out.stdout)["pagination"]["limit"] == 1


def shell_env(store, with_jq, tmp_path):
    env = dict(os.environ, DATASOURCE_AGENT=agent_binary(), DATASOURCE_AGENT_STORE=str(store))
    if not with_jq:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for tool in ["bash", "sed", "head", "cat", "realpath", "dirname", "env"]:
            target = shutil.which(tool)
            if target and not (bin_dir / tool).exists():
                (bin_dir / tool).symlink_to(target)
        env["PATH"] = str(bin_dir)
    return env


def ds(args, env):
    return subprocess.run(["bash", str(SHELL), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("with_jq", [True, False])
def test_shell_client(store, tmp_path, with_jq):
    if with_jq and not shutil.which("jq"):
        pytest.skip("jq is not installed")
    env = shell_env(store, with_jq, tmp_path)
    bash = shutil.which("bash")
    run = lambda args: subprocess.run([bash, str(SHELL), *args], capture_output=True, text=True, env=env, timeout=60)
    out = run(["upload", str(PRODUCTS), "--wait"])
    assert out.returncode == 0, out.stderr
    note = json.loads(out.stdout)
    assert note["status"] == "completed"
    id = note["datasourceId"]
    assert ("\n  " in out.stdout) == with_jq  # pretty only with jq
    out = run(["list", "--status", "completed", "--limit", "5"])
    assert out.returncode == 0 and json.loads(out.stdout)["dataSources"][0]["datasourceId"] == id
    out = run(["get", id])
    assert json.loads(out.stdout)["rowCount"] == 36
    out = run(["data", id, "--filter", "category = 'Toys' AND price > 1", "--sort", "price", "--order", "desc", "--page", "1", "--limit", "3"])
    page = json.loads(out.stdout)
    assert out.returncode == 0 and all(r["category"] == "Toys" for r in page["data"])
    prices = [r["price"] for r in page["data"]]
    assert prices == sorted(prices, reverse=True)
    target = tmp_path / f"copy-{with_jq}.csv"
    out = run(["download", id, "--expires", "60", "--out", str(target)])
    assert out.returncode == 0, out.stderr
    assert target.read_bytes() == PRODUCTS.read_bytes()
    out = run(["call", "datasources/list", '{"limit":1}'])
    assert json.loads(out.stdout)["pagination"]["limit"] == 1
    # errors: JSON on stderr, exit 1
    out = run(["get", "00000000-0000-0000-0000-000000000000"])
    assert out.returncode == 1 and out.stdout == ""
    assert json.loads(out.stderr) == {"error": "Data source not found", "code": "DATASOURCE_NOT_FOUND",
                                      "details": {"datasourceId": "00000000-0000-0000-0000-000000000000"}}
    out = run(["data", id, "--filter", "price > 'x'"])
    error = json.loads(out.stderr)
    assert out.returncode == 1 and error["code"] == "INVALID_PARAMETERS" and error["details"]["position"] == 8
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out = run(["upload", str(empty), "--wait"])
    error = json.loads(out.stderr.splitlines()[-1])  # after the progress lines
    assert out.returncode == 1 and error["code"] == "PROCESSING_FAILED" and error["error"] == "Data source processing failed"
    out = run(["delete", id])
    assert out.returncode == 0 and json.loads(out.stdout)["message"] == "Data source deleted successfully"


def test_python_client_query_and_export(store, tmp_path):
    import csv
    import io
    import urllib.request

    from agentproc import agent_binary
    from datasource_agent import Client, InvalidParameters

    path = tmp_path / "p.csv"
    path.write_text("sku,category,price\nA1,Toys,10\nA2,Toys,20\nA3,Books,5\n")
    with Client(agent_binary(), store=store) as client:
        source = client.upload(str(path), wait=True)
        id = source["datasourceId"]
        # The one parameter in each store's dialect (SQLite's `?`, PostgreSQL's `$1`).
        placeholder = "$1" if is_postgres(store) else "?"
        result = client.query(f'SELECT category, sum(price) AS total FROM p WHERE price > {placeholder} GROUP BY 1 ORDER BY 1',
                              [1], sources={"p": id}, timeout_ms=5000)
        assert result["rows"] == [{"category": "Books", "total": 5}, {"category": "Toys", "total": 30}]
        link = client.export(id, "csv", sort=["category", "price"], order=["asc", "desc"], columns=["sku"])
        with urllib.request.urlopen(link["downloadUrl"], timeout=10) as response:
            rows = list(csv.reader(io.StringIO(response.read().decode(), newline="")))
        assert rows == [["sku"], ["A3"], ["A2"], ["A1"]]
        try:
            client.query("DELETE FROM p", sources={"p": id})
            raise AssertionError("a write was accepted")
        except InvalidParameters as error:
            assert error.details["parameter"] == "sql"
