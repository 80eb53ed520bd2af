"""The remote backend (§10): the real agent with `--backend remote` against claro_stub, a Claro
v2 REST API in this process. Every method's mapping onto the REST API, the server's errors
passed through with their codes, the metadata cache (maxAge, stale answers when the server is
down, delete invalidating), the watcher pushing datasources/statusChanged, 429 and
X-RateLimit-* honoured, multipart uploads, and the endpoints the hosted API lacks."""
import base64
import json
import os
import signal
import subprocess
import time

import pytest

from agentproc import Agent, agent_binary
from claro_stub import ClaroStub
from restproc import RestServer, create_key
from schema_check import validate_result

KEY = "stub-key"
PRODUCTS = b"product_id,product_name,price\nPROD001,Widget A,29.99\nPROD002,Widget B,39.99\nPROD003,Widget C,49.99\n"


@pytest.fixture(scope="module")
def server():
    with ClaroStub(api_key=KEY) as stub:
        yield stub


@pytest.fixture
def stub(server):
    server.reset()
    return server


def remote_agent(store, stub, *extra, key=KEY, env=None):
    agent = Agent(store, args=["--backend", "remote", "--base-url", stub.base_url, *extra],
                  env={"CLARO_API_KEY": key, **(env or {})} if key is not None else (env or {}))
    agent.initialize()
    return agent


@pytest.fixture
def agent(store, stub):
    with remote_agent(store, stub) as a:
        yield a


def rpc_error(agent, method, params):
    return agent.error(method, params)


# -- every method, mapped onto the REST API


def test_initialize_result_says_remote(store, stub):
    with Agent(store, args=["--backend", "remote", "--base-url", stub.base_url], env={"CLARO_API_KEY": KEY}) as a:
        assert a.initialize()["capabilities"]["datasources"]["backend"] == "remote"


def test_list_maps_query_parameters_and_returns_the_servers_answer(agent, stub):
    ids = [stub.add_source(f"f{i}.csv", content=PRODUCTS) for i in range(3)]
    stub.add_source("p.pdf", status="processing", polls=99, content_type="application/pdf")
    result = agent.call("datasources/list", {"page": 1, "limit": 2, "status": "completed", "contentType": "text/csv", "maxAge": 0})
    validate_result("datasources/list", result)
    [request] = stub.recorded("GET", "/api/v2/datasources")
    assert request.query == {"page": "1", "limit": "2", "status": "completed", "contentType": "text/csv"}
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert [s["datasourceId"] for s in result["dataSources"]] == ids[::-1][:2]
    assert result["pagination"] == {"page": 1, "limit": 2, "total": 3, "totalPages": 2}
    assert "cache" not in result
    first = result["dataSources"][0]
    assert first == {"datasourceId": ids[2], "fileName": "f2.csv", "contentType": "text/csv", "fileSize": len(PRODUCTS),
                     "status": "completed", "uploadedAt": first["uploadedAt"], "processedAt": first["processedAt"]}


