"""MCP over HTTP at `POST /mcp` of serve-http (§9, protocol/README.md "MCP over HTTP"): the
stateless 2026-07-28 transport with its headers checked against the body, 2025-11-25
Streamable HTTP without session ids, Bearer keys and scopes, and no server-side session
state (two processes on one store serve one client)."""
from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
import requests

from agentproc import ROOT
from conftest import STORE_KINDS, new_store
from restproc import RestServer, create_key
from test_mcp import cancel_an_upload

mcp = pytest.importorskip("mcp")
import httpx2  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

PRODUCTS = str(ROOT / "examples" / "products.csv")
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
}


@pytest.fixture(scope="module", params=STORE_KINDS)
def rest(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("mcphttp")
    store = new_store(request, directory)
    write = create_key(store, "write", "writer")
    read = create_key(store, "read", "reader")
    servers = [RestServer(store, "--rate-limit", "100000", port_file=directory / f"port{i}") for i in range(2)]
    for server in servers:
        server.__enter__()
    try:
        yield SimpleNamespace(store=store, urls=[s.base + "/mcp" for s in servers], url=servers[0].base + "/mcp",
                              write=write, read=read)
    finally:
        for server in servers:
            assert server.terminate() == 0, server.stderr.decode(errors="replace")


def post(rest, body, key=None, headers=None, stream=False, url=None):
    all_headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    all_headers.update(headers or {})
    return requests.post(url or rest.url, data=json.dumps(body), headers=all_headers, timeout=60, stream=stream)


def stateless(method, params=None, id=1):
    params = dict(params or {})
    params["_meta"] = {**META, **params.get("_meta", {})}
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


def headers_for(body):
    found = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": body["method"]}
    name = {"tools/call": "name", "resources/read": "uri"}.get(body["method"])
    if name:
        found["Mcp-Name"] = body["params"][name]
    return found


def sse_messages(response):
    messages = []
    for block in response.text.split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            messages.append(json.loads("\n".join(data)))
    return messages



def connect(url, key, mode):
    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30, read=300))
    return Client(streamable_http_client(url, http_client=client), mode=mode)


def test_auth_rules(rest):
    body = stateless("tools/list")
    reply = post(rest, body, headers=headers_for(body))
    assert reply.status_code == 401 and reply.headers["WWW-Authenticate"] == "Bearer"
    assert reply.json()["error"]["data"]["code"] == "UNAUTHORIZED"
    assert post(rest, body, key="dsa_not_a_key", headers=headers_for(body)).status_code == 401
    assert post(rest, body, key=rest.read, headers=headers_for(body)).status_code == 200

    # a read key calling delete_datasource: the tool's error result, ACCESS_DENIED
    call = stateless("tools/call", {"name": "delete_datasource", "arguments": {"datasourceId": "00000000-0000-4000-8000-000000000000"}})
    reply = post(rest, call, key=rest.read, headers=headers_for(call))
    assert reply.status_code == 200
    result = reply.json()["result"]
    assert result["isError"] is True and "ACCESS_DENIED" in result["content"][0]["text"]
    assert result["resultType"] == "complete"


