"""serve-http's limits and start-up rules (§10): the rate limit and its 429, --no-auth only on
loopback and only for a keyless store, --read-only, graceful SIGTERM."""
from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest
import requests

from agentproc import Agent, agent_binary
from restproc import RestServer, create_key, http


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    store = tmp_path_factory.mktemp("limited") / "store"
    first = create_key(store, "write")
    second = create_key(store, "read")
    with RestServer(store, "--rate-limit", "5") as server:
        yield server, first, second
    assert server.proc.returncode == 0


def test_rate_limit_then_429_with_retry_after(limited):
    server, first, second = limited
    url = f"{server.base}/api/v2/datasources"
    # Stay inside one window: start right after a minute turns if the current one is nearly over.
    if 60 - time.time() % 60 < 5:
        time.sleep(60 - time.time() % 60 + 0.1)
    remaining = []
    for _ in range(5):
        status, headers, _ = http("GET", url, first)
        assert status == 200 and headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    status, headers, body = http("GET", url, first)
    assert status == 429
    assert body["code"] == "RATE_LIMITED" and set(body) == {"error", "code", "details"}
    retry = int(headers["Retry-After"])
    assert 1 <= retry <= 60 and body["details"]["retryAfter"] == retry
    reset = int(headers["X-RateLimit-Reset"])
    assert reset % 60 == 0 and 0 < reset - time.time() <= 61
    assert headers["X-RateLimit-Remaining"] == "0"
    # Another key has its own budget.
    status, headers, _ = http("GET", url, second)
    assert status == 200 and headers["X-RateLimit-Remaining"] == "4"


def test_read_only_answers_access_denied(tmp_path):
    store = tmp_path / "store"
    key = create_key(store, "write")
    with RestServer(store, "--read-only") as server:
        reply = requests.post(f"{server.base}/api/v2/datasources", headers={"Authorization": f"Bearer {key}"},
                              files={"file": ("a.csv", b"a\n1\n")})
        assert reply.status_code == 403 and reply.json()["code"] == "ACCESS_DENIED"
        assert "read-only" in reply.json()["details"]["reason"]
        status, _, _ = http("GET", f"{server.base}/api/v2/datasources", key)
        assert status == 200
    assert server.proc.returncode == 0


def test_refuses_a_keyless_store_without_no_auth(tmp_path):
    done = subprocess.run([agent_binary(), "serve-http", "--store", str(tmp_path / "s"), "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "no API key" in done.stderr and "keys create" in done.stderr
    assert done.stdout == ""


def test_no_auth_only_on_loopback(tmp_path):
    for listen in ("0.0.0.0:0", "[::]:0", "192.0.2.1:0"):
        done = subprocess.run([agent_binary(), "serve-http", "--store", str(tmp_path / "s"), "--listen", listen, "--no-auth"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and "--no-auth is accepted only with a loopback" in done.stderr, listen
    with RestServer(tmp_path / "open", "--no-auth") as server:
        status, headers, body = http("GET", f"{server.base}/api/v2/datasources")
        assert status == 200 and body["dataSources"] == [] and "X-RateLimit-Limit" in headers
        assert server.terminate() == 0
    assert "listening on http://127.0.0.1:" in server.stderr.decode()


def test_no_auth_does_not_lift_existing_keys(tmp_path):
    store = tmp_path / "store"
    create_key(store, "read")
    with RestServer(store, "--no-auth") as server:
        status, _, body = http("GET", f"{server.base}/api/v2/datasources")
        assert status == 401 and body["code"] == "UNAUTHORIZED"


def test_bad_listen_and_taken_port(tmp_path):
    store = tmp_path / "store"
    create_key(store, "read")
    done = subprocess.run([agent_binary(), "serve-http", "--store", str(store), "--listen", "nonsense"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 64 and "HOST:PORT" in done.stderr
    with RestServer(store) as first:
        port = first.base.rsplit(":", 1)[1]
        taken = subprocess.run([agent_binary(), "serve-http", "--store", str(store), "--listen", f"127.0.0.1:{port}"],
                               capture_output=True, text=True, timeout=30)
        assert taken.returncode == 1 and "serve-http stopped" in taken.stderr


def test_sigterm_lets_a_request_in_flight_finish(tmp_path):
    store = tmp_path / "store"
    key = create_key(store, "write")
    server = RestServer(store)
    server.wait_listening()

    def slow_body():
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="slow.csv"\r\n\r\na,b\n'
        time.sleep(1.0)  # SIGTERM arrives meanwhile
        yield b"1,2\n\r\n--B--\r\n"

    result = {}
    sender = threading.Thread(target=lambda: result.update(reply=requests.post(
        f"{server.base}/api/v2/datasources", data=slow_body(), timeout=30,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "multipart/form-data; boundary=B"})))
    sender.start()
    time.sleep(0.4)
    server.proc.send_signal(signal.SIGTERM)
    sender.join(30)
    assert result["reply"].status_code == 201, result["reply"].text
    assert result["reply"].json()["fileName"] == "slow.csv"
    assert server.proc.wait(timeout=30) == 0
    # The upload it accepted is finished by whoever opens the store next.
    with Agent(store) as agent:
        agent.initialize({"processId": None, "capabilities": {}, "initializationOptions": {"apiKey": key}})
        datasource_id = result["reply"].json()["datasourceId"]
        deadline = time.time() + 30
        while agent.call("datasources/get", {"datasourceId": datasource_id})["status"] == "processing":
            assert time.time() < deadline
            time.sleep(0.1)
        assert agent.call("datasources/get", {"datasourceId": datasource_id})["rowCount"] == 1
