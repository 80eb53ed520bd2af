"""Server-sent events of the REST face (§10, protocol/README.md "Events"): `GET /api/v2/events`
streams `statusChanged` to holders of a valid key (Bearer, or a short-lived token), resumes
with `Last-Event-ID`, sends heartbeats, and ends its streams cleanly on SIGTERM."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import requests

from conftest import STORE_KINDS, new_store
from restproc import EventStream, RestServer, create_key, http, keys

CSV = "id,price,name\n1,50,cheap\n2,150,dear\n3,250,dearer\n"
HEARTBEAT_MS = 300
TOKEN_TTL_MS = 2500
UNAUTHORIZED = {"error": "Authentication required", "code": "UNAUTHORIZED"}


@pytest.fixture(scope="module", params=STORE_KINDS)
def rest(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("events")
    store = new_store(request, directory)
    write = create_key(store, "write", "writer")
    read = create_key(store, "read", "reader")
    server = RestServer(store, "--rate-limit", "100000", port_file=directory / "port", env={
        "DATASOURCE_AGENT_EVENTS_HEARTBEAT_MS": str(HEARTBEAT_MS),
        "DATASOURCE_AGENT_EVENTS_TOKEN_TTL_MS": str(TOKEN_TTL_MS),
    })
    with server:
        yield SimpleNamespace(store=store, base=server.base, api=server.base + "/api/v2", write=write, read=read,
                              server=server)
    assert server.proc.returncode == 0, server.stderr.decode(errors="replace")


def upload(rest, name="prices.csv", content=CSV) -> str:
    reply = requests.post(f"{rest.api}/datasources", headers={"Authorization": f"Bearer {rest.write}"},
                          files={"file": (name, content)}, timeout=30)
    assert reply.status_code == 201, reply.text
    return reply.json()["datasourceId"]


def wait_done(rest, datasource_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, _, body = http("GET", f"{rest.api}/datasources/{datasource_id}", rest.read)
        if body["status"] != "processing":
            return body
        time.sleep(0.05)
    raise TimeoutError(datasource_id)


def is_event(name, datasource_id=None):
    return lambda f: f.get("event") == name and (datasource_id is None or f["data"]["datasourceId"] == datasource_id)


def opening(stream) -> tuple[list, dict]:
    """The frames before `ready` (the replay) and `ready` itself."""
    first = stream.next()
    assert first["retry"] == "2000" and "event" not in first
    replay = []
    while True:
        frame = stream.next()
        assert frame is not None
        if frame.get("event") == "ready":
            return replay, frame
        replay.append(frame)


def test_a_stream_receives_the_status_change_of_an_upload(rest):
    with EventStream(rest.base, key=rest.read) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["Cache-Control"] == "no-cache, no-store"
        assert stream.headers["X-Content-Type-Options"] == "nosniff"
        replay, ready = opening(stream)
        assert replay == [] and ready["data"]["resync"] is True, "a stream without Last-Event-ID starts now"
        position = int(ready["id"])
        datasource_id = upload(rest)
        frame = stream.until(is_event("statusChanged", datasource_id))
        assert int(frame["id"]) > position
        change = frame["data"]
        assert change["status"] == "completed" and change["previousStatus"] == "processing"
        assert change["fileName"] == "prices.csv" and change["rowCount"] == 3
        assert change["processedAt"] and change["processingStats"]["cleanedRows"] == 3
        # The same params as a stdio session's datasources/statusChanged.
        assert set(change) <= {"datasourceId", "fileName", "previousStatus", "status", "processedAt", "rowCount",
                               "processingStats", "error"}


def test_last_event_id_replays_what_was_missed(rest):
    with EventStream(rest.base, key=rest.read) as stream:
        _, ready = opening(stream)
    position = ready["id"]
    # While no stream is open: two uploads complete.
    first, second = upload(rest, "first.csv"), upload(rest, "second.csv")
    wait_done(rest, first)
    wait_done(rest, second)
    for headers, path in (({"Last-Event-ID": position}, "/api/v2/events"),
                          ({}, f"/api/v2/events?lastEventId={position}")):
        with EventStream(rest.base, path=path, key=rest.read, headers=headers) as stream:
            replay, ready = opening(stream)
            ids = [f["data"]["datasourceId"] for f in replay]
            assert first in ids and second in ids, replay
            assert all(f["event"] == "statusChanged" for f in replay)
            numbers = [int(f["id"]) for f in replay]
            assert numbers == sorted(numbers) and numbers[0] > int(position)
            assert ready["data"] == {"resync": False, "replayed": len(replay)}
            assert int(ready["id"]) == numbers[-1]
    # Resuming from the newest id replays nothing and needs no resync.
    with EventStream(rest.base, key=rest.read, headers={"Last-Event-ID": ready["id"]}) as stream:
        replay, again = opening(stream)
        assert replay == [] and again["data"] == {"resync": False, "replayed": 0} and again["id"] == ready["id"]
    # An id this run never gave (another run's, or not a number): the client must refetch.
    for stale in ("1", "abc", str(int(ready["id"]) + 1000)):
        with EventStream(rest.base, key=rest.read, headers={"Last-Event-ID": stale}) as stream:
            replay, resync = opening(stream)
            assert replay == [] and resync["data"]["resync"] is True and resync["data"]["reason"], stale


def test_no_key_bad_key_and_bad_token_are_401(rest):
    cases = [
        ({}, "/api/v2/events", "API key missing"),
        ({"Authorization": "Bearer dsa_wrong"}, "/api/v2/events", "API key invalid or revoked"),
        ({}, "/api/v2/events?token=evt_nope", "events token invalid or expired"),
    ]
    for headers, path, message in cases:
        with EventStream(rest.base, path=path, headers=headers) as stream:
            assert stream.status == 401
            assert stream.headers["Content-Type"] == "application/json"
            assert stream.body() == {**UNAUTHORIZED, "details": {"message": message}}
    for key, message in ((None, "API key missing"), ("dsa_wrong", "API key invalid or revoked")):
        status, _, body = http("POST", f"{rest.api}/events/token", key)
        assert status == 401 and body == {**UNAUTHORIZED, "details": {"message": message}}
    status, _, body = http("GET", f"{rest.api}/events?since=3", rest.read)
    assert status == 400 and body["code"] == "INVALID_PARAMETERS" and body["details"]["parameter"] == "since"
    status, headers, body = http("DELETE", f"{rest.api}/events", rest.read)
    assert status == 405 and headers["Allow"] == "GET"


def test_token_flow(rest):
    status, headers, body = http("POST", f"{rest.api}/events/token", rest.read)
    assert status == 200 and set(body) == {"token", "expiresIn"} and body["expiresIn"] == TOKEN_TTL_MS // 1000
    assert headers["Cache-Control"] == "no-store"
    token = body["token"]
    assert rest.read not in token and rest.write not in token
    # A token opens streams (more than once, for the browser's own reconnection) until it expires.
    for _ in range(2):
        with EventStream(rest.base, path=f"/api/v2/events?token={token}") as stream:
            assert stream.status == 200
            _, ready = opening(stream)
            datasource_id = upload(rest, "by-token.csv")
            assert stream.until(is_event("statusChanged", datasource_id))["data"]["status"] == "completed"
    # The key and a token together are refused; so is a token as a key anywhere else.
    with EventStream(rest.base, path=f"/api/v2/events?token={token}", key=rest.read) as stream:
        assert stream.status == 400 and stream.body()["details"]["parameter"] == "token"
    assert http("GET", f"{rest.api}/datasources", token)[0] == 401
    time.sleep(TOKEN_TTL_MS / 1000 + 0.2)
    with EventStream(rest.base, path=f"/api/v2/events?token={token}") as stream:
        assert stream.status == 401
        assert stream.body()["details"] == {"message": "events token invalid or expired"}


def test_heartbeat_and_revocation(rest):
    doomed = create_key(rest.store, "read", "doomed")
    token = http("POST", f"{rest.api}/events/token", doomed)[2]["token"]
    with EventStream(rest.base, key=doomed) as stream, \
            EventStream(rest.base, path=f"/api/v2/events?token={token}") as by_token:
        opening(stream)
        opening(by_token)
        started = time.time()
        beat = stream.until(lambda f: f["comments"] == ["keep-alive"], timeout=5)
        assert set(beat) == {"comments"} and time.time() - started < HEARTBEAT_MS / 1000 * 4
        doomed_id = next(k["id"] for k in json.loads(keys(rest.store, "list").stdout) if k["name"] == "doomed")
        keys(rest.store, "revoke", doomed_id)
        # The key is checked again at each heartbeat: its streams end, token or not.
        for s in (stream, by_token):
            deadline = time.time() + 5
            while (frame := s.next()) is not None:
                assert time.time() < deadline, "the revoked key's stream did not end"
    with EventStream(rest.base, path=f"/api/v2/events?token={token}") as stream:
        assert stream.status == 401


def test_sigterm_ends_open_streams_and_exits_0(tmp_path):
    store = tmp_path / "store"
    key = create_key(store, "read")
    server = RestServer(store)
    with server:
        streams = [EventStream(server.base, key=key) for _ in range(3)]
        for stream in streams:
            opening(stream)
        started = time.time()
        assert server.terminate(timeout=10) == 0, server.stderr.decode(errors="replace")
        assert time.time() - started < 5
        for stream in streams:
            assert stream.next() is None, "the stream ended cleanly (the final chunk, not a reset)"
            stream.close()


def test_help_names_the_page_and_the_events():
    from agentproc import agent_binary
    import subprocess
    out = subprocess.run([agent_binary(), "serve-http", "--help"], capture_output=True, text=True, check=True).stdout
    out = " ".join(out.split())  # the help wraps its lines
    assert "a web page at /." in out and "GET /api/v2/events" in out and "POST /api/v2/events/token" in out


def test_requests_without_a_key_are_counted_per_client_address(tmp_path):
    import http.client
    store = tmp_path / "store"
    key = create_key(store, "read")
    server = RestServer(store, "--rate-limit", "3", listen="0.0.0.0:0")
    with server:
        port = int(server.base.rsplit(":", 1)[1])

        def get(path, source, headers=None):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            response.read()
            connection.close()
            return response.status

        if time.time() % 60 > 55:  # the windows are wall-clock minutes: not across a boundary
            time.sleep(60 - time.time() % 60 + 0.1)
        assert [get("/app.css", "127.0.0.1") for _ in range(4)] == [200, 200, 200, 429]
        # Another address has its own budget, and so has a key.
        assert get("/app.css", "127.0.0.2") == 200
        assert get("/api/v2/datasources", "127.0.0.1", {"Authorization": f"Bearer {key}"}) == 200
    assert server.proc.returncode == 0
