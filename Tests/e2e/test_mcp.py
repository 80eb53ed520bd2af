"""The MCP face with the official `mcp` Python SDK (2.x) as the client, in legacy and auto
modes (auto selects the stateless 2026-07-28 revision), plus raw NDJSON transcripts for
each revision's edges (§9)."""
import asyncio
import json
import uuid
import warnings

import pytest

from agentproc import ROOT, Agent, agent_binary
from conftest import upload_and_wait, write_big_csv

mcp = pytest.importorskip("mcp")
from mcp import Client, StdioServerParameters  # noqa: E402

PRODUCTS = str(ROOT / "examples" / "products.csv")


@pytest.fixture
def store(any_store):
    return any_store


def big_csv(tmp_path, rows=300_000):
    return str(write_big_csv(tmp_path / "big.csv", rows))


def server(store):
    return StdioServerParameters(command=agent_binary(), args=["--store", str(store)])


# The tests of the 2026-07-28 path turn the SDK's deprecation warnings (resources/subscribe,
# logging, client progress: "removed as of 2026-07-28") into failures.
def no_deprecation(test):
    test = pytest.mark.filterwarnings("error::DeprecationWarning")(test)
    return pytest.mark.filterwarnings("error::mcp.shared.exceptions.MCPDeprecationWarning")(test)

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
}


@pytest.mark.parametrize("mode", ["legacy"])
def test_sdk_tools_resources_subscription(store, mode, tmp_path):
    big = big_csv(tmp_path)

    async def scenario():
        notifications = []

        async def on_message(message):
            notifications.append(message)

        async with Client(server(store), mode=mode, message_handler=on_message) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == {"list_datasources", "get_datasource", "query_datasource", "delete_datasource",
                                  "create_download_url", "upload_datasource", "sql_query", "export_datasource"}
            assert "CONTAINS" in tools["query_datasource"].description
            assert tools["query_datasource"].input_schema["required"] == ["datasourceId"]
            assert tools["get_datasource"].output_schema["type"] == "object"

            progress = []

            async def on_progress(value, total, message):
                progress.append(value)

            uploaded = await client.call_tool("upload_datasource", {"path": PRODUCTS}, progress_callback=on_progress)
            assert not uploaded.is_error
            id = uploaded.structured_content["datasourceId"]
            assert json.loads(uploaded.content[0].text) == uploaded.structured_content
            assert progress, "progress notifications for an upload with a progress token"

            uri = f"datasource://{id}"
            await client.subscribe_resource(uri)
            listed = await client.list_resources()
            assert uri in [str(r.uri) for r in listed.resources]
            read = await client.read_resource(uri)
            details = json.loads(read.contents[0].text)
            assert details["status"] == "completed" and details["rowCount"] == 36

            second = await client.call_tool("upload_datasource", {"path": big})
            second_uri = f"datasource://{second.structured_content['datasourceId']}"
            await client.subscribe_resource(second_uri)
            assert json.loads((await client.read_resource(second_uri)).contents[0].text)["status"] == "processing"
            for _ in range(600):
                if any("resources/updated" in str(n) and second_uri in str(n) for n in notifications):
                    break
                await asyncio.sleep(0.05)
            assert any("resources/updated" in str(n) and second_uri in str(n) for n in notifications), notifications
            assert any("resources/list_changed" in str(n) for n in notifications)

            page = await client.call_tool("query_datasource", {"datasourceId": id, "filter": "price > 100", "sort": "price", "limit": 5})
            assert not page.is_error
            prices = [row["price"] for row in page.structured_content["data"]]
            assert prices == sorted(prices) and all(p > 100 for p in prices)

            failing = await client.call_tool("get_datasource", {"datasourceId": str(uuid.uuid4())})
            assert failing.is_error and "DATASOURCE_NOT_FOUND" in failing.content[0].text
            invalid = await client.call_tool("query_datasource", {"datasourceId": id, "filter": "price > 'x'"})
            assert invalid.is_error and "INVALID_PARAMETERS" in invalid.content[0].text

            sql = await client.call_tool("sql_query", {"sql": f'SELECT category, count(*) AS n FROM "{id}" GROUP BY 1 ORDER BY 2 DESC, 1'})
            assert not sql.is_error and sum(r["n"] for r in sql.structured_content["rows"]) == 36
            assert [c["type"] for c in sql.structured_content["columns"]] == ["string", "number"]
            refused = await client.call_tool("sql_query", {"sql": f'DELETE FROM "{id}"'})
            assert refused.is_error and "INVALID_PARAMETERS" in refused.content[0].text

            link = await client.call_tool("create_download_url", {"datasourceId": id})
            assert link.structured_content["downloadUrl"].startswith("http://127.0.0.1:")
            deleted = await client.call_tool("delete_datasource", {"datasourceId": id})
            assert deleted.structured_content["message"] == "Data source deleted successfully"

    asyncio.run(scenario())


