"""The stdio transport from the outside: framing, JSON-RPC edge cases, lifecycle, signals."""
import json
import os
import signal
import subprocess
import time

import pytest

from agentproc import Agent, agent_binary


# ---------------------------------------------------------------- lifecycle

def test_initialize_result_and_clean_exit(store):
    with Agent(store) as a:
        result = a.initialize()
        assert result["serverInfo"]["name"] == "datasource-agent"
        assert "datasources/list" in result["capabilities"]["datasources"]["methods"]
        assert a.shutdown_and_exit() == 0
        assert a.reader.garbage == []


def test_exit_without_shutdown_is_code_1(store):
    with Agent(store) as a:
        a.initialize()
        a.notify("exit")
        assert a.wait() == 1


def test_exit_before_initialize_is_code_1(store):
    with Agent(store) as a:
        a.notify("exit")
        assert a.wait() == 1


def test_request_before_initialize_is_32002(store):
    with Agent(store) as a:
        err = a.error("datasources/list")
        assert err["code"] == -32002
        # initialize still works afterwards
        a.initialize()
        assert a.call("datasources/list")["pagination"]["total"] == 0


def test_notification_before_initialize_is_ignored(store):
    with Agent(store) as a:
        a.notify("initialized", {})
        a.notify("something/else", {})
        a.initialize()
        assert a.call("datasources/list")["dataSources"] == []


def test_initialize_twice_is_invalid_request(agent):
    err = agent.error("initialize", {})
    assert err["code"] == -32600


def test_requests_after_shutdown_are_invalid(agent):
    assert agent.call("shutdown") is None
    assert agent.error("datasources/list")["code"] == -32600
    assert agent.error("shutdown")["code"] == -32600
    agent.notify("exit")
    assert agent.wait() == 0


def test_end_of_stdin_exits_0(store):
    with Agent(store) as a:
        a.initialize()
        a.close_stdin()
        assert a.wait() == 0


def test_end_of_stdin_drains_in_flight_requests(store):
    with Agent(store) as a:
        a.initialize()
        ids = [a.request("debug/sleep", {"milliseconds": 600}) for _ in range(3)]
        list_id = a.request("datasources/list")
        a.close_stdin()
        assert a.wait(timeout=15) == 0
        for id in ids:
            assert a.response(id)["result"] == {"slept": 600}
        assert "result" in a.response(list_id)


def test_sigterm_drains_and_exits_0(store):
    with Agent(store) as a:
        a.initialize()
        id = a.request("debug/sleep", {"milliseconds": 800})
        time.sleep(0.2)
        a.proc.send_signal(signal.SIGTERM)
        assert a.wait(timeout=15) == 0
        assert a.response(id)["result"] == {"slept": 800}


def test_parent_death_via_process_id(store):
    parent = subprocess.Popen(["sleep", "60"])
    with Agent(store) as a:
        a.initialize({"processId": parent.pid, "capabilities": {}})
        assert a.call("datasources/list")["dataSources"] == []
        parent.kill()
        parent.wait()
        assert a.wait(timeout=5) == 1


def test_sigpipe_ignored_when_client_closes_stdout(store):
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [agent_binary(), "--store", str(store)], stdin=subprocess.PIPE, stdout=write_end, stderr=subprocess.DEVNULL)
    os.close(write_end)
    os.close(read_end)  # nobody reads the agent's answers any more: writes get EPIPE
    lines = [b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}\n']
    lines += [b'{"jsonrpc":"2.0","id":%d,"method":"datasources/list"}\n' % i for i in range(1, 50)]
    proc.stdin.write(b"".join(lines))
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


# ---------------------------------------------------------------- JSON-RPC edge cases

def raw_reply(agent, text: str, timeout=5.0):
    agent.send_raw(agent.frame(text.encode()))
    return agent.next_message(timeout)


def test_parse_error_has_null_id(agent):
    reply = raw_reply(agent, '{"jsonrpc":"2.0","id":1,"method":')
    assert reply["id"] is None and reply["error"]["code"] == -32700
    # the process survives
    assert agent.call("datasources/list")["pagination"]["total"] == 0


@pytest.mark.parametrize(
    "text, expected_id",
    [
        ('{"jsonrpc":"1.0","id":7,"method":"datasources/list"}', 7),
        ('{"id":8,"method":"datasources/list"}', 8),
        ('{"jsonrpc":"2.0","id":9,"method":5}', 9),
        ('{"jsonrpc":"2.0","id":{"a":1},"method":"datasources/list"}', None),
        ('{"jsonrpc":"2.0","id":[1],"method":"datasources/list"}', None),
        ('{"jsonrpc":"2.0","id":10,"method":"datasources/list","params":5}', 10),
        ('"just a string"', None),
        ("42", None),
    ],
)
def test_invalid_requests(agent, text, expected_id):
    reply = raw_reply(agent, text)
    assert reply["error"]["code"] == -32600
    assert reply["id"] == expected_id


