"""Independent JSON-RPC clients from PyPI drive the agent: python-lsp-jsonrpc (LSP framing)
and pygls 2.x JsonRPCClient. Each runs initialize → upload → statusChanged → list → data →
shutdown → exit and expects exit code 0."""
import asyncio
import queue
import subprocess
import threading

from agentproc import ROOT, agent_binary

PRODUCTS = str(ROOT / "examples" / "products.csv")


def field(obj, name):
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def test_python_lsp_jsonrpc(store):
    from pylsp_jsonrpc.endpoint import Endpoint
    from pylsp_jsonrpc.streams import JsonRpcStreamReader, JsonRpcStreamWriter

    proc = subprocess.Popen([agent_binary(), "--store", str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    notes = queue.Queue()
    endpoint = Endpoint({"datasources/statusChanged": notes.put}, JsonRpcStreamWriter(proc.stdin).write)
    reader = JsonRpcStreamReader(proc.stdout)
    threading.Thread(target=reader.listen, args=(endpoint.consume,), daemon=True).start()
    try:
        init = endpoint.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}}).result(timeout=10)
        assert init["serverInfo"]["name"] == "datasource-agent"
        endpoint.notify("initialized", {})
        upload = endpoint.request("datasources/upload", {"path": PRODUCTS}).result(timeout=10)
        note = notes.get(timeout=30)
        assert note["datasourceId"] == upload["datasourceId"] and note["status"] == "completed"
        listing = endpoint.request("datasources/list", {"status": "completed"}).result(timeout=10)
        assert listing["pagination"]["total"] == 1
        page = endpoint.request("datasources/data", {"datasourceId": upload["datasourceId"], "filter": "price > 100", "limit": 5}).result(timeout=10)
        assert page["data"] and all(row["price"] > 100 for row in page["data"])
        try:
            endpoint.request("datasources/get", {"datasourceId": "00000000-0000-0000-0000-000000000000"}).result(timeout=10)
            raise AssertionError("expected an error")
        except Exception as error:  # pylsp_jsonrpc raises JsonRpcException with the code
            assert getattr(error, "code", None) == -31404
        assert endpoint.request("shutdown").result(timeout=10) is None
        endpoint.notify("exit")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.close()


def test_pygls_json_rpc_client(store):
    from pygls.client import JsonRPCClient

    async def scenario():
        client = JsonRPCClient()
        notes = asyncio.Queue()

        @client.feature("datasources/statusChanged")
        def on_status(params):
            notes.put_nowait(params)

        await client.start_io(agent_binary(), "--store", str(store))
        try:
            init = await client.protocol.send_request_async("initialize", {"processId": None, "capabilities": {}})
            assert field(field(init, "serverInfo"), "name") == "datasource-agent"
            client.protocol.notify("initialized", {})
            upload = await client.protocol.send_request_async("datasources/upload", {"path": PRODUCTS})
            id = field(upload, "datasourceId")
            note = await asyncio.wait_for(notes.get(), 30)
            assert field(note, "datasourceId") == id and field(note, "status") == "completed"
            listing = await client.protocol.send_request_async("datasources/list", {})
            assert field(field(listing, "pagination"), "total") == 1
            page = await client.protocol.send_request_async("datasources/data", {"datasourceId": id, "sort": "price", "order": "desc", "limit": 3})
            prices = [field(row, "price") for row in field(page, "data")]
            assert len(prices) == 3 and prices == sorted(prices, reverse=True)
            # pygls's own call for a parameterless request sends `"params": null`.
            assert await client.protocol.send_request_async("shutdown", None) is None
            client.protocol.notify("exit", {})
            return await asyncio.wait_for(client._server.wait(), 10)
        finally:
            if client._server.returncode is None:
                client._server.kill()

    assert asyncio.run(scenario()) == 0