def test_raw_stateless_http_edges(rest):
    body = stateless("server/discover")
    reply = post(rest, body, key=rest.read, headers=headers_for(body))
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("application/json")
    assert "Mcp-Session-Id" not in reply.headers
    result = reply.json()["result"]
    assert "2026-07-28" in result["supportedVersions"] and result["resultType"] == "complete" and "ttlMs" in result

    # headers checked against the body → -32020, HTTP 400
    for wrong in [{"Mcp-Method": "tools/list"}, {"MCP-Protocol-Version": "2025-11-25"}]:
        reply = post(rest, body, key=rest.read, headers={**headers_for(body), **wrong})
        assert reply.status_code == 400 and reply.json()["error"]["code"] == -32020, wrong
    no_method = headers_for(body)
    del no_method["Mcp-Method"]
    assert post(rest, body, key=rest.read, headers=no_method).json()["error"]["code"] == -32020
    call = stateless("tools/call", {"name": "list_datasources", "arguments": {}})
    reply = post(rest, call, key=rest.read, headers={**headers_for(call), "Mcp-Name": "get_datasource"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == -32020

    # the envelope: missing → -32602, unknown version → -32022 (HTTP 400) with {supported, requested}
    bare = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}
    reply = post(rest, bare, key=rest.read, headers=headers_for(bare))
    assert reply.json()["error"]["code"] == -32602
    future = stateless("tools/list", {"_meta": {"io.modelcontextprotocol/protocolVersion": "2099-01-01"}})
    reply = post(rest, future, key=rest.read, headers={**headers_for(future), "MCP-Protocol-Version": "2099-01-01"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == -32022 and error["data"]["requested"] == "2099-01-01" and "2026-07-28" in error["data"]["supported"]

    # progress: the response becomes a stream of server-sent events ending with the result
    upload = stateless("tools/call", {"name": "upload_datasource", "arguments": {"path": PRODUCTS}, "_meta": {"progressToken": "h1"}})
    reply = post(rest, upload, key=rest.write, headers=headers_for(upload))
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    messages = sse_messages(reply)
    assert messages[-1]["id"] == 1 and messages[-1]["result"]["isError"] is False
    progress = [m for m in messages if m.get("method") == "notifications/progress"]
    assert progress and progress[-1]["params"]["progress"] == 100

    # notifications are accepted and need nothing
    assert post(rest, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}, key=rest.read).status_code == 202


def test_raw_2025_11_25_streamable_http_without_sessions(rest):
    headers = {"MCP-Protocol-Version": "2025-11-25"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    reply = post(rest, init, key=rest.read, headers={})
    assert reply.status_code == 200 and "Mcp-Session-Id" not in reply.headers
    assert reply.json()["result"]["protocolVersion"] == "2025-11-25"
    assert post(rest, {"jsonrpc": "2.0", "method": "notifications/initialized"}, key=rest.read, headers=headers).status_code == 202
    # any process answers the next request: there is no session to find
    for url in rest.urls:
        listed = post(rest, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, key=rest.read, headers=headers, url=url).json()
        assert {t["name"] for t in listed["result"]["tools"]} >= {"upload_datasource"} and "resultType" not in listed["result"]
    discover = post(rest, {"jsonrpc": "2.0", "id": 3, "method": "server/discover"}, key=rest.read, headers=headers).json()
    assert discover["error"]["code"] == -32601
    refused = requests.get(rest.url, headers={"Authorization": f"Bearer {rest.read}"}, timeout=10)
    assert refused.status_code == 405 and refused.headers["Allow"] == "POST"


@pytest.mark.filterwarnings("error::DeprecationWarning")
@pytest.mark.filterwarnings("error::mcp.shared.exceptions.MCPDeprecationWarning")
def test_sdk_auto_selects_2026_over_http_and_listens(rest):
    async def scenario():
        async with connect(rest.url, rest.write, "auto") as client:
            assert client.protocol_version == "2026-07-28"
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "sql_query" in tools

            progress = []

            async def on_progress(value, total, message):
                progress.append(value)

            uploaded = await client.call_tool("upload_datasource", {"path": PRODUCTS}, progress_callback=on_progress)
            assert not uploaded.is_error and progress
            id = uploaded.structured_content["datasourceId"]
            uri = f"datasource://{id}"
            details = json.loads((await client.read_resource(uri)).contents[0].text)
            assert details["rowCount"] == 36

            # a listen stream on the first process hears of a change made through the second
            async with connect(rest.urls[1], rest.write, "auto") as other:
                async with client.listen(resources_list_changed=True) as sub:
                    again = await other.call_tool("upload_datasource", {"path": PRODUCTS})
                    assert not again.is_error
                    event = await asyncio.wait_for(sub.__anext__(), 60)
                    assert type(event).__name__ in ("ResourcesListChanged", "ResourceUpdated"), event

            failing = await client.call_tool("get_datasource", {"datasourceId": "00000000-0000-4000-8000-000000000000"})
            assert failing.is_error and "DATASOURCE_NOT_FOUND" in failing.content[0].text

    asyncio.run(scenario())


def test_sdk_legacy_over_http(rest):
    async def scenario():
        async with connect(rest.url, rest.read, "legacy") as client:
            assert client.protocol_version == "2025-11-25"
            listed = await client.call_tool("list_datasources", {})
            assert not listed.is_error and "pagination" in listed.structured_content
            denied = await client.call_tool("delete_datasource", {"datasourceId": "00000000-0000-4000-8000-000000000000"})
            assert denied.is_error and "ACCESS_DENIED" in denied.content[0].text

    asyncio.run(scenario())


def test_listen_stream_over_http_ends_gracefully_on_sigterm(tmp_path):
    store = tmp_path / "store"
    key = create_key(store, "read")
    with RestServer(store) as server:
        ns = SimpleNamespace(url=server.base + "/mcp")
        listen = stateless("subscriptions/listen", {"notifications": {"resourcesListChanged": True, "toolsListChanged": True}}, id="L")
        reply = post(ns, listen, key=key, headers=headers_for(listen), stream=True)
        assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/event-stream")
        lines = reply.iter_lines(decode_unicode=True)
        ack = next(json.loads(line[6:]) for line in lines if line.startswith("data: "))
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"] == {"notifications": {"resourcesListChanged": True}, "_meta": {"io.modelcontextprotocol/subscriptionId": "L"}}
        assert server.terminate() == 0
        closed = next(json.loads(line[6:]) for line in lines if line.startswith("data: "))
        assert closed == {"jsonrpc": "2.0", "id": "L", "result": {"resultType": "complete", "_meta": {"io.modelcontextprotocol/subscriptionId": "L"}}}


@pytest.mark.filterwarnings("error::DeprecationWarning")
@pytest.mark.filterwarnings("error::mcp.shared.exceptions.MCPDeprecationWarning")
def test_sdk_cancellation_over_http(rest, tmp_path):
    from conftest import write_big_csv

    big = str(write_big_csv(tmp_path / "big.csv", 400_000))

    async def scenario():
        async with connect(rest.url, rest.write, "auto") as client:
            assert client.protocol_version == "2026-07-28"

            await cancel_an_upload(client, big, after=0.5)

    asyncio.run(scenario())