def test_unknown_method(agent):
    assert agent.error("no/such/method")["code"] == -32601


def test_unknown_notification_gets_no_reply(agent):
    agent.notify("no/such/notification", {})
    assert agent.call("datasources/list")["dataSources"] == []
    assert agent.pending == []


def test_invalid_params_names_the_parameter(agent):
    err = agent.error("datasources/list", {"limit": "ten"})
    assert err["code"] == -32602
    assert err["message"] == "Invalid parameters"
    assert err["data"]["code"] == "INVALID_PARAMETERS"
    assert err["data"]["details"]["parameter"] == "limit"
    assert err["data"]["details"]["value"] == "ten"


def test_positional_params_are_invalid_params(agent):
    assert agent.error("datasources/list", [1, 2])["code"] == -32602


@pytest.mark.parametrize("id", ["abc", "", 0, -5, 12345678901, 1.5])
def test_string_and_number_ids_echoed(agent, id):
    reply = agent.response(agent.request("datasources/list", id=id))
    assert reply["id"] == id and "result" in reply


def test_null_id_is_answered(agent):
    reply = raw_reply(agent, '{"jsonrpc":"2.0","id":null,"method":"datasources/list"}')
    assert reply["id"] is None and "result" in reply


def test_empty_batch_is_one_error_object(agent):
    reply = raw_reply(agent, "[]")
    assert isinstance(reply, dict)
    assert reply["error"]["code"] == -32600 and reply["id"] is None


def test_batch_of_one_invalid_element(agent):
    reply = raw_reply(agent, "[1]")
    assert isinstance(reply, list) and len(reply) == 1
    assert reply[0]["error"]["code"] == -32600 and reply[0]["id"] is None


def test_batch_of_invalid_elements(agent):
    reply = raw_reply(agent, "[1,2,3]")
    assert len(reply) == 3 and all(r["error"]["code"] == -32600 for r in reply)


def test_all_notification_batch_gets_no_reply(agent):
    agent.send_raw(agent.frame(b'[{"jsonrpc":"2.0","method":"initialized"},{"jsonrpc":"2.0","method":"x/y"}]'))
    assert agent.call("datasources/list")["dataSources"] == []
    assert agent.pending == []


def test_mixed_batch_is_one_array(agent):
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "datasources/list"},
        {"jsonrpc": "2.0", "method": "initialized"},
        {"jsonrpc": "2.0", "id": "b", "method": "no/such"},
        {"jsonrpc": "2.0", "id": "c", "method": "datasources/list", "params": {"limit": 0}},
        {"foo": "bar"},
    ]
    reply = raw_reply(agent, json.dumps(batch))
    assert isinstance(reply, list)
    by_id = {r["id"]: r for r in reply if r["id"] is not None}
    assert set(by_id) == {"a", "b", "c"}
    assert "result" in by_id["a"]
    assert by_id["b"]["error"]["code"] == -32601
    assert by_id["c"]["error"]["code"] == -32602
    assert len(reply) == 4


def test_batch_with_parse_error_is_single_parse_error(agent):
    reply = raw_reply(agent, '[{"jsonrpc":"2.0","id":1,"method":"datasources/list"},')
    assert reply["error"]["code"] == -32700 and reply["id"] is None


def test_deeply_nested_message_is_a_parse_error_not_a_crash(agent):
    reply = raw_reply(agent, "[" * 100000 + "]" * 100000)
    assert reply["error"]["code"] == -32700
    assert agent.call("datasources/list")["dataSources"] == []


def test_invalid_utf8_does_not_crash(agent):
    agent.send_raw(agent.frame(b'{"jsonrpc":"2.0","id":1,"method":"datasources/list","params":{"contentType":"\xff\xfe"}}'))
    reply = agent.response(1)
    assert "result" in reply or "error" in reply
    assert agent.call("datasources/list")["dataSources"] == []


# ---------------------------------------------------------------- framing

def test_lsp_framing_answers_in_lsp(lsp_agent):
    assert lsp_agent.call("datasources/list")["pagination"] == {"page": 1, "limit": 20, "total": 0, "totalPages": 0}
    assert lsp_agent.reader.garbage == []
    assert bytes(lsp_agent.reader.raw).startswith(b"Content-Length: ")


