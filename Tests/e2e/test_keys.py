"""API keys (§10): keys create/list/revoke, and what a session may do with and without one,
on both stores: a local directory and a PostgreSQL database (§12)."""
import json
import subprocess
import time

import pytest

from agentproc import Agent, agent_binary

SMALL = "a,b\n1,2\n"


@pytest.fixture
def store(any_store):
    return any_store


def keys(store, *args, check=True):
    return subprocess.run([agent_binary(), "keys", *args, "--store", str(store)], capture_output=True, text=True, check=check)


def code(agent, method, params):
    reply = agent.response(agent.request(method, params))
    return reply["error"]["data"]["code"] if "error" in reply else "ok"


def session(store, key=None, env=None):
    agent = Agent(store, env=env or {})
    options = {"initializationOptions": {"apiKey": key}} if key else {}
    agent.initialize({"processId": None, "capabilities": {}, **options})
    return agent


def test_no_keys_means_full_access(store):
    with session(store) as agent:
        assert code(agent, "datasources/list", {}) == "ok"
        assert code(agent, "datasources/upload", {"fileName": "a.csv", "content": SMALL}) == "ok"


def test_keys_create_list_revoke_and_scopes(store, request):
    write = keys(store, "create", "--scope", "write", "--name", "ci").stdout
    assert write.count("\n") == 1 and write.startswith("dsa_")
    write = write.strip()
    read = keys(store, "create", "--scope", "read").stdout.strip()
    listed = json.loads(keys(store, "list").stdout)
    assert [(k["name"], k["scope"], k["lastUsedAt"]) for k in listed] == [("ci", "write", None), (None, "read", None)]
    assert set(listed[0]) == {"id", "name", "scope", "createdAt", "lastUsedAt"}
    if isinstance(store, str):
        cluster = request.getfixturevalue("pg_cluster")
        stored = cluster.psql(store.rsplit("/", 1)[1], "SELECT string_agg(key_hash, ' ') FROM datasource_agent.api_keys")
        assert len(stored.split()) == 2 and write not in stored, "only the key's hash may be stored"
    else:
        for path in (store / "catalog.sqlite", store / "catalog.sqlite-wal"):
            if path.exists():
                assert write.encode() not in path.read_bytes(), "only the key's hash may be stored"

    with session(store) as anonymous:
        error = anonymous.error("datasources/list", {})
        assert error["code"] == -31401 and error["data"]["code"] == "UNAUTHORIZED"
        assert anonymous.call("ping", {}) == {}
    with session(store, "dsa_not-a-key") as wrong:
        assert code(wrong, "datasources/get", {"datasourceId": "550e8400-e29b-41d4-a716-446655440000"}) == "UNAUTHORIZED"
    with session(store, read) as reader:
        assert code(reader, "datasources/list", {}) == "ok"
        error = reader.error("datasources/upload", {"fileName": "a.csv", "content": SMALL})
        assert error["code"] == -31403 and error["data"]["code"] == "ACCESS_DENIED"
        assert code(reader, "datasources/delete", {"datasourceId": "550e8400-e29b-41d4-a716-446655440000"}) == "ACCESS_DENIED"
        assert code(reader, "datasources/query", {"sql": "SELECT 1 AS one"}) == "ok"
    with session(store, env={"DATASOURCE_AGENT_API_KEY": write}) as writer:
        assert code(writer, "datasources/upload", {"fileName": "a.csv", "content": SMALL}) == "ok"
    table = keys(store, "list", "--format", "table").stdout
    assert "ci" in table and "never" not in table.splitlines()[1]

    read_id = next(k["id"] for k in json.loads(keys(store, "list").stdout) if k["scope"] == "read")
    with session(store, read) as reader:
        assert code(reader, "datasources/list", {}) == "ok"
        keys(store, "revoke", read_id)
        time.sleep(0.3)  # another process's revocation takes effect within a quarter second
        assert code(reader, "datasources/list", {}) == "UNAUTHORIZED"
    missing = keys(store, "revoke", read_id, check=False)
    assert missing.returncode == 1 and "no key" in missing.stderr


def test_mcp_tool_calls_need_a_key_too(store):
    keys(store, "create", "--scope", "read")
    with Agent(store) as mcp:
        mcp.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        result = mcp.call("tools/call", {"name": "list_datasources", "arguments": {}})
        assert result["isError"] is True and "UNAUTHORIZED" in result["content"][0]["text"]


def test_resources_and_notifications_need_a_key(store, tmp_path):
    write = keys(store, "create", "--scope", "write").stdout.strip()
    with session(store, write) as writer, Agent(store) as mcp:
        mcp.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        for method, params in [("resources/list", {}), ("resources/read", {"uri": "datasource://550e8400-e29b-41d4-a716-446655440000"}),
                               ("resources/subscribe", {"uri": "datasource://550e8400-e29b-41d4-a716-446655440000"})]:
            error = mcp.error(method, params)
            assert error["data"]["code"] == "UNAUTHORIZED", (method, error)
        id = writer.call("datasources/upload", {"fileName": "secret.csv", "content": SMALL})["datasourceId"]
        writer.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id)
        with pytest.raises(TimeoutError):
            mcp.wait_notification("datasources/statusChanged", timeout=1.5)


def test_a_download_port_in_use_leaves_the_rest_working(store):
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with Agent(store, args=["--download-port", str(taken.getsockname()[1])]) as agent:
            agent.initialize()
            first = agent.call("datasources/upload", {"fileName": "a.csv", "content": SMALL})["datasourceId"]
            agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == first)
            error = agent.error("datasources/download", {"datasourceId": first})
            assert error["data"]["code"] == "ACCESS_DENIED" and "could not start" in error["data"]["details"]["reason"]
            second = agent.call("datasources/upload", {"fileName": "b.csv", "content": SMALL})["datasourceId"]
            agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == second)
            agent.close_stdin()
            assert agent.wait() == 0
    finally:
        taken.close()
