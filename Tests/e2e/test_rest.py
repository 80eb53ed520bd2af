"""The REST face (§10): `serve-http` answers the Claro "Manage Data Source" page's requests,
sent exactly as the page writes them (cURL and Python forms, only the base URL, the key and
the id substituted), with bodies whose keys and types are those of the page's examples; the
key rules; multipart upload; a stdio agent on the same store hears about REST uploads; the
committed OpenAPI document is what the server serves; schemathesis finds no 5xx."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from agentproc import ROOT, Agent, agent_binary
from conftest import STORE_KINDS, is_postgres, new_store, write_big_csv
from restproc import RestServer, create_key, http, keys

REFERENCE = Path(__file__).parent / "reference" / "claro-manage-data-source.md"
HOSTED = "https://secure-api.getclaro.ai"
# Rows shaped like the page's examples, so that data rows have exactly its keys.
PRODUCTS = "product_id,product_name,price,category\n" + "".join(
    f"PROD{i:03d},Widget {chr(64 + i)},{19.99 + 10 * i:.2f},Electronics\n" for i in range(1, 6))
# Keys the contract (SPEC §4) adds to the page's shapes.
EXTENSIONS = {"nextCursor", "cleaning", "issues", "error", "cache"}


def reference_blocks() -> dict[str, dict[str, str]]:
    """{section title: {block label: code}} from the page, e.g. blocks['Delete Data Source']['cURL']."""
    text = REFERENCE.read_text()
    sections: dict[str, dict[str, str]] = {}
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = chunk.partition("\n")
        blocks = {}
        for _lang, label, code in re.findall(r"```(\w+) (.+?) theme=\{null\}\n(.*?)\n\s*```", body, flags=re.S):
            blocks[label] = textwrap.dedent(code)
        sections[title.strip()] = blocks
    return sections


BLOCKS = reference_blocks()


def example(section: str, label: str):
    return json.loads(BLOCKS[section][label])


def kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def conforms(actual, alternatives: list, path: str = "$", extensions=frozenset()) -> None:
    """actual has the keys and types of (one of) the documented examples: every documented key,
    no undocumented one beyond the contract's extensions; list items match the union of the
    documented items."""
    kinds = {kind(a) for a in alternatives}
    if kinds == {"dict"}:
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        documented = set().union(*(a.keys() for a in alternatives))
        missing = documented - set(actual)
        assert not missing, f"{path}: missing keys {missing}"
        extra = set(actual) - documented - set(extensions)
        assert not extra, f"{path}: undocumented keys {extra}"
        for key in documented:
            conforms(actual[key], [a[key] for a in alternatives if key in a], f"{path}.{key}", extensions)
    elif kinds == {"list"}:
        assert isinstance(actual, list), f"{path}: expected an array, got {actual!r}"
        items = [item for a in alternatives for item in a]
        for index, item in enumerate(actual):
            if items:
                conforms(item, items, f"{path}[{index}]", extensions)
    else:
        assert kind(actual) in kinds, f"{path}: {actual!r} is {kind(actual)}, documented {kinds}"


def run_curl(code: str, base: str, key: str, datasource_id: str | None = None):
    """Runs a documented cURL command as written (base URL and key substituted)."""
    script = code.replace(HOSTED, base).replace("YOUR_API_KEY", key)
    env = dict(os.environ, DATASOURCE_ID=datasource_id or "")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def run_python(code: str, base: str, key: str, datasource_id: str | None = None) -> requests.Response:
    """Runs a documented Python snippet as written (base URL, key and id substituted)."""
    source = code.replace(HOSTED, base).replace("YOUR_API_KEY", key)
    if datasource_id:
        source = source.replace('"your-datasource-id"', json.dumps(datasource_id))
    scope: dict = {}
    exec(compile(source, "<reference page>", "exec"), scope)
    return scope["response"]


@pytest.fixture(scope="module", params=STORE_KINDS)
def rest(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("rest")
    store = new_store(request, directory)
    write = create_key(store, "write", "writer")
    read = create_key(store, "read", "reader")
    revoked = create_key(store, "read", "gone")
    revoked_id = next(k["id"] for k in json.loads(keys(store, "list").stdout) if k["name"] == "gone")
    keys(store, "revoke", revoked_id)
    server = RestServer(store, "--rate-limit", "100000", "--max-upload-bytes", "16000000", port_file=directory / "port")
    with server:
        yield SimpleNamespace(store=store, base=server.base, api=server.base + "/api/v2", write=write, read=read,
                              revoked=revoked, server=server)
    assert server.proc.returncode == 0, server.stderr.decode(errors="replace")
    assert server.stdout == b"", "serve-http writes nothing to stdout"


def upload(rest, content: str | bytes, name="products.csv", key=None, **fields):
    data = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in fields.items()}
    return requests.post(f"{rest.api}/datasources", headers={"Authorization": f"Bearer {key or rest.write}"},
                         files={"file": (name, content)}, data=data, timeout=30)


def wait_done(rest, datasource_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, _, body = http("GET", f"{rest.api}/datasources/{datasource_id}", rest.read)
        assert status == 200, body
        if body["status"] != "processing":
            return body
        time.sleep(0.1)
    raise TimeoutError(datasource_id)


@pytest.fixture(scope="module")
def products(rest):
    reply = upload(rest, PRODUCTS)
    assert reply.status_code == 201, reply.text
    return wait_done(rest, reply.json()["datasourceId"])


# -- the page's requests, as written


def test_list_as_documented(rest, products):
    section = "List All Data Sources"
    documented = example(section, "Success Response")
    for body in (run_curl(BLOCKS[section]["cURL"], rest.base, rest.read),
                 run_python(BLOCKS[section]["Python"], rest.base, rest.read).json()):
        conforms(body, [documented], extensions=EXTENSIONS)
        assert body["pagination"]["page"] == 1 and body["pagination"]["limit"] == 20
        assert products["datasourceId"] in [s["datasourceId"] for s in body["dataSources"]]


def test_details_as_documented(rest, products):
    section = "Get Data Source Details"
    documented = example(section, "Success Response")
    response = run_python(BLOCKS[section]["Python"], rest.base, rest.read, products["datasourceId"])
    assert response.status_code == 200
    for body in (run_curl(BLOCKS[section]["cURL"], rest.base, rest.read, products["datasourceId"]), response.json()):
        conforms(body, [documented], extensions=EXTENSIONS)
        assert body["datasourceId"] == products["datasourceId"] and body["rowCount"] == 5
        assert [c["name"] for c in body["columns"]] == ["product_id", "product_name", "price", "category"]
        assert body["fileName"] == "products.csv" and body["contentType"] == "text/csv"


def test_data_as_documented(rest, products):
    section = "Get Data Source Data"
    documented = example(section, "Success Response")
    response = run_python(BLOCKS[section]["Python"], rest.base, rest.read, products["datasourceId"])
    assert response.status_code == 200
    for body in (run_curl(BLOCKS[section]["cURL"], rest.base, rest.read, products["datasourceId"]), response.json()):
        conforms(body, [documented], extensions=EXTENSIONS)
        assert set(body["data"][0]) == set(documented["data"][0]), "rows have exactly the documented columns"
        assert body["data"][0] == {"product_id": "PROD001", "product_name": "Widget A", "price": 29.99, "category": "Electronics"}
        assert body["pagination"]["limit"] == 50 and body["pagination"]["total"] == 5


def test_download_as_documented(rest, products):
    section = "Generate Download URL"
    documented = example(section, "Success Response")
    response = run_python(BLOCKS[section]["Python"], rest.base, rest.read, products["datasourceId"])
    assert response.status_code == 200
    for body in (run_curl(BLOCKS[section]["cURL"], rest.base, rest.read, products["datasourceId"]), response.json()):
        conforms(body, [documented], extensions=EXTENSIONS)
        assert body["downloadUrl"].startswith(rest.base + "/downloads/"), "links use the REST origin"
        fetched = requests.get(body["downloadUrl"], timeout=10)
        assert fetched.status_code == 200 and fetched.content == PRODUCTS.encode()
        assert body["fileSize"] == len(PRODUCTS.encode())


def test_delete_as_documented(rest):
    section = "Delete Data Source"
    documented = example(section, "Success Response")
    first, second = (upload(rest, PRODUCTS).json()["datasourceId"] for _ in range(2))
    body = run_curl(BLOCKS[section]["cURL"], rest.base, rest.write, first)
    conforms(body, [documented])
    assert body["datasourceId"] == first and body["message"] == documented["message"]
    response = run_python(BLOCKS[section]["Python"], rest.base, rest.write, second)
    assert response.status_code == 200
    conforms(response.json(), [documented])
    for gone in (first, second):
        status, _, error = http("GET", f"{rest.api}/datasources/{gone}", rest.read)
        assert status == 404
        conforms(error, [example("Get Data Source Details", "Not Found Error")])
        assert error["details"] == {"datasourceId": gone}
    # The page's Not Found example for delete: the same body.
    status, _, error = http("DELETE", f"{rest.api}/datasources/{first}", rest.write)
    assert status == 404
    conforms(error, [example(section, "Not Found Error")])


def test_documented_errors(rest):
    listed = BLOCKS["List All Data Sources"]
    body = run_curl(listed["cURL"], rest.base, "")  # "Authorization: Bearer " and nothing
    conforms(body, [example("List All Data Sources", "Authentication Error")])
    assert body["code"] == "UNAUTHORIZED" and body["error"] == "Authentication required"
    response = run_python(listed["Python"], rest.base, "not-a-key")
    assert response.status_code == 401
    conforms(response.json(), [example("List All Data Sources", "Authentication Error")])

    status, _, error = http("GET", f"{rest.api}/datasources/invalid-uuid-format", rest.read)
    assert status == 404 and error == example("Get Data Source Details", "Not Found Error")
    missing = str(uuid.uuid4())
    status, _, error = http("POST", f"{rest.api}/datasources/{missing}/download", rest.read, b'{"expiresIn": 3600}',
                            {"Content-Type": "application/json"})
    assert status == 404
    conforms(error, [example("Generate Download URL", "Not Found Error")])
    assert error["details"] == {"datasourceId": missing}


def test_processing_error_as_documented(rest, tmp_path):
    big = write_big_csv(tmp_path / "big.csv", 400_000)
    with big.open("rb") as f:
        reply = upload(rest, f, name="big.csv")
    assert reply.status_code == 201 and reply.json()["status"] == "processing"
    datasource_id = reply.json()["datasourceId"]
    # estimatedCompletion is null until processing has measured its rate (protocol/README.md).
    deadline = time.time() + 5
    while True:
        response = run_python(BLOCKS["Get Data Source Data"]["Python"], rest.base, rest.read, datasource_id)
        assert response.status_code == 409, response.text
        if response.json()["details"]["estimatedCompletion"] is not None or time.time() > deadline:
            break
        time.sleep(0.05)
    conforms(response.json(), [example("Get Data Source Data", "Processing Error")])
    assert response.json()["details"]["status"] == "processing"
    assert http("DELETE", f"{rest.api}/datasources/{datasource_id}", rest.write)[0] == 200


# -- keys


def test_each_key_rule(rest, products):
    url = f"{rest.api}/datasources"
    one = f"{url}/{products['datasourceId']}"
    for key, reason in ((None, "API key missing"), ("dsa_wrong", "API key invalid or revoked"),
                        (rest.revoked, "API key invalid or revoked")):
        status, _, body = http("GET", url, key)
        assert status == 401, key
        assert body == {"error": "Authentication required", "code": "UNAUTHORIZED", "details": {"message": reason}}
    status, _, body = http("GET", url, headers={"Authorization": f"Basic {rest.read}"})
    assert status == 401 and body["code"] == "UNAUTHORIZED"
    status, _, body = http("DELETE", one, rest.read)
    assert status == 403 and body["code"] == "ACCESS_DENIED" and body["error"] == "Insufficient permissions"
    denied = upload(rest, PRODUCTS, key=rest.read)
    assert denied.status_code == 403 and denied.json()["code"] == "ACCESS_DENIED"
    missing = upload(rest, PRODUCTS, key="dsa_wrong")
    assert missing.status_code == 401 and missing.json()["code"] == "UNAUTHORIZED"
    # A read key reads, a lower-case scheme is fine, and the write key may do everything.
    assert http("GET", one, headers={"Authorization": f"bearer {rest.read}"})[0] == 200
    query = json.dumps({"sql": f'SELECT count(*) AS n FROM "{products["datasourceId"]}"'}).encode()
    status, _, body = http("POST", f"{rest.api}/query", rest.read, query, {"Content-Type": "application/json"})
    assert status == 200 and body["rows"] == [{"n": 5}]
    assert http("GET", one, rest.write)[0] == 200


# -- beyond the page: upload, query, export, params


def test_multipart_upload_with_options(rest):
    content = "name;amount\nä;1,5\nb;2\n".encode("utf-8")
    reply = upload(rest, content, name="semi colon ä.csv", options={"delimiter": ";"}, contentType="text/csv")
    assert reply.status_code == 201, reply.text
    created = reply.json()
    conforms(created, [example("List All Data Sources", "Success Response")["dataSources"][1]])
    assert created["fileName"] == "semi colon ä.csv" and created["fileSize"] == len(content)
    assert created["status"] == "processing" and created["processedAt"] is None
    done = wait_done(rest, created["datasourceId"])
    assert done["status"] == "completed", done
    assert [c["name"] for c in done["columns"]] == ["name", "amount"]
    status, _, page = http("GET", f"{rest.api}/datasources/{created['datasourceId']}/data", rest.read)
    assert status == 200 and page["data"][0]["name"] == "ä"
    # A file of exactly the original bytes comes back through the link.
    status, _, link = http("POST", f"{rest.api}/datasources/{created['datasourceId']}/download", rest.read)
    assert status == 200 and requests.get(link["downloadUrl"], timeout=10).content == content


def test_upload_refusals(rest):
    url = f"{rest.api}/datasources"
    auth = {"Authorization": f"Bearer {rest.write}"}
    cases = [
        (requests.post(url, headers=auth, data={"options": "{}"}, files={"other": ("refused.csv", b"a\n1\n")}), "other"),
        (requests.post(url, headers=auth, files={"options": (None, "{}")}), "file"),
        (requests.post(url, headers=auth, files={"file": ("refused.csv", b"a\n1\n"), "options": (None, "{nope")}), "options"),
        (requests.post(url, headers=auth, files={"file": ("refused.csv", b"a\n1\n"), "options": (None, '{"delimiter": "ab"}')}),
         "options.delimiter"),
        (requests.post(url, headers=auth, files={"file": ("refused.csv", b"a\n1\n"), "path": (None, "/etc/passwd")}), "path"),
        (requests.post(url, headers={**auth, "Content-Type": "application/json"}, data=b'{"path": "/etc/passwd"}'), "body"),
    ]
    for response, parameter in cases:
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["code"] == "INVALID_PARAMETERS" and body["details"]["parameter"] == parameter, body
    too_big = requests.post(url, headers=auth, files={"file": ("too-big.csv", b"x" * 16_100_000)})
    assert too_big.status_code == 413 and too_big.json()["code"] == "INVALID_PARAMETERS"
    assert too_big.json()["details"]["max"] == 16_000_000
    listed = requests.get(url, headers=auth, params={"limit": 100}).json()["dataSources"]
    assert not {"too-big.csv", "refused.csv"} & {s["fileName"] for s in listed}


def test_query_string_values_are_validated_like_json_rpc(rest, products):
    data = f"{rest.api}/datasources/{products['datasourceId']}/data"
    cases = [
        (f"{rest.api}/datasources?limit=abc", {"parameter": "limit", "value": "abc", "reason": "must be an integer"}),
        (f"{rest.api}/datasources?limit=101", {"parameter": "limit", "value": 101}),
        (f"{rest.api}/datasources?status=done", {"parameter": "status", "value": "done"}),
        (f"{rest.api}/datasources?pgae=2", {"parameter": "pgae"}),
        (f"{rest.api}/datasources?page=1&page=2", {"parameter": "page"}),
        (f"{data}?limit=5000", {"parameter": "limit", "value": 5000, "max": 1000}),
        (f"{data}?order=sideways", {"parameter": "order"}),
        (f"{data}?filter=price%20%3E", {"parameter": "filter"}),
        (f"{data}?columns=nope", {}),
    ]
    for url, details in cases:
        status, headers, body = http("GET", url, rest.read)
        assert status == 400, (url, body)
        assert body["code"] == "INVALID_PARAMETERS" and body["error"] == "Invalid parameters"
        for name, value in details.items():
            assert body["details"][name] == value, (url, body)
    # The page's query parameters, as requests encodes them (spaces as '+').
    response = requests.get(data, headers={"Authorization": f"Bearer {rest.read}"},
                            params={"page": 1, "limit": 2, "sort": "price", "order": "desc", "filter": "price > 40",
                                    "columns": ["product_id", "price"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] == [{"product_id": "PROD005", "price": 69.99}, {"product_id": "PROD004", "price": 59.99}]
    assert body["pagination"]["total"] == 3 and body["pagination"]["nextCursor"]
    following = requests.get(data, headers={"Authorization": f"Bearer {rest.read}"},
                             params={"limit": 2, "sort": "price", "order": "desc", "filter": "price > 40",
                                     "cursor": body["pagination"]["nextCursor"]}).json()
    assert [r["product_id"] for r in following["data"]] == ["PROD003"]


def test_query_and_export(rest, products):
    sql = {"sql": "SELECT category, count(*) AS n, max(price) AS top FROM p GROUP BY 1", "sources": {"p": products["datasourceId"]}}
    response = requests.post(f"{rest.api}/query", headers={"Authorization": f"Bearer {rest.read}"}, json=sql)
    assert response.status_code == 200
    assert response.json()["rows"] == [{"category": "Electronics", "n": 5, "top": 69.99}]
    bad = requests.post(f"{rest.api}/query", headers={"Authorization": f"Bearer {rest.read}"}, json={"sql": "DELETE FROM p"})
    assert bad.status_code == 400 and bad.json()["details"]["parameter"] == "sql"
    not_json = requests.post(f"{rest.api}/query", headers={"Authorization": f"Bearer {rest.read}"}, data=b"{")
    assert not_json.status_code == 400 and not_json.json()["details"]["parameter"] == "body"
    export = requests.post(f"{rest.api}/datasources/{products['datasourceId']}/export",
                           headers={"Authorization": f"Bearer {rest.read}"}, json={"format": "csv", "filter": "price < 40"})
    assert export.status_code == 200, export.text
    link = export.json()["downloadUrl"]
    assert link.startswith(rest.base + "/exports/")
    assert requests.get(link, timeout=10).text.splitlines() == [
        "product_id,product_name,price,category", "PROD001,Widget A,29.99,Electronics", "PROD002,Widget B,39.99,Electronics"]
    clash = requests.post(f"{rest.api}/datasources/{products['datasourceId']}/download",
                          headers={"Authorization": f"Bearer {rest.read}"}, json={"datasourceId": str(uuid.uuid4())})
    assert clash.status_code == 400 and clash.json()["details"]["parameter"] == "datasourceId"


def test_every_response_carries_rate_limit_headers(rest):
    for method, url, key in (("GET", f"{rest.api}/datasources", rest.read), ("GET", f"{rest.api}/datasources", None),
                             ("GET", f"{rest.api}/nowhere", rest.read), ("GET", f"{rest.api}/openapi.json", None)):
        status, headers, body = http(method, url, key)
        assert int(headers["X-RateLimit-Limit"]) == 100000
        assert 0 <= int(headers["X-RateLimit-Remaining"]) < 100000
        assert int(headers["X-RateLimit-Reset"]) > time.time() - 1
    status, _, body = http("GET", f"{rest.api}/nowhere", rest.read)
    assert status == 404 and body["code"] == "NOT_FOUND" and set(body) == {"error", "code", "details"}
    status, headers, body = http("DELETE", f"{rest.api}/datasources", rest.write)
    assert status == 405 and body["code"] == "METHOD_NOT_ALLOWED" and headers["Allow"] == "GET, POST"
    status, headers, body = http("PUT", f"{rest.api}/datasources/{uuid.uuid4()}", rest.write)
    assert status == 405 and headers["Allow"] == "GET, DELETE" and "X-RateLimit-Remaining" in headers


def test_stdio_agent_hears_of_a_rest_upload(rest):
    with Agent(rest.store) as agent:
        agent.initialize({"processId": None, "capabilities": {}, "initializationOptions": {"apiKey": rest.read}})
        reply = upload(rest, PRODUCTS, name="shared.csv")
        assert reply.status_code == 201
        datasource_id = reply.json()["datasourceId"]
        note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == datasource_id, timeout=60)
        assert note["status"] == "completed" and note["fileName"] == "shared.csv" and note["rowCount"] == 5
        assert agent.call("datasources/get", {"datasourceId": datasource_id})["rowCount"] == 5


def test_openapi_is_the_committed_document(rest):
    committed = json.loads((ROOT / "protocol" / "openapi.json").read_text())
    status, _, served = http("GET", f"{rest.api}/openapi.json")
    assert status == 200
    assert served == committed, "run scripts/gen-openrpc and commit protocol/openapi.json"
    printed = subprocess.run([agent_binary(), "openapi"], capture_output=True, check=True).stdout
    assert printed == (ROOT / "protocol" / "openapi.json").read_bytes()
    assert served["openapi"].startswith("3.1")
    # The same schemas as the OpenRPC document.
    openrpc = {m["name"]: m for m in json.loads((ROOT / "protocol" / "openrpc.json").read_text())["methods"]}
    listing = served["paths"]["/api/v2/datasources"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == openrpc["datasources/list"]["result"]["schema"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"] == next(p for p in openrpc["datasources/list"]["params"] if p["name"] == "limit")["schema"]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(rest, products, tmp_path):
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("st", path=str(Path(sys.executable).parent))
    assert cli, "pip install -r Tests/e2e/requirements.txt (schemathesis)"
    done = subprocess.run(
        [cli, "run", f"{rest.api}/openapi.json", "--url", rest.base,
         "-H", f"Authorization: Bearer {rest.write}",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,unsupported_method",
         "--max-examples", "15", "--phases", "coverage,fuzzing", "--mode", "all", "--no-color",
         "--seed", "1", "--request-timeout", "20", "--generation-database", "none"],
        capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Tested: 8" in done.stdout and " passed" in done.stdout, done.stdout[-3000:]
    assert b" 500 " not in rest.server.stderr
