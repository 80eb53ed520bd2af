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