def test_lsp_headers_case_insensitive_extra_headers_and_lowercase_c(store):
    with Agent(store, framing="lsp") as a:
        body = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}'
        a.send_raw(b"content-LENGTH:   %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf8\r\nX-Other: 1\r\n\r\n" % len(body) + body)
        assert "result" in a.response(1)
        body = '{"jsonrpc":"2.0","id":2,"method":"datasources/list","params":{"contentType":"text/é"}}'.encode()
        # Content-Length counts bytes, not characters.
        a.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert "result" in a.response(2)


def test_lsp_malformed_headers_are_reported_and_skipped(lsp_agent):
    lsp_agent.send_raw(b"Content-Type: text/plain\r\n\r\n")
    reply = lsp_agent.next_message()
    assert reply["error"]["code"] == -32700 and reply["id"] is None
    lsp_agent.send_raw(b"Content-Length: abc\r\n\r\n")
    reply = lsp_agent.next_message()
    assert reply["error"]["code"] == -32700
    assert lsp_agent.call("datasources/list")["dataSources"] == []


def test_lsp_body_that_is_not_json(lsp_agent):
    lsp_agent.send_raw(b"Content-Length: 5\r\n\r\nhello")
    assert lsp_agent.next_message()["error"]["code"] == -32700
    assert lsp_agent.call("datasources/list")["dataSources"] == []


def test_content_length_above_cap_is_rejected_without_buffering(store):
    with Agent(store, framing="lsp", args=["--max-message-bytes", "1000"]) as a:
        a.initialize()
        big = json.dumps({"jsonrpc": "2.0", "id": 99, "method": "datasources/list", "params": {"contentType": "x" * 5000}}).encode()
        a.send_raw(b"Content-Length: %d\r\n\r\n" % len(big) + big)
        reply = a.next_message()
        assert reply["id"] is None and reply["error"]["code"] == -32600
        assert reply["error"]["data"]["size"] == len(big)
        assert a.call("datasources/list")["dataSources"] == []


def test_huge_declared_content_length_is_skipped_as_it_streams(store):
    # 1 GiB declared: the agent must answer at once and not wait to hold it.
    with Agent(store, framing="lsp") as a:
        a.initialize()
        a.send_raw(b"Content-Length: 1073741824\r\n\r\n" + b" " * 1000)
        reply = a.next_message(timeout=5)
        assert reply["error"]["code"] == -32600


def test_ndjson_line_above_cap(store):
    with Agent(store, args=["--max-message-bytes", "1000"]) as a:
        a.initialize()
        a.send_raw(b'{"jsonrpc":"2.0","id":5,"method":"x","params":{"p":"' + b"y" * 3000 + b'"}}\n')
        reply = a.next_message()
        assert reply["id"] is None and reply["error"]["code"] == -32600
        assert a.call("datasources/list")["dataSources"] == []


def test_ndjson_crlf_and_blank_lines(store):
    with Agent(store) as a:
        a.send_raw(b'\r\n\n{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}\r\n\r\n')
        assert "result" in a.response(1)
        a.send_raw(b'{"jsonrpc":"2.0","id":2,"method":"datasources/list"}\r\n')
        assert "result" in a.response(2)


@pytest.mark.parametrize("framing", ["ndjson", "lsp"])
def test_message_split_over_many_writes(store, framing):
    with Agent(store, framing=framing) as a:
        data = a.frame(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}') + a.frame(
            b'{"jsonrpc":"2.0","id":2,"method":"datasources/list"}')
        for i in range(len(data)):
            a.send_raw(data[i:i + 1])
            if i % 7 == 0:
                time.sleep(0.001)
        assert "result" in a.response(1)
        assert "result" in a.response(2)


@pytest.mark.parametrize("framing", ["ndjson", "lsp"])
def test_many_messages_in_one_write(store, framing):
    with Agent(store, framing=framing) as a:
        data = a.frame(b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}')
        data += b"".join(a.frame(json.dumps({"jsonrpc": "2.0", "id": i, "method": "datasources/list"}).encode()) for i in range(1, 200))
        a.send_raw(data)
        for i in range(200):
            assert "result" in a.response(i)


# ---------------------------------------------------------------- concurrency

def test_thousand_concurrent_requests_each_answered_once(agent):
    data = b"".join(agent.frame(json.dumps({"jsonrpc": "2.0", "id": i, "method": "datasources/list"}).encode()) for i in range(1000))
    agent.send_raw(data)
    seen = {}
    for _ in range(1000):
        reply = agent.next_message(timeout=30)
        seen[reply["id"]] = seen.get(reply["id"], 0) + 1
    assert sorted(seen) == list(range(1000))
    assert set(seen.values()) == {1}
    agent.call("shutdown")
    agent.notify("exit")
    assert agent.wait() == 0
    assert agent.reader.messages.get(timeout=5).__class__ is EOFError


