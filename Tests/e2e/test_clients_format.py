"""The CLIs' --format, --store and help, and the Python API's shapes and keyword names (issue 9,
item 14)."""
import csv
import io
import json
import os
import pty
import subprocess
import sys

import pytest

from agentproc import ROOT, agent_binary

sys.path.insert(0, str(ROOT / "clients" / "python"))
from datasource_agent import Client, InvalidParameters  # noqa: E402

SHELL = ROOT / "clients" / "shell" / "ds"
PRODUCTS = ROOT / "examples" / "products.csv"
TRICKY = 'name,note,price,ok\n"Widget, large","He said ""hi""",12.5,yes\nGadget,"two\nlines",3,no\nZürich café,,7,\n'
VERBS = ["list", "get", "data", "upload", "delete", "download", "call"]
OPTIONS = {
    "list": ["--status", "--page", "--limit"],
    "data": ["--filter", "--sort", "--order", "--page", "--limit"],
    "upload": ["--wait"],
    "download": ["--expires", "--out"],
}


def env_for(store=None, **extra):
    env = {k: v for k, v in os.environ.items() if k != "DATASOURCE_AGENT_STORE"}
    env.update(DATASOURCE_AGENT=agent_binary(), PYTHONPATH=str(ROOT / "clients" / "python"))
    if store is not None:
        env["DATASOURCE_AGENT_STORE"] = str(store)
    env.update(extra)
    return env


def run_bytes(command, env):
    """Like run(text=True) but without newline translation, so CRLF stays visible."""
    out = subprocess.run(command, capture_output=True, env=env, timeout=60)
    return subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(), out.stderr.decode())


def shell(args, env):
    return run_bytes(["bash", str(SHELL), *args], env)


def python_cli(args, env):
    return run_bytes([sys.executable, "-m", "datasource_agent", *args], env)


CLIS = {"shell": shell, "python": python_cli}


def text(value):
    """A CSV cell as both CLIs write it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@pytest.fixture
def tricky(store, tmp_path):
    path = tmp_path / "tricky.csv"
    path.write_text(TRICKY, encoding="utf-8")
    with Client(agent_binary(), store=store) as client:
        products = client.upload(PRODUCTS, wait=True)
        source = client.upload(path, wait=True)
        json_out = {
            "list": client.list(),
            "get": client.get(source["datasourceId"]),
            "data": client.data(source["datasourceId"]),
            "products": client.data(products["datasourceId"], limit=5),
        }
    return source["datasourceId"], products["datasourceId"], json_out


def test_help_for_every_verb_and_option(store):
    env = env_for(store)
    for name, run in CLIS.items():
        out = run(["--help"], env)
        assert out.returncode == 0, (name, out.stderr)
        for word in VERBS + ["--format", "--store"]:
            assert word in out.stdout, (name, word)
        for verb in VERBS:
            out = run([verb, "--help"], env)
            assert out.returncode == 0, (name, verb, out.stderr)
            for option in OPTIONS.get(verb, []) + ["--format", "--store"]:
                assert option in out.stdout, (name, verb, option)
            assert "json" in out.stdout and "table" in out.stdout and "csv" in out.stdout
        bad = run(["list", "--format", "yaml"], env)
        assert bad.returncode == 2 and bad.stdout == ""
    # The shell client refuses options that its verb does not take (nothing unknown is sent).
    out = shell(["get", "x", "--limit", "5"], env)
    assert out.returncode == 2 and "--limit" in out.stderr


@pytest.mark.parametrize("cli", CLIS)
def test_store_option_is_passed_to_the_agent(cli, tmp_path):
    run = CLIS[cli]
    env = env_for()  # no DATASOURCE_AGENT_STORE
    mine, other = tmp_path / "mine", tmp_path / "other"
    out = run(["upload", str(PRODUCTS), "--wait", "--store", str(mine)], env)
    assert out.returncode == 0, out.stderr
    assert mine.is_dir() and not other.exists()
    listed = json.loads(run(["--store", str(mine), "list"], env).stdout)
    assert [s["fileName"] for s in listed["dataSources"]] == ["products.csv"]
    assert json.loads(run(["list", "--store", str(other)], env).stdout)["pagination"]["total"] == 0


def test_csv_output(tricky, store):
    id, products_id, json_out = tricky
    env = env_for(store)
    for name, run in CLIS.items():
        # data → the rows, RFC 4180 quoting (commas, quotes, newlines), CRLF line ends
        out = run(["data", id, "--format", "csv"], env)
        assert out.returncode == 0, (name, out.stderr)
        assert '"Widget, large","He said ""hi"""' in out.stdout and "\r\n" in out.stdout
        records = list(csv.reader(io.StringIO(out.stdout, newline="")))
        data = json_out["data"]
        names = [c["name"] for c in data["columns"]]
        assert records[0] == names
        assert records[1:] == [[text(row[n]) for n in names] for row in data["data"]]
        assert records[2][1] == "two\nlines" and records[3][0] == "Zürich café"
        # list → one row per data source
        out = run(["list", "--format", "csv"], env)
        records = list(csv.reader(io.StringIO(out.stdout, newline="")))
        assert records[0] == ["datasourceId", "fileName", "contentType", "fileSize", "status", "uploadedAt", "processedAt"]
        assert [r[0] for r in records[1:]] == [s["datasourceId"] for s in json_out["list"]["dataSources"]]
        # get → one row per column
        out = run(["get", id, "--format", "csv"], env)
        records = list(csv.reader(io.StringIO(out.stdout, newline="")))
        assert records[0][:3] == ["name", "type", "sampleValues"]
        assert [(r[0], r[1]) for r in records[1:]] == [(c["name"], c["type"]) for c in json_out["get"]["columns"]]
        assert json.loads(records[1][2]) == json_out["get"]["columns"][0]["sampleValues"]
    # Both CLIs write the same bytes.
    for args in (["data", id], ["data", products_id, "--limit", "5"], ["list"], ["get", id], ["download", id]):
        outputs = {name: run([*args, "--format", "csv"], env).stdout for name, run in CLIS.items()}
        if args[0] != "download":  # download links differ per call
            assert outputs["shell"] == outputs["python"], args