def test_get_returns_details(agent, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    result = agent.call("datasources/get", {"datasourceId": id})
    validate_result("datasources/get", result)
    assert stub.count("GET", f"/api/v2/datasources/{id}") == 1
    assert result["rowCount"] == 3 and result["processingStats"] == {"cleanedRows": 3, "errors": 0, "warnings": 0}
    assert result["columns"][2] == {"name": "price", "type": "number", "sampleValues": [29.99, 39.99, 49.99]}


def test_data_maps_sort_order_filter_columns_and_cursor(agent, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    result = agent.call("datasources/data", {"datasourceId": id, "limit": 2, "sort": "price", "order": "desc",
                                             "filter": "price > 30", "columns": ["product_id", "price"]})
    validate_result("datasources/data", result)
    request = stub.recorded("GET", f"/api/v2/datasources/{id}/data")[-1]
    assert request.query == {"page": "1", "limit": "2", "sort": "price", "order": "desc", "filter": "price > 30",
                             "columns": ["product_id", "price"]}
    assert result["data"] == [{"product_id": "PROD003", "price": 49.99}, {"product_id": "PROD002", "price": 39.99}]
    assert list(result["data"][0]) == ["product_id", "price"]
    assert result["columns"] == [{"name": "product_id", "type": "string"}, {"name": "price", "type": "number"}]
    assert result["pagination"] == {"page": 1, "limit": 2, "total": 2, "totalPages": 1, "nextCursor": None}
    page = agent.call("datasources/data", {"datasourceId": id, "limit": 1, "cursor": "page-2"})
    assert stub.recorded("GET", f"/api/v2/datasources/{id}/data")[-1].query["cursor"] == "page-2"
    assert page["pagination"]["nextCursor"] == "page-2"


def test_delete_then_the_source_is_gone(agent, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    result = agent.call("datasources/delete", {"datasourceId": id})
    assert result["message"] == "Data source deleted successfully" and result["datasourceId"] == id
    assert stub.count("DELETE", f"/api/v2/datasources/{id}") == 1
    error = rpc_error(agent, "datasources/get", {"datasourceId": id})
    assert error["code"] == -31404


def test_download_posts_expires_in(agent, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    result = agent.call("datasources/download", {"datasourceId": id, "expiresIn": 120})
    validate_result("datasources/download", result)
    [request] = stub.recorded("POST", f"/api/v2/datasources/{id}/download")
    assert json.loads(request.body) == {"expiresIn": 120}
    assert request.headers["content-type"] == "application/json"
    assert result["downloadUrl"].endswith(f"/download/{id}?token=abc123") and result["fileSize"] == len(PRODUCTS)


def test_upload_inline_sends_multipart_with_the_bytes_and_options(agent, stub):
    content = "a;b\n1;2\n"
    result = agent.call("datasources/upload", {"fileName": "semi.csv", "content": content, "options": {"delimiter": ";", "header": True}})
    validate_result("datasources/upload", result)
    assert result["status"] == "processing" and result["processedAt"] is None and result["fileName"] == "semi.csv"
    source = stub.sources[result["datasourceId"]]
    assert source.content == content.encode() and source.contentType == "text/csv"
    assert source.options == {"delimiter": ";", "header": True}
    [request] = stub.recorded("POST", "/api/v2/datasources")
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")


def test_upload_by_path_sends_the_exact_bytes(agent, stub, tmp_path):
    raw = bytes(range(256)) * 3 + b"\r\nend"
    path = tmp_path / "blob.bin"
    path.write_bytes(raw)
    result = agent.call("datasources/upload", {"path": str(path), "contentType": "text/plain"})
    source = stub.sources[result["datasourceId"]]
    assert source.content == raw and source.fileName == "blob.bin" and source.contentType == "text/plain"
    assert result["fileSize"] == len(raw)


def test_upload_base64_and_a_missing_path(agent, stub, tmp_path):
    raw = b"x,y\n\xe9,1\n"
    result = agent.call("datasources/upload", {"fileName": "latin.csv", "content": base64.b64encode(raw).decode(), "encoding": "base64"})
    assert stub.sources[result["datasourceId"]].content == raw
    error = rpc_error(agent, "datasources/upload", {"path": str(tmp_path / "nope.csv")})
    assert error["code"] == -32602 and error["data"]["details"]["parameter"] == "path"
    assert stub.count("POST", "/api/v2/datasources") == 1


def test_upload_is_processed_and_pushed_with_progress(agent, stub):
    stub.upload_polls = 2
    reply = agent.response(agent.request("datasources/upload", {"fileName": "p.csv", "content": PRODUCTS.decode(), "workDoneToken": "up-1"}))
    id = reply["result"]["datasourceId"]
    note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=20)
    assert note["previousStatus"] == "processing" and note["status"] == "completed"
    assert note["rowCount"] == 3 and note["fileName"] == "p.csv" and note["processedAt"]
    kinds = []
    deadline = time.monotonic() + 5
    while "end" not in kinds and time.monotonic() < deadline:
        progress = agent.wait_notification("$/progress", lambda p: p["token"] == "up-1", timeout=5)
        kinds.append(progress["value"]["kind"])
    assert kinds[0] == "begin" and kinds[-1] == "end"


# -- the watcher


def test_a_source_seen_processing_is_polled_with_backoff_and_pushed(agent, stub):
    id = stub.add_source("slow.csv", status="processing", polls=3, content=PRODUCTS)
    assert agent.call("datasources/get", {"datasourceId": id, "maxAge": 0})["status"] == "processing"
    note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=20)
    assert note["previousStatus"] == "processing" and note["status"] == "completed" and note["rowCount"] == 3
    times = [r.at for r in stub.recorded("GET", f"/api/v2/datasources/{id}")]
    assert len(times) == 3
    first, second = times[1] - times[0], times[2] - times[1]
    assert 0.8 <= first <= 2.5, first
    assert 1.8 <= second <= 4.0, second
    time.sleep(1.5)
    assert stub.count("GET", f"/api/v2/datasources/{id}") == 3, "a finished source is no longer polled"
    agent.call("debug/sleep", {"milliseconds": 1})  # reads every notification written so far
    assert not [n for n in agent.notifications if n["method"] == "datasources/statusChanged"], "sent once"


def test_a_source_seen_in_a_list_that_fails_is_pushed_with_its_error(agent, stub):
    id = stub.add_source("bad.pdf", status="processing", polls=1, outcome="failed", content_type="application/pdf")
    agent.call("datasources/list", {"maxAge": 0})
    note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=20)
    assert note["status"] == "failed" and note["error"] == {"message": "unsupported format"}


def test_a_cached_processing_answer_is_watched_too(store, stub):
    id = stub.add_source("slow.csv", status="processing", polls=2, content=PRODUCTS)
    path = f"/api/v2/datasources/{id}"
    with remote_agent(store, stub, "--cache-ttl", "300") as agent:
        assert agent.call("datasources/get", {"datasourceId": id})["status"] == "processing"
    assert stub.count("GET", path) == 1
    with remote_agent(store, stub, "--cache-ttl", "300") as agent:
        assert agent.call("datasources/get", {"datasourceId": id})["status"] == "processing"
        assert stub.count("GET", path) == 1, "served from the cache an earlier agent filled"
        note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=20)
        assert note["status"] == "completed" and stub.count("GET", path) == 2
        assert agent.call("datasources/get", {"datasourceId": id})["status"] == "completed", "the poll refreshed the cache"
        assert stub.count("GET", path) == 2


