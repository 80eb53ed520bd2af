"""Signed download links over real HTTP (§4 download), on both stores: a local directory
and a PostgreSQL database (§12), whose originals are streamed from the database."""
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from conftest import upload_and_wait
from schema_check import validate_result


def fetch(url, method="GET", headers=None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def source(agent):
    result, _ = upload_and_wait(agent, fileName="Zoë's data.csv", content="a,b\n1,2\n3,4\n")
    return result


def test_download_serves_original_bytes(agent, source):
    link = agent.call("datasources/download", {"datasourceId": source["datasourceId"]})
    validate_result("datasources/download", link)
    assert link["fileName"] == "Zoë's data.csv" and link["fileSize"] == 12
    assert urllib.parse.urlparse(link["downloadUrl"]).hostname == "127.0.0.1"
    status, headers, body = fetch(link["downloadUrl"])
    assert status == 200 and body == b"a,b\n1,2\n3,4\n"
    assert headers["Content-Type"] == "text/csv"
    assert headers["Content-Length"] == "12"
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''Zo%C3%AB%27s%20data.csv" in disposition
    assert 'filename="Zo_\'s data.csv"' in disposition


def test_expiry_default_and_bounds(agent, source):
    id = source["datasourceId"]
    before = time.time()
    link = agent.call("datasources/download", {"datasourceId": id})
    expires = time.mktime(time.strptime(link["expiresAt"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 3590 <= expires - before <= 3610
    for bad in [0, -1, 86401, 1.5, "60"]:
        err = agent.error("datasources/download", {"datasourceId": id, "expiresIn": bad})
        assert err["code"] == -32602 and err["data"]["details"]["parameter"] == "expiresIn"
    assert agent.call("datasources/download", {"datasourceId": id, "expiresIn": 86400})


def test_head_and_range(agent, source):
    url = agent.call("datasources/download", {"datasourceId": source["datasourceId"]})["downloadUrl"]
    status, headers, body = fetch(url, method="HEAD")
    assert status == 200 and headers["Content-Length"] == "12" and body == b""
    status, headers, body = fetch(url, headers={"Range": "bytes=4-6"})
    assert status == 206 and body == b"1,2" and headers["Content-Range"] == "bytes 4-6/12"
    status, headers, body = fetch(url, headers={"Range": "bytes=-4"})
    assert status == 206 and body == b",4\n"[-4:] or body == b"3,4\n"
    status, headers, body = fetch(url, headers={"Range": "bytes=8-"})
    assert status == 206 and body == b"3,4\n"
    status, headers, body = fetch(url, headers={"Range": "bytes=50-60"})
    assert status == 416 and headers["Content-Range"] == "bytes */12"


def test_tampered_links_are_403_with_json(agent, source):
    import json
    url = agent.call("datasources/download", {"datasourceId": source["datasourceId"]})["downloadUrl"]
    parsed = urllib.parse.urlparse(url)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    variants = [
        {**query, "signature": query["signature"][:-2] + ("AA" if not query["signature"].endswith("AA") else "BB")},
        {**query, "expires": str(int(query["expires"]) + 10)},
        {"expires": query["expires"]},
        {"signature": query["signature"]},
        {},
    ]
    for variant in variants:
        status, headers, body = fetch(parsed._replace(query=urllib.parse.urlencode(variant)).geturl())
        assert status == 403, variant
        assert headers["Content-Type"] == "application/json"
        error = json.loads(body)
        assert error["code"] == "ACCESS_DENIED" and error["error"] and "reason" in error["details"]
    other_path = parsed._replace(path=f"/downloads/{uuid.uuid4()}").geturl()
    assert fetch(other_path)[0] == 403


def test_expired_link_is_403(agent, source):
    url = agent.call("datasources/download", {"datasourceId": source["datasourceId"], "expiresIn": 1})["downloadUrl"]
    assert fetch(url)[0] == 200
    time.sleep(2.2)
    status, _, body = fetch(url)
    assert status == 403 and b"expired" in body


def test_deleted_source_is_404(agent, source):
    url = agent.call("datasources/download", {"datasourceId": source["datasourceId"]})["downloadUrl"]
    agent.call("datasources/delete", {"datasourceId": source["datasourceId"]})
    status, _, body = fetch(url)
    assert status == 404 and b"DATASOURCE_NOT_FOUND" in body


def test_listener_serves_nothing_else(agent, source):
    url = agent.call("datasources/download", {"datasourceId": source["datasourceId"]})["downloadUrl"]
    origin = url.split("/downloads/")[0]
    assert fetch(origin + "/")[0] == 404
    assert fetch(origin + "/etc/passwd")[0] == 404
    assert fetch(url, method="POST")[0] in (404, 405)


def test_same_listener_for_every_link(agent, source):
    first = agent.call("datasources/download", {"datasourceId": source["datasourceId"]})["downloadUrl"]
    second = agent.call("datasources/download", {"datasourceId": source["datasourceId"]})["downloadUrl"]
    assert first.split("/downloads/")[0] == second.split("/downloads/")[0]


def test_download_unknown_is_not_found(agent):
    assert agent.error("datasources/download", {"datasourceId": str(uuid.uuid4())})["code"] == -31404


def _link_parts(agent, source, expires_in=3600):
    url = agent.call("datasources/download", {"datasourceId": source["datasourceId"], "expiresIn": expires_in})["downloadUrl"]
    parsed = urllib.parse.urlparse(url)
    return parsed, dict(urllib.parse.parse_qsl(parsed.query))


def _fetch_raw_query(parsed, expires, signature):
    """The link with these exact (already percent-encoded) query values."""
    return fetch(parsed._replace(query=f"expires={expires}&signature={signature}").geturl())


def test_only_the_exact_signed_spelling_is_accepted(agent, source):
    """Another spelling of the same expiry or of the same signature bytes is refused with the
    very body a tampered link gets, so no link has a second valid form (issue 18)."""
    parsed, query = _link_parts(agent, source)
    # A signature using both URL-safe characters, so that their standard-alphabet spelling differs.
    for expires_in in range(3600, 3700):
        if "-" in query["signature"] and "_" in query["signature"]:
            break
        parsed, query = _link_parts(agent, source, expires_in)
    expires, signature = query["expires"], query["signature"]
    assert "-" in signature and "_" in signature and len(signature) == 43
    assert _fetch_raw_query(parsed, expires, signature)[0] == 200
    tampered = _fetch_raw_query(parsed, expires, signature[:-3] + ("AAA" if not signature.endswith("AAA") else "BBB"))
    assert tampered[0] == 403
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(signature[-1])
    same_bytes_other_tail = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]  # only unused bits differ
    q = urllib.parse.quote
    variants = {
        "padded signature": (expires, signature + "="),
        "padded signature, encoded": (expires, signature + "%3D"),
        "standard alphabet": (expires, q(signature.replace("-", "+").replace("_", "/"), safe="")),
        "standard alphabet, raw +": (expires, signature.replace("-", "+")),
        "non-canonical last character": (expires, signature[:-1] + same_bytes_other_tail),
        "space in signature": (expires, signature[:20] + "%20" + signature[20:]),
        "signature with trailing newline": (expires, signature + "%0A"),
        "expiry with plus sign": (q("+" + expires, safe=""), signature),
        "expiry with raw plus": ("+" + expires, signature),
        "expiry with leading zero": ("0" + expires, signature),
        "expiry with leading zeros": ("000" + expires, signature),
        "expiry with leading space": ("%20" + expires, signature),
        "expiry with trailing space": (expires + "%20", signature),
        "expiry with tab": ("%09" + expires, signature),
        "expiry with newline": (expires + "%0A", signature),
        "expiry in hex": (hex(int(expires)), signature),
        "expiry with decimals": (expires + ".0", signature),
        "negative expiry": ("-" + expires, signature),
        "expiry with underscore": (expires[:3] + "_" + expires[3:], signature),
    }
    for name, (e, s) in variants.items():
        status, headers, body = _fetch_raw_query(parsed, e, s)
        assert (status, body) == (tampered[0], tampered[2]), name
        assert headers["Content-Type"] == "application/json", name
    # The genuine link still works after all that.
    assert _fetch_raw_query(parsed, expires, signature)[0] == 200


def _closed_within(sock, seconds):
    """True when the peer closes the connection within `seconds` (whatever it sent first is read)."""
    import socket
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if sock.recv(65536) == b"":
                return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True
    return False


def test_idle_download_connections_are_closed(store):
    """An idle connection, a kept-alive one after its answer and a half-sent request are all
    closed after --download-idle-timeout; a connection carrying requests is not."""
    import socket
    from agentproc import Agent
    with Agent(store, args=["--download-idle-timeout", "1"]) as agent:
        agent.initialize()
        source, _ = upload_and_wait(agent, fileName="a.csv", content="a,b\n1,2\n")
        url = urllib.parse.urlparse(agent.call("datasources/download", {"datasourceId": source["datasourceId"]})["downloadUrl"])
        target = url.path + "?" + url.query
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n".encode()
        silent = socket.create_connection((url.hostname, url.port))
        kept_alive = socket.create_connection((url.hostname, url.port))
        half_sent = socket.create_connection((url.hostname, url.port))
        busy = socket.create_connection((url.hostname, url.port))
        try:
            kept_alive.sendall(request)
            half_sent.sendall(f"GET {target} HTTP/1.1\r\nHost: 127".encode())
            # A connection that sends a request every 0.4 s is in use, not idle, past the timeout.
            for _ in range(6):
                busy.sendall(request)
                busy.settimeout(5)
                answer = b""
                while not answer.endswith(b"a,b\n1,2\n"):
                    chunk = busy.recv(65536)
                    assert chunk, f"the busy connection was closed after {answer!r}"
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200")
                time.sleep(0.4)
            for name, sock in [("silent", silent), ("kept alive", kept_alive), ("half sent", half_sent), ("busy", busy)]:
                assert _closed_within(sock, 10), f"the {name} connection was not closed"
        finally:
            for sock in (silent, kept_alive, half_sent, busy):
                sock.close()


def test_download_idle_timeout_is_validated(store):
    from agentproc import agent_binary
    import subprocess
    for bad in ["0", "-1", "abc", "100000"]:
        done = subprocess.run([agent_binary(), "--store", str(store), "--download-idle-timeout", bad],
                              input=b"", capture_output=True, timeout=30)
        assert done.returncode != 0 and b"--download-idle-timeout" in done.stderr, bad
        assert done.stdout == b""
