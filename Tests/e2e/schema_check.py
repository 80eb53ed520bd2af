"""Validates real responses against protocol/openrpc.json, so the document cannot drift."""
import json
import subprocess
from functools import lru_cache

import jsonschema

from agentproc import ROOT, agent_binary


@lru_cache(maxsize=1)
def openrpc() -> dict:
    return json.loads((ROOT / "protocol" / "openrpc.json").read_text())


def method(name: str) -> dict:
    for m in openrpc()["methods"]:
        if m["name"] == name:
            return m
    raise KeyError(name)


def validate_result(name: str, result) -> None:
    jsonschema.validate(result, method(name)["result"]["schema"])


def validate_params(name: str, params: dict) -> None:
    m = method(name)
    schema = {
        "type": "object",
        "properties": {p["name"]: p["schema"] for p in m["params"]},
        "required": [p["name"] for p in m["params"] if p.get("required")],
    }
    jsonschema.validate(params, schema)


def generated_document() -> dict:
    out = subprocess.run([agent_binary(), "openrpc"], capture_output=True, check=True)
    return json.loads(out.stdout)
