"""Drives the agent over stdio through its main job and prints a transcript a newcomer can
follow: upload two files, wait for the completed notifications, list, inspect, query with
a filter, and fetch a download link over HTTP."""
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

binary, store = sys.argv[1], sys.argv[2]
examples = Path(__file__).resolve().parents[1] / "examples"
proc = subprocess.Popen([binary, "--store", store], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
next_id = 0
pending_notes = []


def show(prefix, message, limit=40):
    text = json.dumps(message, indent=2, ensure_ascii=False).splitlines()
    if len(text) > limit:
        text = text[:limit] + [f"  … ({len(text) - limit} more lines)"]
    print(prefix + ("\n    ".join(text)))


def send(method, params=None, notification=False):
    global next_id
    message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if not notification:
        next_id += 1
        message["id"] = next_id
    print(f"\n--> {json.dumps(message, ensure_ascii=False)}")
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()
    if notification:
        return None
    while True:
        reply = json.loads(proc.stdout.readline())
        if reply.get("id") == next_id:
            show("<-- ", reply)
            return reply.get("result")
        pending_notes.append(reply)
        show("<-- (notification) ", reply)


def wait_notification(datasource_id):
    def matches(note):
        return note.get("method") == "datasources/statusChanged" and note["params"].get("datasourceId") == datasource_id

    for note in pending_notes:
        if matches(note):
            pending_notes.remove(note)
            return note
    while True:
        note = json.loads(proc.stdout.readline())
        show("<-- (notification) ", note)
        if matches(note):
            return note
        # Another source's notification may come first; keep it for its own wait.
        pending_notes.append(note)


print(f"datasource-agent demo: a fresh embedded store at {store}")
print("Every line starting --> is what a client writes to the agent's stdin; <-- is what it answers.")
send("initialize", {"processId": None, "capabilities": {}})
send("initialized", {}, notification=True)

print("\n# 1. Upload a product catalogue (CSV) and an event log (JSON Lines), by path.")
products = send("datasources/upload", {"path": str(examples / "products.csv")})
events = send("datasources/upload", {"path": str(examples / "events.jsonl")})
print("\n# 2. Processing runs in the background; the agent pushes datasources/statusChanged when done.")
wait_notification(products["datasourceId"])
wait_notification(events["datasourceId"])

print("\n# 3. List the data sources, newest first.")
send("datasources/list")
print("\n# 4. Inspect the catalogue: inferred column types, samples, what cleaning did.")
send("datasources/get", {"datasourceId": products["datasourceId"]})
print("\n# 5. Query: electronics that cost at most 50 or are in stock, most expensive first.")
send("datasources/data", {"datasourceId": products["datasourceId"], "limit": 5, "sort": "price", "order": "desc",
                          "filter": "category = 'Electronics' AND (price <= 50 OR in_stock = true)"})
print("\n# 6. Nested JSON fields are flattened into dotted column names.")
send("datasources/data", {"datasourceId": events["datasourceId"], "limit": 3, "filter": "event = 'purchase' AND `user.country` IN ('DE', 'FR')"})
print("\n# 7. A signed download link, fetched over HTTP from the agent's loopback listener.")
link = send("datasources/download", {"datasourceId": products["datasourceId"], "expiresIn": 600})
with urllib.request.urlopen(link["downloadUrl"]) as response:
    body = response.read()
    print(f"\nGET {link['downloadUrl'][:60]}… → {response.status}, {len(body)} bytes, "
          f"Content-Disposition: {response.headers['Content-Disposition']}")
print("\n# 8. An error has the Claro code in error.data.")
send("datasources/data", {"datasourceId": products["datasourceId"], "filter": "price > 'cheap'"})
send("shutdown")
send("exit", notification=True)
print(f"\nagent exited with code {proc.wait()}")
