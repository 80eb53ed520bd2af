"""Drives the agent over stdio and prints a transcript a newcomer can follow."""
import json
import subprocess
import sys

binary, store = sys.argv[1], sys.argv[2]
proc = subprocess.Popen([binary, "--store", store], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
next_id = 0


def send(method, params=None, notification=False):
    global next_id
    message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if not notification:
        next_id += 1
        message["id"] = next_id
    print(f"\n--> {json.dumps(message)}")
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()
    if notification:
        return None
    while True:
        reply = json.loads(proc.stdout.readline())
        if reply.get("id") == next_id:
            print("<-- " + json.dumps(reply, indent=2).replace("\n", "\n    "))
            return reply
        print("<-- (notification) " + json.dumps(reply))


print(f"datasource-agent demo on a fresh store at {store}")
send("initialize", {"processId": None, "capabilities": {}})
send("initialized", {}, notification=True)
send("datasources/list")
send("datasources/list", {"limit": 5000})
send("shutdown")
send("exit", notification=True)
print(f"\nagent exited with code {proc.wait()}")