def test_raw_transcript_edges(store, tmp_path):
    big = big_csv(tmp_path)
    with Agent(store) as a:
        init = a.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}})
        assert init["protocolVersion"] == "2025-06-18"
        assert init["capabilities"]["resources"]["subscribe"] is True and "tools" in init["capabilities"]
        a.notify("notifications/initialized", {})
        assert a.error("server/discover", {})["code"] == -32601
        assert a.call("ping") == {}
        assert a.error("tools/call", {"name": "no_such_tool", "arguments": {}})["code"] == -32602
        assert a.error("resources/read", {"uri": "datasource://nope"})["code"] == -32002
        assert a.call("logging/setLevel", {"level": "info"}) == {}
        assert a.error("logging/setLevel", {"level": "loud"})["code"] == -32602
        assert a.call("resources/templates/list")["resourceTemplates"][0]["uriTemplate"] == "datasource://{datasourceId}"
        listed = a.call("tools/list")
        for tool in listed["tools"]:
            assert tool["inputSchema"]["type"] == "object" and tool["outputSchema"]["type"] == "object"
        result = a.call("tools/call", {"name": "upload_datasource", "arguments": {"path": big}})
        assert result["isError"] is False and result["structuredContent"]["status"] == "processing"
        assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
        a.wait_notification("notifications/resources/list_changed")
        uri = "datasource://" + result["structuredContent"]["datasourceId"]
        a.call("resources/subscribe", {"uri": uri})
        assert a.wait_notification("notifications/resources/updated", timeout=60) == {"uri": uri}
        message = a.wait_notification("notifications/message")
        assert message["level"] == "info"
        # cancellation: no response at all, as MCP requires
        id = a.request("debug/sleep", {"milliseconds": 3000})
        a.notify("notifications/cancelled", {"requestId": id})
        with pytest.raises(TimeoutError):
            a.response(id, timeout=4)


