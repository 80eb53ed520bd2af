"""The MCP face with the official `mcp` Python SDK (2.x) as the client, in legacy and auto
modes, plus a raw NDJSON transcript for the protocol's edges (§9)."""
import asyncio
import json
import uuid

import pytest

from agentproc import ROOT, Agent, agent_binary
from conftest import upload_and_wait, write_big_csv

mcp = pytest.importorskip("mcp")
from mcp import Client, StdioServerParameters  # noqa: E402

PRODUCTS = str(ROOT / "examples" / "products.csv")


def big_csv(tmp_path, rows=300_000):
    return str(write_big_csv(tmp_path / "big.csv", rows))


def server(store):
    return StdioServerParameters(command=agent_binary(), args=["--store", str(store)])


@pytest.mark.parametrize("mode", ["legacy", "auto"])
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


def test_sdk_cancellation(store, tmp_path):
    big = big_csv(tmp_path, rows=400_000)

    async def scenario():
        async with Client(server(store), mode="legacy") as client:
            async def on_progress(value, total, message):
                pass

            call = asyncio.create_task(client.call_tool("upload_datasource", {"path": big}, progress_callback=on_progress))
            await asyncio.sleep(0.3)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # the session is still usable after the cancellation
            listed = await client.call_tool("list_datasources", {})
            assert not listed.is_error and listed.structured_content["pagination"]["total"] == 1

    asyncio.run(scenario())