def test_table_output(tricky, store):
    id, products_id, json_out = tricky
    env = env_for(store)
    outputs = {}
    for name, run in CLIS.items():
        out = run(["list", "--format", "table"], env)
        assert out.returncode == 0, (name, out.stderr)
        lines = out.stdout.splitlines()
        assert lines[0].split() == ["datasourceId", "fileName", "contentType", "fileSize", "status", "uploadedAt", "processedAt"]
        assert set(lines[1]) == {"-", " "}
        assert [line.split()[0] for line in lines[2:4]] == [s["datasourceId"] for s in json_out["list"]["dataSources"]]
        assert lines[-1] == "page 1 of 1, 2 in all"

        out = run(["data", products_id, "--limit", "5", "--format", "table"], env)
        lines = out.stdout.splitlines()
        rows = json_out["products"]["data"]
        assert lines[0].split() == [c["name"] for c in json_out["products"]["columns"]]
        assert len(lines) == 2 + len(rows) + 1 and lines[2].startswith(rows[0]["sku"] + "  ")
        assert lines[-1] == "page 1 of 8, 36 in all"

        out = run(["data", id, "--format", "table"], env)
        assert "two lines" in out.stdout  # one line per row

        out = run(["get", id, "--format", "table"], env)
        kv, _, columns = out.stdout.partition("\n\n")
        fields = dict(line.split(None, 1) if " " in line else (line, "") for line in kv.splitlines())
        assert fields["datasourceId"] == id and fields["rowCount"] == "3" and fields["status"] == "completed"
        assert fields["processingStats.cleanedRows"] == "3"
        assert [line.split()[0] for line in columns.splitlines()[2:]] == ["name", "note", "price", "ok"]
        outputs[name] = {args: run([*args, "--format", "table"], env).stdout for args in (("list",), ("get", id), ("data", id))}
    assert outputs["shell"] == outputs["python"]


def on_a_terminal(command, env):
    """Runs command with stdout on a pseudo-terminal; returns what it printed there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(command, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode().replace("\r\n", "\n")


def test_default_format_is_table_on_a_terminal_and_json_in_a_pipe(tricky, store):
    env = env_for(store)
    for command in (["bash", str(SHELL), "list"], [sys.executable, "-m", "datasource_agent", "list"]):
        code, printed = on_a_terminal(command, env)
        assert code == 0 and printed.split()[:2] == ["datasourceId", "fileName"], printed
        assert printed.splitlines()[-1] == "page 1 of 1, 2 in all"
        piped = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert json.loads(piped.stdout)["pagination"]["total"] == 2


def test_python_upload_returns_the_data_source_either_way(store):
    with Client(agent_binary(), store=store) as client:
        quick = client.upload(PRODUCTS)
        waited = client.upload(PRODUCTS, wait=True)
        assert quick["status"] == "processing" and waited["status"] == "completed"
        for key in ("datasourceId", "fileName", "contentType", "fileSize", "status", "uploadedAt", "processedAt"):
            assert key in quick and key in waited
        assert "previousStatus" not in waited  # not the statusChanged notification
        assert waited == client.get(waited["datasourceId"])
        assert waited["rowCount"] == 36 and [c["name"] for c in waited["columns"]][:2] == ["sku", "name"]


def test_python_keywords_are_snake_case(store):
    seen = []
    with Client(agent_binary(), store=store) as client:
        csv_source = client.upload(content="a,b\n2,x\n1,y\n", file_name="ab.csv", content_type="text/csv",
                                   work_done_token="my-token", progress=seen.append, wait=True)
        assert csv_source["fileName"] == "ab.csv" and csv_source["contentType"] == "text/csv"
        assert seen and seen[-1]["kind"] == "end"
        json_source = client.upload(content='[{"a": 1}]', file_name="a.json", wait=True)
        listed = client.list(content_type="application/json", status="completed", page=1, limit=5)
        assert [s["datasourceId"] for s in listed["dataSources"]] == [json_source["datasourceId"]]
        assert client.list(contentType="application/json")["pagination"]["total"] == 1  # camelCase still works
        id = csv_source["datasourceId"]
        page = client.data(id, sort="a", order="desc", limit=1)
        assert page["data"] == [{"a": 2, "b": "x"}] and page["pagination"]["nextCursor"]
        assert [r["a"] for r in client.rows(id, sort=["a"], order=["asc"])] == [1, 2]
        assert client.data(datasource_id=id, filter="a = 1")["data"] == [{"a": 1, "b": "y"}]
        link = client.download(id, expires_in=60)
        assert link["fileName"] == "ab.csv"
        assert client.get(datasource_id=id)["rowCount"] == 2
        with pytest.raises(InvalidParameters) as caught:  # the agent names what it did not know
            client.list(order_by="fileName")
        assert caught.value.details["parameter"] in ("orderBy", "order_by")