# -- errors passed through


def test_not_found_passes_through_the_claro_code_and_details(agent, stub):
    missing = "550e8400-e29b-41d4-a716-446655440000"
    for method in ("datasources/get", "datasources/delete", "datasources/download", "datasources/data"):
        error = rpc_error(agent, method, {"datasourceId": missing})
        assert error == {"code": -31404, "message": "Data source not found",
                         "data": {"code": "DATASOURCE_NOT_FOUND", "details": {"datasourceId": missing}}}, method
    assert stub.count() == 4, "each answer came from the server"


def test_processing_and_failed_sources_pass_through(agent, stub):
    processing = stub.add_source("p.csv", status="processing", polls=99)
    error = rpc_error(agent, "datasources/data", {"datasourceId": processing})
    assert error["code"] == -31409 and error["data"] == {
        "code": "PROCESSING_IN_PROGRESS", "details": {"status": "processing", "estimatedCompletion": "2024-03-14T15:35:00Z"}}
    failed = stub.add_source("f.pdf", status="failed")
    error = rpc_error(agent, "datasources/data", {"datasourceId": failed})
    assert error["code"] == -31422 and error["data"]["details"] == {"datasourceId": failed, "message": "unsupported format"}


def test_invalid_parameters_from_the_server_pass_through(agent, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    error = rpc_error(agent, "datasources/data", {"datasourceId": id, "filter": "price < 3"})
    assert error["code"] == -32602 and error["message"] == "Invalid parameters"
    assert error["data"]["details"]["reason"] == "stub understands only `column > number`"


def test_params_are_still_checked_by_the_agent(agent, stub):
    error = rpc_error(agent, "datasources/list", {"limit": 500})
    assert error["code"] == -32602 and error["data"]["details"]["parameter"] == "limit"
    assert stub.count() == 0


def test_a_wrong_key_is_unauthorized(store, stub):
    with remote_agent(store, stub, key="wrong") as agent:
        error = rpc_error(agent, "datasources/list", {})
        assert error == {"code": -31401, "message": "Authentication required",
                         "data": {"code": "UNAUTHORIZED", "details": {"message": "Bearer token missing or invalid"}}}
        assert stub.recorded()[-1].headers["authorization"] == "Bearer wrong"


def test_no_key_sends_no_authorization_and_is_unauthorized(store, stub):
    with remote_agent(store, stub, key=None) as agent:
        assert rpc_error(agent, "datasources/list", {})["code"] == -31401
        assert "authorization" not in stub.recorded()[-1].headers


def test_a_server_error_is_upstream_error(agent, stub):
    stub.fail_next = (500, b"<html>oops</html>")
    error = rpc_error(agent, "datasources/list", {"maxAge": 0})
    assert error["code"] == -31502 and error["data"]["code"] == "UPSTREAM_ERROR"
    assert error["data"]["details"]["status"] == 500 and "oops" in error["data"]["details"]["body"]


def test_a_malformed_answer_is_upstream_error_naming_the_field(agent, stub):
    stub.fail_next = (200, {"dataSources": [{"datasourceId": "x"}], "pagination": {}})
    error = rpc_error(agent, "datasources/list", {"maxAge": 0})
    assert error["code"] == -31502 and "dataSources[0].datasourceId" in error["data"]["details"]["reason"]


# -- endpoints the hosted API lacks


def test_query_without_an_endpoint_is_a_clear_error(agent, stub):
    error = rpc_error(agent, "datasources/query", {"sql": "SELECT 1"})
    assert error["code"] == -31501 and error["message"] == "Not supported by the server"
    details = error["data"]["details"]
    assert details["endpoint"] == "POST /query" and details["status"] == 404 and details["method"] == "datasources/query"
    assert "no POST /query endpoint" in details["reason"] and stub.base_url in details["reason"]


def test_query_with_an_endpoint_is_forwarded(agent, stub):
    stub.enable_query = True
    id = stub.add_source("products.csv", content=PRODUCTS)
    result = agent.call("datasources/query", {"sql": "SELECT count(*) AS n FROM p", "sources": {"p": id}, "limit": 5})
    validate_result("datasources/query", result)
    [request] = stub.recorded("POST", "/api/v2/query")
    assert json.loads(request.body) == {"sql": "SELECT count(*) AS n FROM p", "sources": {"p": id}, "limit": 5, "timeoutMs": 10000}
    assert result["rows"] == [{"n": 1, "sql": "SELECT count(*) AS n FROM p"}] and result["rowCount"] == 1


def test_export_without_an_endpoint_is_a_clear_error_and_a_missing_source_is_not_found(agent, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    error = rpc_error(agent, "datasources/export", {"datasourceId": id, "format": "csv"})
    assert error["code"] == -31501 and error["data"]["details"]["endpoint"] == "POST /datasources/{id}/export"
    missing = "550e8400-e29b-41d4-a716-446655440000"
    stub.enable_export = True
    assert rpc_error(agent, "datasources/export", {"datasourceId": missing, "format": "csv"})["code"] == -31404
    result = agent.call("datasources/export", {"datasourceId": id, "format": "jsonl", "sort": "price", "order": "desc", "expiresIn": 60})
    validate_result("datasources/export", result)
    assert json.loads(stub.recorded("POST", f"/api/v2/datasources/{id}/export")[-1].body) == {
        "format": "jsonl", "sort": "price", "order": "desc", "expiresIn": 60}


# -- the metadata cache


def test_get_and_list_are_cached_for_max_age(store, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    with remote_agent(store, stub, "--cache-ttl", "30") as agent:
        first = agent.call("datasources/get", {"datasourceId": id})
        assert agent.call("datasources/get", {"datasourceId": id}) == first
        assert stub.count("GET", f"/api/v2/datasources/{id}") == 1, "served from the cache"
        agent.call("datasources/get", {"datasourceId": id, "maxAge": 0})
        assert stub.count("GET", f"/api/v2/datasources/{id}") == 2, "maxAge 0 always asks"
        agent.call("datasources/list", {})
        agent.call("datasources/list", {})
        assert stub.count("GET", "/api/v2/datasources") == 1
        agent.call("datasources/list", {"page": 2})
        assert stub.count("GET", "/api/v2/datasources") == 2, "another query is another answer"
        time.sleep(1.2)
        agent.call("datasources/list", {"maxAge": 1})
        assert stub.count("GET", "/api/v2/datasources") == 3, "older than maxAge: asked again"
    assert (store / "cache.sqlite").exists()


def test_cache_ttl_zero_always_asks(store, stub):
    with remote_agent(store, stub, "--cache-ttl", "0") as agent:
        agent.call("datasources/list", {})
        agent.call("datasources/list", {})
        assert stub.count("GET", "/api/v2/datasources") == 2


def test_delete_invalidates_the_cache(store, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    with remote_agent(store, stub, "--cache-ttl", "300") as agent:
        agent.call("datasources/get", {"datasourceId": id})
        assert len(agent.call("datasources/list", {})["dataSources"]) == 1
        agent.call("datasources/delete", {"datasourceId": id})
        assert rpc_error(agent, "datasources/get", {"datasourceId": id})["code"] == -31404
        assert stub.count("GET", f"/api/v2/datasources/{id}") == 2
        assert agent.call("datasources/list", {})["dataSources"] == []
        assert stub.count("GET", "/api/v2/datasources") == 2


def test_server_down_serves_stale_cache_marked(store):
    with ClaroStub(api_key=KEY) as down:
        id = down.add_source("products.csv", content=PRODUCTS)
        other = down.add_source("other.csv", content=PRODUCTS)
        with remote_agent(store, down) as agent:
            fresh_list = agent.call("datasources/list", {})
            fresh_get = agent.call("datasources/get", {"datasourceId": id})
            down.stop()
            stale_list = agent.call("datasources/list", {"maxAge": 0})
            validate_result("datasources/list", stale_list)
            assert stale_list["cache"]["stale"] is True
            fetched_at = stale_list.pop("cache")["fetchedAt"]
            assert stale_list == fresh_list and fetched_at.endswith("Z")
            stale_get = agent.call("datasources/get", {"datasourceId": id, "maxAge": 0})
            validate_result("datasources/get", stale_get)
            assert stale_get.pop("cache")["stale"] is True and stale_get == fresh_get
            error = rpc_error(agent, "datasources/get", {"datasourceId": other, "maxAge": 0})
            assert error["code"] == -31503 and error["data"]["code"] == "UPSTREAM_UNAVAILABLE"
            assert error["data"]["details"]["baseUrl"] == down.base_url
            assert rpc_error(agent, "datasources/data", {"datasourceId": id})["code"] == -31503
            down.start()
            again = agent.call("datasources/list", {"maxAge": 0})
            assert "cache" not in again


def test_the_cache_outlives_the_agent(store):
    with ClaroStub(api_key=KEY) as down:
        id = down.add_source("products.csv", content=PRODUCTS)
        with remote_agent(store, down) as agent:
            agent.call("datasources/get", {"datasourceId": id})
        down.stop()
        with remote_agent(store, down) as agent:
            stale = agent.call("datasources/get", {"datasourceId": id, "maxAge": 0})
            assert stale["cache"]["stale"] is True and stale["rowCount"] == 3


def test_a_server_that_does_not_answer_in_time(store, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    with remote_agent(store, stub, "--request-timeout", "1") as agent:
        fresh = agent.call("datasources/get", {"datasourceId": id})
        stub.delay_seconds = 3
        start = time.monotonic()
        stale = agent.call("datasources/get", {"datasourceId": id, "maxAge": 0})
        assert time.monotonic() - start < 2.5, "the request gave up after --request-timeout"
        assert stale.pop("cache")["stale"] is True and stale == fresh
        error = rpc_error(agent, "datasources/list", {"maxAge": 0})
        assert error["code"] == -31503 and error["data"]["details"]["reason"] == "the server did not answer in time"
        stub.delay_seconds = 0


# -- rate limits


def test_429_is_retried_after_retry_after(agent, stub):
    stub.throttle_count = 1
    stub.retry_after = "1"
    start = time.monotonic()
    result = agent.call("datasources/list", {"maxAge": 0})
    assert result["dataSources"] == []
    times = [r.at for r in stub.recorded("GET", "/api/v2/datasources")]
    assert len(times) == 2 and times[1] - times[0] >= 0.95
    assert time.monotonic() - start >= 0.95


def test_429_beyond_the_bound_is_rate_limited_at_once(agent, stub):
    stub.throttle_count = 1
    stub.retry_after = "120"
    start = time.monotonic()
    error = rpc_error(agent, "datasources/list", {"maxAge": 0})
    assert error["code"] == -31429 and error["data"]["code"] == "RATE_LIMITED"
    assert error["data"]["details"]["retryAfter"] == 120
    assert time.monotonic() - start < 5 and stub.count() == 1


def test_a_spent_rate_budget_waits_for_the_reset(agent, stub):
    stub.rate_headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}
    agent.call("datasources/list", {"maxAge": 0})
    stub.rate_headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9", "X-RateLimit-Reset": "60"}
    agent.call("datasources/list", {"maxAge": 0})
    times = [r.at for r in stub.recorded("GET", "/api/v2/datasources")]
    assert len(times) == 2 and times[1] - times[0] >= 0.9, "the second request waited for X-RateLimit-Reset"
    start = time.monotonic()
    agent.call("datasources/list", {"maxAge": 0})
    assert time.monotonic() - start < 0.8, "remaining budget: no wait"


# -- command line and lifecycle


def test_cancelling_a_slow_request_answers_at_once(agent, stub):
    stub.delay_seconds = 4
    start = time.monotonic()
    id = agent.request("datasources/list", {"maxAge": 0})
    time.sleep(0.3)
    agent.notify("$/cancelRequest", {"id": id})
    reply = agent.response(id, timeout=3)
    assert reply["error"]["code"] == -32800 and time.monotonic() - start < 2
    stub.delay_seconds = 0
    start = time.monotonic()
    assert agent.call("datasources/list", {"maxAge": 0})["dataSources"] == []
    assert time.monotonic() - start < 2, "the cancelled request holds nothing up"


def test_read_only_refuses_writes_without_asking_the_server(store, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    with remote_agent(store, stub, "--read-only") as agent:
        for method, params in (("datasources/delete", {"datasourceId": id}),
                               ("datasources/upload", {"fileName": "a.csv", "content": "a\n1\n"})):
            assert rpc_error(agent, method, params)["data"]["code"] == "ACCESS_DENIED"
        assert stub.count() == 0
        assert agent.call("datasources/get", {"datasourceId": id})["fileName"] == "products.csv"


def test_mcp_tools_go_through_the_remote_backend(store, stub):
    id = stub.add_source("products.csv", content=PRODUCTS)
    with Agent(store, args=["--backend", "remote", "--base-url", stub.base_url], env={"CLARO_API_KEY": KEY}) as a:
        a.call("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}})
        a.notify("notifications/initialized", {})
        result = a.call("tools/call", {"name": "get_datasource", "arguments": {"datasourceId": id}})
        assert result["isError"] is False and result["structuredContent"]["rowCount"] == 3
        missing = a.call("tools/call", {"name": "sql_query", "arguments": {"sql": "SELECT 1"}})
        assert missing["isError"] is True and "NOT_SUPPORTED" in missing["content"][0]["text"]
        assert stub.count("GET", f"/api/v2/datasources/{id}") == 1


def test_remote_needs_a_base_url(store):
    out = subprocess.run([agent_binary(), "--store", str(store), "--backend", "remote"], input=b"", capture_output=True, timeout=30)
    assert out.returncode != 0 and b"--base-url" in out.stderr and out.stdout == b""


def test_base_url_from_the_environment(store, stub):
    with Agent(store, args=["--backend", "remote"], env={"CLARO_BASE_URL": stub.base_url, "CLARO_API_KEY": KEY}) as a:
        a.initialize()
        a.call("datasources/list", {})
        assert stub.count("GET", "/api/v2/datasources") == 1


def test_help_documents_the_remote_options():
    out = subprocess.run([agent_binary(), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    for option in ("--backend", "--base-url", "--cache-ttl", "--request-timeout", "CLARO_API_KEY", "CLARO_BASE_URL"):
        assert option in out, option


def test_sigterm_and_end_of_input_exit_cleanly_with_a_watch_running(store, stub):
    id = stub.add_source("slow.csv", status="processing", polls=999)
    with remote_agent(store, stub) as agent:
        agent.call("datasources/get", {"datasourceId": id})
        time.sleep(1.2)
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
        assert not agent.reader.garbage
    with remote_agent(store, stub) as agent:
        agent.call("datasources/get", {"datasourceId": id, "maxAge": 0})
        agent.close_stdin()
        assert agent.wait(timeout=10) == 0


# -- against this project's own REST face, in two processes


def test_against_serve_http_in_another_process(tmp_path):
    import urllib.request

    server_store = tmp_path / "server"
    key = create_key(server_store, "write")
    with RestServer(server_store) as server:
        base = server.base + "/api/v2"
        with Agent(tmp_path / "agent", args=["--backend", "remote", "--base-url", base], env={"CLARO_API_KEY": key}) as agent:
            agent.initialize()
            uploaded = agent.call("datasources/upload", {"fileName": "products.csv", "content": PRODUCTS.decode()})
            id = uploaded["datasourceId"]
            note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=60)
            assert note["status"] == "completed" and note["rowCount"] == 3
            details = agent.call("datasources/get", {"datasourceId": id, "maxAge": 0})
            validate_result("datasources/get", details)
            assert [c["name"] for c in details["columns"]] == ["product_id", "product_name", "price"]
            page = agent.call("datasources/data", {"datasourceId": id, "limit": 2})
            assert page["data"][0] == {"product_id": "PROD001", "product_name": "Widget A", "price": 29.99}
            listed = agent.call("datasources/list", {"maxAge": 0})
            assert [s["datasourceId"] for s in listed["dataSources"]] == [id]
            # The methods beyond the documented API reach the server's own endpoints.
            answer = agent.call("datasources/query", {"sql": f'SELECT count(*) AS n, max(price) AS top FROM "{id}"'})
            assert answer["rows"] == [[3, 49.99]] or answer["rows"] == [{"n": 3, "top": 49.99}], answer
            link = agent.call("datasources/download", {"datasourceId": id, "expiresIn": 60})
            with urllib.request.urlopen(link["downloadUrl"], timeout=10) as fetched:
                assert fetched.read() == PRODUCTS
            exported = agent.call("datasources/export", {"datasourceId": id, "format": "csv", "sort": "price", "order": "desc"})
            with urllib.request.urlopen(exported["downloadUrl"], timeout=10) as fetched:
                lines = fetched.read().decode().splitlines()
            assert lines[0].startswith("product_id") and "49.99" in lines[1]
            doomed = agent.call("datasources/upload", {"fileName": "doomed.csv", "content": PRODUCTS.decode()})["datasourceId"]
            agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == doomed, timeout=60)
            receipt = agent.call("datasources/delete", {"datasourceId": doomed})
            assert receipt["datasourceId"] == doomed
            gone = agent.error("datasources/get", {"datasourceId": doomed, "maxAge": 0})
            assert gone["code"] == -31404 and gone["data"]["code"] == "DATASOURCE_NOT_FOUND"
            # Uploads and deletes drop cached lists; this one is what the stopped server leaves.
            relisted = agent.call("datasources/list", {"maxAge": 0})
            assert [s["datasourceId"] for s in relisted["dataSources"]] == [id] and "cache" not in relisted
            server.terminate()
            stale = agent.call("datasources/list", {"maxAge": 0})
            assert stale["cache"]["stale"] is True and [s["datasourceId"] for s in stale["dataSources"]] == [id]


def test_a_wrong_key_against_serve_http_is_unauthorized(tmp_path):
    server_store = tmp_path / "server"
    create_key(server_store, "read")
    with RestServer(server_store) as server:
        with Agent(tmp_path / "agent", args=["--backend", "remote", "--base-url", server.base + "/api/v2"],
                   env={"CLARO_API_KEY": "wrong"}) as agent:
            agent.initialize()
            error = agent.error("datasources/list", {})
            assert error["code"] == -31401 and error["data"]["code"] == "UNAUTHORIZED"


def test_serve_http_429_is_honoured_by_a_second_agent(tmp_path):
    """Two agents share one key of a serve-http limited to one request a minute: the second,
    which has not seen the spent budget, meets the 429 and either waits out its Retry-After
    (when the window ends within the 30 s it waits) or answers RATE_LIMITED at once."""
    server_store = tmp_path / "server"
    key = create_key(server_store, "read")
    with RestServer(server_store, "--rate-limit", "1") as server:
        base = server.base + "/api/v2"
        # Keep clear of the edge of the 30 s the agent waits at most.
        while 27 <= 60 - time.time() % 60 <= 33 or 60 - time.time() % 60 < 3:
            time.sleep(1)
        env = {"CLARO_API_KEY": key}
        args = ["--backend", "remote", "--base-url", base]
        with Agent(tmp_path / "a", args=args, env=env) as first, Agent(tmp_path / "b", args=args, env=env) as second:
            first.initialize()
            second.initialize()
            first.call("datasources/list", {"maxAge": 0})  # the window's one request
            to_window_end = 60 - time.time() % 60
            start = time.monotonic()
            reply = second.response(second.request("datasources/list", {"maxAge": 0}), timeout=60)
            elapsed = time.monotonic() - start
            if to_window_end < 30:
                assert "result" in reply, reply
                assert elapsed >= to_window_end - 1.5, f"answered after {elapsed:.1f} s; the window ended after {to_window_end:.1f} s"
            else:
                error = reply["error"]
                assert error["code"] == -31429 and error["data"]["code"] == "RATE_LIMITED", error
                assert abs(error["data"]["details"]["retryAfter"] - to_window_end) <= 3
                assert elapsed < 5