def test_slow_request_does_not_delay_another(agent):
    slow = agent.request("debug/sleep", {"milliseconds": 3000})
    started = time.monotonic()
    assert agent.call("datasources/list")["dataSources"] == []
    assert time.monotonic() - started < 2.0
    assert agent.response(slow)["result"] == {"slept": 3000}


def test_cancel_request_answers_32800_once(agent):
    id = agent.request("debug/sleep", {"milliseconds": 5000})
    time.sleep(0.1)
    started = time.monotonic()
    agent.notify("$/cancelRequest", {"id": id})
    reply = agent.response(id)
    assert reply["error"]["code"] == -32800
    assert time.monotonic() - started < 2.0
    # no second answer for the same id
    agent.call("datasources/list")
    time.sleep(0.3)
    agent.call("datasources/list")
    assert all(m.get("id") != id for m in agent.pending)


def test_cancel_of_unknown_request_is_ignored(agent):
    agent.notify("$/cancelRequest", {"id": 424242})
    assert agent.call("datasources/list")["dataSources"] == []


def test_mcp_cancelled_gets_no_response(agent):
    id = agent.request("debug/sleep", {"milliseconds": 3000})
    time.sleep(0.1)
    agent.notify("notifications/cancelled", {"requestId": id, "reason": "user"})
    with pytest.raises(TimeoutError):
        agent.response(id, timeout=4)


def test_progress_for_work_done_token(agent):
    result = agent.call("debug/sleep", {"milliseconds": 200, "workDoneToken": "tok-1"})
    assert result == {"slept": 200}
    kinds = [n["params"]["value"]["kind"] for n in agent.notifications if n["method"] == "$/progress"]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds
    assert all(n["params"]["token"] == "tok-1" for n in agent.notifications if n["method"] == "$/progress")


def test_mcp_progress_token(agent):
    agent.call("debug/sleep", {"milliseconds": 100, "_meta": {"progressToken": 7}})
    progress = [n["params"] for n in agent.notifications if n["method"] == "notifications/progress"]
    assert progress and all(p["progressToken"] == 7 for p in progress)
    assert progress[-1]["progress"] == 100


# ---------------------------------------------------------------- stdout isolation and CLI

def test_only_protocol_on_stdout_under_trace_logging(store):
    with Agent(store, args=["--log-level", "trace"]) as a:
        a.initialize()
        a.call("datasources/list")
        a.error("no/such")
        a.send_raw(b"{oops\n")
        a.next_message()
        a.shutdown_and_exit()
        assert a.reader.garbage == []
        raw = bytes(a.reader.raw)
        for line in raw.split(b"\n"):
            if line:
                json.loads(line)
        time.sleep(0.1)
        assert len(a.stderr) > 0


def test_version_and_help():
    out = subprocess.run([agent_binary(), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip()
    out = subprocess.run([agent_binary(), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "serve" in out.stdout
    out = subprocess.run([agent_binary(), "serve", "--help"], capture_output=True, text=True)
    for option in ["--store", "--backend", "--base-url", "--read-only", "--log-level", "--max-message-bytes"]:
        assert option in out.stdout


def test_store_created_with_mode_0700(store):
    with Agent(store) as a:
        a.initialize()
        assert a.shutdown_and_exit() == 0
    assert (os.stat(store).st_mode & 0o777) == 0o700


def test_store_from_environment(tmp_path):
    env = dict(os.environ, DATASOURCE_AGENT_STORE=str(tmp_path / "envstore"))
    proc = subprocess.run(
        [agent_binary()],
        input=b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}\n',
        capture_output=True, env=env, timeout=10)
    assert proc.returncode == 0
    assert (tmp_path / "envstore" / "catalog.sqlite").exists()


def test_bad_log_level_fails_cleanly(store):
    proc = subprocess.run([agent_binary(), "--store", str(store), "--log-level", "loud"], capture_output=True, timeout=10)
    assert proc.returncode != 0 and proc.stdout == b""
    assert b"log-level" in proc.stderr


@pytest.mark.parametrize("requested, answered", [("2025-06-18", "2025-06-18"), ("2025-11-25", "2025-11-25"), ("2024-11-05", "2025-11-25")])
def test_mcp_initialize_negotiates_version(store, requested, answered):
    with Agent(store) as a:
        assert a.call("ping") == {}  # allowed before initialize
        result = a.call("initialize", {"protocolVersion": requested, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        assert result["protocolVersion"] == answered
        assert result["serverInfo"]["name"] == "datasource-agent"
        assert set(result["capabilities"]) == {"tools", "resources", "logging"}
