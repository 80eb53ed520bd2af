"""Regression tests for the defects found by trying the agent as a new user and under attack
(issue 9): crashes, hangs, symlinks, unsafe inputs, strict params, framing limits."""
import json
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from agentproc import Agent, agent_binary
from conftest import all_rows, upload_and_wait, write_big_csv

SMALL = "id,name,price\n1,alpha,10\n2,bravo,20\n3,charlie,30\n"


def invalid(agent, method, params):
    error = agent.error(method, params)
    assert error["code"] == -32602, error
    assert error["data"]["code"] == "INVALID_PARAMETERS", error
    return error["data"]["details"]


def alive(agent):
    assert agent.call("ping", {}) == {}


@pytest.fixture
def small(agent):
    result, note = upload_and_wait(agent, fileName="small.csv", content=SMALL)
    assert note["status"] == "completed"
    return result["datasourceId"]


# ------------------------------------------------------------------ 1. arithmetic on client integers

@pytest.mark.parametrize("page", [9223372036854775807, 2147483648, 10**18])
def test_huge_page_is_an_error_not_a_crash(agent, small, page):
    details = invalid(agent, "datasources/list", {"page": page})
    assert details["parameter"] == "page" and details["max"] == 2147483647
    details = invalid(agent, "datasources/data", {"datasourceId": small, "page": page, "limit": 1000})
    assert details["parameter"] == "page" and details["max"] == 2147483647
    alive(agent)


def test_largest_page_is_an_empty_page(agent, small):
    page = agent.call("datasources/data", {"datasourceId": small, "page": 2147483647, "limit": 1000})
    assert page["data"] == [] and page["pagination"]["total"] == 3
    listing = agent.call("datasources/list", {"page": 2147483647, "limit": 100})
    assert listing["dataSources"] == [] and listing["pagination"]["total"] == 1


def test_huge_mcp_cursor_and_tool_page(store):
    with Agent(store) as mcp:
        mcp.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        mcp.notify("notifications/initialized", {})
        error = mcp.error("resources/list", {"cursor": "9223372036854775807"})
        assert error["code"] == -32602
        result = mcp.call("tools/call", {"name": "list_datasources", "arguments": {"page": 9223372036854775807}})
        assert result["isError"] is True and "INVALID_PARAMETERS" in result["content"][0]["text"]
        assert mcp.call("ping", {}) == {}


# ------------------------------------------------------------------ 2. uploads read regular files only