def test_upload_tool_with_progress_token_waits_and_reports(store):
    with Agent(store) as a:
        a.call("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
        result = a.call("tools/call", {"name": "upload_datasource", "arguments": {"path": PRODUCTS}, "_meta": {"progressToken": "up-1"}})
        progress = [n["params"] for n in a.notifications if n["method"] == "notifications/progress"]
        assert progress and all(p["progressToken"] == "up-1" for p in progress)
        assert progress[-1]["progress"] == 100
        details = a.call("datasources/get", {"datasourceId": result["structuredContent"]["datasourceId"]})
        assert details["status"] == "completed"


async def cancel_an_upload(client, path: str, after: float):
    """Starts uploading `path` as a tool call with progress, cancels it `after` seconds after
    the upload was accepted, and returns `list_datasources` from the same session, which must
    still be usable. Accepted: the second progress report, the first from processing (the
    first is sent at once). On a PostgreSQL store storing the original takes longer than on
    a local one, and an upload cancelled before it is stored leaves nothing."""
    accepted = asyncio.Event()
    reports = []

    async def on_progress(value, total, message):
        reports.append(value)
        if len(reports) >= 2:
            accepted.set()

    call = asyncio.create_task(client.call_tool("upload_datasource", {"path": path}, progress_callback=on_progress))
    await asyncio.wait_for(accepted.wait(), timeout=60)
    await asyncio.sleep(after)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    listed = await client.call_tool("list_datasources", {})
    assert not listed.is_error
    return listed


def test_sdk_cancellation(store, tmp_path):
    big = big_csv(tmp_path, rows=400_000)

    async def scenario():
        async with Client(server(store), mode="legacy") as client:
            listed = await cancel_an_upload(client, big, after=0.3)
            assert listed.structured_content["pagination"]["total"] == 1

    asyncio.run(scenario())


def test_raw_before_initialize_discover_needs_its_envelope(store):
    with Agent(store) as a:
        # server/discover is answered without initialize, but only in the 2026-07-28 envelope
        assert a.error("server/discover", {})["code"] == -32602
        assert a.error("datasources/list", {})["code"] == -32002
        # the stream is still undecided: the handshake works
        init = a.call("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}})
        assert init["protocolVersion"] == "2025-11-25" and "resultType" not in init
        assert a.error("subscriptions/listen", {"_meta": META, "notifications": {}})["code"] == -32601
        listed = a.call("tools/list", {"_meta": {"progressToken": 1}})
        assert "resultType" not in listed and "ttlMs" not in listed


def meta(**changes):
    value = dict(META)
    for key, v in changes.items():
        full = "io.modelcontextprotocol/" + key
        if v is None:
            value.pop(full, None)
        else:
            value[full] = v
    return value


def test_raw_2026_transcript_edges(store, tmp_path):
    big = big_csv(tmp_path)
    with Agent(store) as a:
        # the envelope, checked on every request
        assert a.error("server/discover", {"_meta": meta(protocolVersion=None)})["code"] == -32602
        missing = a.error("server/discover", {"_meta": meta(clientCapabilities=None)})
        assert missing["code"] == -32602 and missing["data"]["missing"] == ["io.modelcontextprotocol/clientCapabilities"]
        assert a.error("server/discover", {"_meta": meta(clientCapabilities="all")})["code"] == -32602
        assert a.error("server/discover", {"_meta": meta(clientInfo={"name": 1})})["code"] == -32602
        unknown = a.error("server/discover", {"_meta": meta(protocolVersion="2099-01-01")})
        assert unknown["code"] == -32022
        assert unknown["data"] == {"supported": ["2026-07-28", "2025-11-25", "2025-06-18"], "requested": "2099-01-01"}

        discover = a.call("server/discover", {"_meta": meta(clientInfo=None)})
        assert discover["supportedVersions"][0] == "2026-07-28"
        assert discover["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "datasource-agent"
        assert discover["resultType"] == "complete" and discover["ttlMs"] >= 0 and discover["cacheScope"] in ("public", "private")
        assert discover["capabilities"]["tools"] == {"listChanged": False}
        assert "logging" not in discover["capabilities"]

        # the stream is now stateless: the handshake and the removed methods are gone
        again = a.error("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
        assert again["code"] == -32022 and again["data"]["supported"] == ["2026-07-28"]
        assert a.error("server/discover", {"_meta": meta(protocolVersion="2025-11-25")})["data"]["supported"] == ["2026-07-28"]
        for method in ["resources/subscribe", "logging/setLevel", "ping", "datasources/list"]:
            assert a.error(method, {"_meta": META, "uri": "datasource://x", "level": "info"})["code"] == -32601, method
        assert a.error("tools/list", {})["code"] == -32602

        listed = a.call("tools/list", {"_meta": META})
        assert listed["resultType"] == "complete" and listed["ttlMs"] == 0 and listed["cacheScope"] == "private"
        assert {t["name"] for t in listed["tools"]} >= {"upload_datasource", "sql_query"}
        templates = a.call("resources/templates/list", {"_meta": META})
        assert templates["resultType"] == "complete" and "ttlMs" in templates
        assert a.error("tools/call", {"_meta": META, "name": "no_such_tool", "arguments": {}})["code"] == -32602

        # a listen stream: only the kinds asked for and honored, each tagged with its id
        a.request("subscriptions/listen", {"_meta": META, "notifications": {
            "resourcesListChanged": True, "toolsListChanged": True, "promptsListChanged": True}}, id="L1")
        ack = a.wait_notification("notifications/subscriptions/acknowledged", lambda p: p["_meta"]["io.modelcontextprotocol/subscriptionId"] == "L1")
        assert ack["notifications"] == {"resourcesListChanged": True}

        result = a.call("tools/call", {"_meta": META, "name": "upload_datasource", "arguments": {"path": big}})
        assert result["resultType"] == "complete" and "ttlMs" not in result
        assert result["isError"] is False and result["structuredContent"]["status"] == "processing"
        changed = a.wait_notification("notifications/resources/list_changed")
        assert changed["_meta"]["io.modelcontextprotocol/subscriptionId"] == "L1"

        uri = "datasource://" + result["structuredContent"]["datasourceId"]
        a.request("subscriptions/listen", {"_meta": META, "notifications": {"resourceSubscriptions": [uri, "http://elsewhere"]}}, id="L2")
        ack = a.wait_notification("notifications/subscriptions/acknowledged", lambda p: p["_meta"]["io.modelcontextprotocol/subscriptionId"] == "L2")
        assert ack["notifications"] == {"resourceSubscriptions": [uri]}
        read = a.call("resources/read", {"_meta": META, "uri": uri})
        assert read["resultType"] == "complete" and read["ttlMs"] == 0 and read["cacheScope"] == "private"
        updated = a.wait_notification("notifications/resources/updated", timeout=60)
        assert updated == {"uri": uri, "_meta": {"io.modelcontextprotocol/subscriptionId": "L2"}}

        # progress: _meta.progressToken → notifications/progress while the request is open
        done = a.call("tools/call", {"_meta": {**META, "progressToken": "p1"}, "name": "upload_datasource", "arguments": {"path": PRODUCTS}})
        assert done["resultType"] == "complete"
        progress = [n["params"] for n in a.notifications if n["method"] == "notifications/progress"]
        assert progress and all(p["progressToken"] == "p1" for p in progress) and progress[-1]["progress"] == 100

        # cancellation: the cancelled request (or listen stream) gets no response at all
        id = a.request("debug/sleep", {"_meta": META, "milliseconds": 3000})
        a.notify("notifications/cancelled", {"requestId": id})
        a.notify("notifications/cancelled", {"requestId": "L2"})
        with pytest.raises(TimeoutError):
            a.response(id, timeout=4)
        with pytest.raises(TimeoutError):
            a.response("L2", timeout=0.5)

        # nothing unasked: no agent notifications, no log messages, no untagged changes
        a.call("resources/list", {"_meta": META})
        kinds = {n["method"] for n in a.notifications}
        assert not kinds & {"datasources/statusChanged", "notifications/message"}, kinds
        for note in a.notifications:
            if note["method"].startswith("notifications/resources/"):
                assert "io.modelcontextprotocol/subscriptionId" in note["params"]["_meta"]

        # end of input closes the open listen stream gracefully, with a result
        a.close_stdin()
        closed = a.response("L1", timeout=10)
        assert closed["result"] == {"resultType": "complete", "_meta": {"io.modelcontextprotocol/subscriptionId": "L1"}}
        assert a.wait(10) == 0


@no_deprecation
def test_sdk_auto_selects_2026_07_28(store, tmp_path):
    big = big_csv(tmp_path)

    async def scenario():
        unasked = []

        async def on_message(message):
            unasked.append(message)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with Client(server(store), mode="auto", message_handler=on_message) as client:
                assert client.protocol_version == "2026-07-28"
                assert client.session.discover_result is not None and client.session.initialize_result is None
                assert client.server_info.name == "datasource-agent"

                tools = {tool.name: tool for tool in (await client.list_tools()).tools}
                assert "upload_datasource" in tools and tools["get_datasource"].output_schema["type"] == "object"

                progress = []

                async def on_progress(value, total, message):
                    progress.append(value)

                uploaded = await client.call_tool("upload_datasource", {"path": PRODUCTS}, progress_callback=on_progress)
                assert not uploaded.is_error and progress
                id = uploaded.structured_content["datasourceId"]
                uri = f"datasource://{id}"
                assert uri in [str(r.uri) for r in (await client.list_resources()).resources]
                details = json.loads((await client.read_resource(uri)).contents[0].text)
                assert details["status"] == "completed" and details["rowCount"] == 36
                templates = await client.list_resource_templates()
                assert templates.resource_templates[0].uri_template == "datasource://{datasourceId}"

                # a status change delivered to a listening client
                second = await client.call_tool("upload_datasource", {"path": big})
                second_uri = f"datasource://{second.structured_content['datasourceId']}"
                async with client.listen(resource_subscriptions=[second_uri], resources_list_changed=True) as sub:
                    assert sub.honored.resource_subscriptions == [second_uri] and sub.honored.resources_list_changed
                    assert json.loads((await client.read_resource(second_uri)).contents[0].text)["status"] == "processing"
                    # list changes come too (a status change changes the list), until the update
                    seen = []
                    while not any(getattr(e, "uri", None) == second_uri for e in seen):
                        seen.append(await asyncio.wait_for(sub.__anext__(), 60))
                    assert {type(e).__name__ for e in seen} <= {"ResourceUpdated", "ResourcesListChanged"}, seen
                    assert json.loads((await client.read_resource(second_uri)).contents[0].text)["status"] == "completed"
                    deleted = await client.call_tool("delete_datasource", {"datasourceId": id})
                    assert deleted.structured_content["message"] == "Data source deleted successfully"
                    event = await asyncio.wait_for(sub.__anext__(), 10)
                    assert type(event).__name__ == "ResourcesListChanged", event

                failing = await client.call_tool("get_datasource", {"datasourceId": str(uuid.uuid4())})
                assert failing.is_error and "DATASOURCE_NOT_FOUND" in failing.content[0].text
                sql = await client.call_tool("sql_query", {"sql": f'SELECT count(*) AS n FROM "{second.structured_content["datasourceId"]}"'})
                assert not sql.is_error and sql.structured_content["rows"][0]["n"] == 300_000
        kinds = {getattr(getattr(m, "root", m), "method", None) for m in unasked}
        assert "datasources/statusChanged" not in kinds and "notifications/message" not in kinds, kinds
        deprecations = [w for w in caught if "deprecat" in str(w.message).lower() or issubclass(w.category, DeprecationWarning)]
        assert not deprecations, [str(w.message) for w in deprecations]

    asyncio.run(scenario())


@no_deprecation
def test_sdk_cancellation_2026(store, tmp_path):
    big = big_csv(tmp_path, rows=400_000)

    async def scenario():
        async with Client(server(store), mode="auto") as client:
            assert client.protocol_version == "2026-07-28"

            listed = await cancel_an_upload(client, big, after=0.3)
            assert listed.structured_content["pagination"]["total"] == 1

    asyncio.run(scenario())


def test_raw_unknown_version_first_then_handshake_fallback(store):
    with Agent(store) as a:
        refused = a.error("server/discover", {"_meta": meta(protocolVersion="2099-01-01")})
        assert refused["code"] == -32022 and "2025-11-25" in refused["data"]["supported"]
        # nothing was settled: the host falls back to the handshake
        init = a.call("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
        assert init["protocolVersion"] == "2025-11-25"
        a.notify("notifications/initialized", {})
        assert a.call("ping") == {}
        assert a.error("server/discover", {"_meta": META})["code"] == -32601


def test_raw_2026_keys_come_from_the_environment(store):
    from restproc import create_key

    read = create_key(store, "read")
    call = {"_meta": META, "name": "list_datasources", "arguments": {}}
    with Agent(store) as a:
        result = a.call("tools/call", call)
        assert result["isError"] is True and "UNAUTHORIZED" in result["content"][0]["text"]
    with Agent(store, env={"DATASOURCE_AGENT_API_KEY": read}) as a:
        assert a.call("tools/call", call)["isError"] is False
        denied = a.call("tools/call", {**call, "name": "delete_datasource", "arguments": {"datasourceId": "00000000-0000-4000-8000-000000000000"}})
        assert denied["isError"] is True and "ACCESS_DENIED" in denied["content"][0]["text"]