def test_fifo_device_and_socket_uploads_refused_and_never_block(store, tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock.csv"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        with Agent(store) as agent:
            agent.initialize()
            for path in [fifo, fifo, "/dev/zero", sock_path]:
                details = invalid(agent, "datasources/upload", {"path": str(path)})
                assert "not a regular file" in details["reason"], details
            alive(agent)
            agent.close_stdin()
            assert agent.wait(timeout=10) == 0
    finally:
        server.close()


def test_sigterm_stops_the_agent_after_refused_fifo(store, tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with Agent(store) as agent:
        agent.initialize()
        invalid(agent, "datasources/upload", {"path": str(fifo)})
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0


def test_directory_upload_refused(agent, tmp_path):
    assert "directory" in invalid(agent, "datasources/upload", {"path": str(tmp_path)})["reason"]


# ------------------------------------------------------------------ 3. symlinks are read, never followed for writes

def download_bytes(agent, id):
    link = agent.call("datasources/download", {"datasourceId": id})
    with urllib.request.urlopen(link["downloadUrl"], timeout=10) as response:
        return response.read()


def test_symlink_upload_copies_bytes_and_leaves_the_target_alone(agent, store, tmp_path):
    target = tmp_path / "real.csv"
    target.write_text(SMALL)
    os.chmod(target, 0o644)
    absolute = tmp_path / "absolute-link.csv"
    absolute.symlink_to(target)
    (tmp_path / "sub").mkdir()
    relative = tmp_path / "sub" / "relative-link.csv"
    relative.symlink_to("../real.csv")

    ids = []
    for link in [absolute, relative]:
        result, note = upload_and_wait(agent, path=str(link))
        assert note["status"] == "completed", note
        assert result["fileName"] == link.name
        ids.append(result["datasourceId"])
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644, "the user's file was chmod-ed"
    for id in ids:
        original = store / "originals" / id
        assert not original.is_symlink() and original.is_file()
        assert stat.S_IMODE(os.lstat(original).st_mode) == 0o600
    target.write_text("changed,later\n1,2\n")
    for id in ids:
        assert download_bytes(agent, id) == SMALL.encode()
    target.unlink()
    assert download_bytes(agent, ids[0]) == SMALL.encode()


# ------------------------------------------------------------------ 4. filters SQLite's parser must not limit

def test_long_and_deep_filters_within_limits(agent, small):
    cases = {
        " OR ".join(f"id = {i}" for i in range(90)): 3,
        " AND ".join(["id = 1"] * 300): 1,
        "NOT " * 50 + "id = 1": 1,
        "NOT " * 51 + "id = 1": 2,
        "(" * 64 + "id = 2" + ")" * 64: 1,
        " OR ".join(f"id={i}" for i in range(4, 400)) + " OR id=3": 1,
    }
    for expression, count in cases.items():
        assert len(expression) <= 4096
        page = agent.call("datasources/data", {"datasourceId": small, "filter": expression})
        assert page["pagination"]["total"] == count, expression[:60]


def alternating(depth):
    """AND, OR and NOT alternating `depth` levels deep, with the widest leaves."""
    expression = "id NOT IN (7, 8)"
    for level in range(depth):
        kind = level % 3
        if kind == 0:
            expression = f"(name CONTAINS 'a' OR {expression})"
        elif kind == 1:
            expression = f"(id >= 1 AND {expression})"
        else:
            expression = f"NOT ({expression})"
    return expression


def test_deepest_accepted_filter_compiles_and_one_deeper_is_refused(agent, small):
    page = agent.call("datasources/data", {"datasourceId": small, "filter": alternating(24)})
    assert page["pagination"]["total"] in range(0, 4)
    details = invalid(agent, "datasources/data", {"datasourceId": small, "filter": alternating(25)})
    assert details["parameter"] == "filter" and "24" in details["reason"]
    details = invalid(agent, "datasources/data", {"datasourceId": small, "filter": "(" * 65 + "id = 2" + ")" * 65})
    assert "nested deeper than 64" in details["reason"]


def test_errors_never_carry_sql(agent, small):
    for params in [
        {"datasourceId": small, "filter": alternating(25)},
        {"datasourceId": small, "filter": "id LIKE 'a%'"},
        {"datasourceId": small, "sort": "nope"},
    ]:
        error = agent.error("datasources/data", params)
        text = json.dumps(error)
        assert "SELECT" not in text and "sqlite" not in text.lower(), text


def test_full_disk_gives_storage_error_not_internal(tiny_disk, tmp_path):
    source = write_big_csv(tmp_path / "rows.csv", 40_000)
    small = tmp_path / "small.csv"
    small.write_text(SMALL * 200)
    with Agent(tiny_disk / "store") as agent:
        agent.initialize()
        result, note = upload_and_wait(agent, path=str(source))
        assert note["status"] == "completed", note
        id = result["datasourceId"]
        filler = tiny_disk / "filler"
        # Unbuffered, so that the write that fills the disk raises here and closing has
        # nothing left to flush.
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        # Reading still works: a sort no index can be built for is answered from a scan.
        page = agent.call("datasources/data", {"datasourceId": id, "sort": "label", "order": "desc", "limit": 1})
        assert page["data"][0]["label"] == "label 9999"
        # Writing fails with the Claro storage error, never -32603 or SQL.
        for params in [{"fileName": "x.csv", "content": SMALL * 2000}, {"path": str(small)}]:
            error = agent.error("datasources/upload", params)
            assert error["code"] == -31500 and error["data"]["code"] == "STORAGE_ERROR", error
            assert error["data"]["details"]["reason"] == "the disk is full"
        reply = agent.response(agent.request("datasources/delete", {"datasourceId": id}))
        if "error" in reply:
            assert reply["error"]["data"]["code"] == "STORAGE_ERROR", reply
            assert "DELETE" not in json.dumps(reply)
        filler.unlink()
        alive(agent)


# ------------------------------------------------------------------ 6. samples are bounded

def test_huge_cell_sample_is_truncated(agent, tmp_path):
    big = "x" * 2_000_000
    path = tmp_path / "wide.csv"
    path.write_text(f"id,text\n1,{big}\n2,short\n")
    result, note = upload_and_wait(agent, path=str(path))
    assert note["status"] == "completed"
    details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
    samples = next(c for c in details["columns"] if c["name"] == "text")["sampleValues"]
    assert samples[0] == "x" * 200 + "…" and samples[1] == "short"
    assert len(json.dumps(details)) < 10_000
    # The data itself is whole.
    assert all_rows(agent, result["datasourceId"])[0]["text"] == big


# ------------------------------------------------------------------ 7. base64 and NUL

@pytest.mark.parametrize("content", ["@@@@", "YSxiCjEsMgo=!!", "YSxiCjEsMgo===", "YS=xiCg=="])
def test_invalid_base64_refused(agent, content):
    details = invalid(agent, "datasources/upload", {"fileName": "x.csv", "content": content, "encoding": "base64"})
    assert details["parameter"] == "content" and "base64" in details["reason"]


def test_valid_base64_variants_accepted(agent):
    for content in ["YSxiCjEsMgo=", "YSxiCjEsMgo", "YSxi\nCjEs\nMgo="]:
        result, note = upload_and_wait(agent, fileName="x.csv", content=content, encoding="base64")
        assert note["status"] == "completed" and note["rowCount"] == 1, (content, note)


def test_nul_in_path_refused(agent, tmp_path):
    real = tmp_path / "n.csv"
    real.write_text(SMALL)
    details = invalid(agent, "datasources/upload", {"path": f"{real}\u0000/../../etc/passwd"})
    assert details["parameter"] == "path" and "NUL" in details["reason"]
    assert agent.call("datasources/list", {})["pagination"]["total"] == 0


# ------------------------------------------------------------------ 8. what path uploads may read

def test_store_files_cannot_be_uploaded(agent, store):
    for name in ["secret", "catalog.sqlite", "originals"]:
        details = invalid(agent, "datasources/upload", {"path": str(store / name)})
        assert details["parameter"] == "path", details
    link = store.parent / "sneaky.csv"
    link.symlink_to(store / "secret")
    assert "store" in invalid(agent, "datasources/upload", {"path": str(link)})["reason"]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_allow_path_restricts_uploads(store, tmp_path, how):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "ok.csv").write_text(SMALL)
    (tmp_path / "elsewhere.csv").write_text(SMALL)
    (allowed / "escape.csv").symlink_to(tmp_path / "elsewhere.csv")
    args = ["--allow-path", str(allowed)] if how == "flag" else []
    env = {"DATASOURCE_AGENT_ALLOW_PATH": str(allowed)} if how == "env" else {}
    with Agent(store, args=args, env=env) as agent:
        agent.initialize()
        result, note = upload_and_wait(agent, path=str(allowed / "ok.csv"))
        assert note["status"] == "completed"
        for path in [tmp_path / "elsewhere.csv", allowed / "escape.csv"]:
            details = invalid(agent, "datasources/upload", {"path": str(path)})
            assert "--allow-path" in details["reason"] and details["allowed"] == [str(allowed)]
        # Inline uploads are not paths and stay allowed.
        upload_and_wait(agent, fileName="inline.csv", content=SMALL)


# ------------------------------------------------------------------ 9. misspelt names are errors, with help

def test_unknown_parameters_rejected_with_allowed(agent, small):
    details = invalid(agent, "datasources/data", {"datasourceId": small, "sortt": "price"})
    assert details["parameter"] == "sortt" and "sort" in details["allowed"]
    assert "did you mean 'sort'" in details["reason"]
    details = invalid(agent, "datasources/list", {"order_by": "price"})
    assert details["parameter"] == "order_by" and details["allowed"] == ["page", "limit", "status", "contentType", "maxAge"]
    details = invalid(agent, "datasources/upload", {"fileName": "a.csv", "content": SMALL, "options": {"delimter": ","}})
    assert details["parameter"] == "options.delimter" and "delimiter" in details["allowed"]


def test_protocol_fields_still_accepted(agent, small):
    agent.call("datasources/list", {"workDoneToken": "t1", "_meta": {"x": 1}, "partialResultToken": "p"})
    agent.call("datasources/get", {"datasourceId": small, "_meta": {}})


def test_filter_help(agent, small):
    details = invalid(agent, "datasources/data", {"datasourceId": small, "filter": "nme = 'a'"})
    assert "id, name, price" in details["reason"] and details["position"] == 0
    details = invalid(agent, "datasources/data", {"datasourceId": small, "filter": "name LIKE 'a%'"})
    assert "CONTAINS" in details["reason"] and details["position"] == 5


def test_unknown_method_and_tool_suggest_the_closest(agent, store):
    error = agent.error("datasources/lsit", {})
    assert error["code"] == -32601 and error["data"]["suggestion"] == "datasources/list"
    with Agent(store) as mcp:
        mcp.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        error = mcp.error("tools/call", {"name": "list_datasource", "arguments": {}})
        assert error["data"]["suggestion"] == "list_datasources"
        tools = mcp.call("tools/list", {})["tools"]
        assert all(t["inputSchema"]["additionalProperties"] is False for t in tools)
        result = mcp.call("tools/call", {"name": "list_datasources", "arguments": {"pagee": 1}})
        assert result["isError"] is True and "pagee" in result["content"][0]["text"]


# ------------------------------------------------------------------ 10. framing limits

def test_oversized_header_block_rejected_even_in_one_read(store):
    with Agent(store, framing="lsp") as agent:
        agent.initialize()
        body = b'{"jsonrpc":"2.0","id":7,"method":"ping"}'
        header = b"Content-Length: %d\r\nX-Padding: %s\r\n\r\n" % (len(body), b"a" * 17000)
        agent.send_raw(header + body)
        reply = agent.next_message()
        assert reply["id"] is None and reply["error"]["code"] == -32700
        assert "16384" in reply["error"]["data"]["reason"]
        alive(agent)


def test_duplicate_content_length_rejected(store):
    with Agent(store, framing="lsp") as agent:
        agent.initialize()
        agent.send_raw(b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}")
        reply = agent.next_message()
        assert reply["error"]["code"] == -32700 and "duplicate" in reply["error"]["data"]["reason"]


# ------------------------------------------------------------------ 12. accepted uploads finish after the client leaves

@pytest.mark.parametrize("ending", ["exit", "eof"])
def test_upload_finishes_after_a_short_lived_client_leaves(store, tmp_path, ending):
    source = write_big_csv(tmp_path / "big.csv", 300_000)
    with Agent(store) as agent:
        agent.initialize()
        id = agent.call("datasources/upload", {"path": str(source)})["datasourceId"]
        started = time.monotonic()
        if ending == "exit":
            assert agent.shutdown_and_exit() == 0
        else:
            agent.close_stdin()
            assert agent.wait() == 0
        assert time.monotonic() - started < 3, "leaving must stay prompt"
    with Agent(store) as later:
        later.initialize()
        deadline = time.monotonic() + 60
        while True:
            details = later.call("datasources/get", {"datasourceId": id})
            if details["status"] != "processing" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert details["status"] == "completed" and details["rowCount"] == 300_000, details


# ------------------------------------------------------------------ 16. environment and help

def test_read_only_and_max_message_bytes_from_environment(store):
    with Agent(store, env={"DATASOURCE_AGENT_READ_ONLY": "1", "DATASOURCE_AGENT_MAX_MESSAGE_BYTES": "2000"}) as agent:
        agent.initialize()
        error = agent.error("datasources/upload", {"fileName": "a.csv", "content": "a\n1\n"})
        assert error["data"]["code"] == "ACCESS_DENIED"
        agent.send_raw(b'{"jsonrpc":"2.0","id":99,"method":"ping","params":{"pad":"' + b"x" * 3000 + b'"}}\n')
        reply = agent.next_message()
        assert reply["error"]["message"] == "Message too large"


def test_help_is_accurate():
    top = subprocess.run([agent_binary(), "--help"], capture_output=True, text=True).stdout
    assert "newline-delimited JSON" in top and "LSP or MCP framing" not in top
    serve = subprocess.run([agent_binary(), "serve", "--help"], capture_output=True, text=True).stdout
    for fragment in ["~/.local/share/datasource-agent", "default warning", "DATASOURCE_AGENT_READ_ONLY",
                     "DATASOURCE_AGENT_MAX_MESSAGE_BYTES", "--allow-path", "--base-url", "CLARO_API_KEY", "--cache-ttl"]:
        assert fragment in serve, fragment
    assert "(default: 67108864)" not in serve
    assert "not yet available" not in serve, "the remote backend is there"


def test_openrpc_command_prints_the_committed_file():
    printed = subprocess.run([agent_binary(), "openrpc"], capture_output=True, check=True).stdout
    committed = (Path(__file__).resolve().parents[2] / "protocol" / "openrpc.json").read_bytes()
    assert printed == committed


# ------------------------------------------------------------------ 18. params: null

def test_params_null_is_absent(store):
    with Agent(store) as agent:
        agent.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": None})
        assert "result" in agent.response(1)
        agent.send({"jsonrpc": "2.0", "id": 2, "method": "datasources/list", "params": None})
        assert agent.response(2)["result"]["pagination"]["total"] == 0
        agent.send({"jsonrpc": "2.0", "id": 3, "method": "shutdown", "params": None})
        assert agent.response(3)["result"] is None
        agent.notify("exit")
        assert agent.wait() == 0


# ------------------------------------------------------------------ shutdown and concurrency shape

def test_requests_written_after_sigterm_are_answered_exactly_once(store):
    with Agent(store) as agent:
        agent.initialize()
        agent.proc.send_signal(signal.SIGTERM)
        ids = [agent.request("datasources/list", {}) for _ in range(20)]
        agent.close_stdin()
        assert agent.wait(timeout=10) == 0
        answers = {}
        while True:
            try:
                message = agent.next_message(timeout=2)
            except (EOFError, Exception):
                break
            if isinstance(message, dict) and "id" in message and "method" not in message:
                assert message["id"] not in answers, "answered twice"
                answers[message["id"]] = message
        for id in ids:
            reply = answers[id]
            assert "result" in reply or reply["error"]["data"]["reason"] == "server is shutting down", reply


def test_queued_uploads_are_data_not_threads(agent, tmp_path):
    def threads():
        return len(os.listdir(f"/proc/{agent.proc.pid}/task"))

    source = write_big_csv(tmp_path / "big.csv", 60_000)
    before = threads()
    ids = [agent.call("datasources/upload", {"path": str(source)})["datasourceId"] for _ in range(24)]
    during = threads()
    # Two loads at a time, each a worker with a reading and an insert thread (6), plus what the
    # runtime's own pools add on a busy machine; 24 uploads as threads would be 24 or more.
    assert during - before <= 12, (before, during)
    for id in ids:
        agent.wait_notification("datasources/statusChanged", lambda p, id=id: p["datasourceId"] == id, timeout=120)
