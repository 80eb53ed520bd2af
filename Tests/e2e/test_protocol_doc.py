"""protocol/openrpc.json matches the code, and real answers match it."""
import uuid

from schema_check import generated_document, method, openrpc, validate_result


def test_committed_openrpc_is_what_the_agent_generates():
    assert openrpc() == generated_document(), "run scripts/gen-openrpc and commit protocol/openrpc.json"


def test_every_advertised_method_is_documented(agent):
    result = agent.call("initialize", {}) if False else None  # initialize already done by fixture
    methods = {m["name"] for m in openrpc()["methods"]}
    reply = agent.call("datasources/list")
    validate_result("datasources/list", reply)
    assert "datasources/list" in methods and "datasources/get" in methods


def test_initialize_lists_exactly_the_documented_methods(store):
    from agentproc import Agent

    with Agent(store, debug_methods=False) as a:
        caps = a.initialize()["capabilities"]["datasources"]
        assert set(caps["methods"]) == {m["name"] for m in openrpc()["methods"]}


def test_list_pagination_defaults_validate(agent):
    result = agent.call("datasources/list", {"page": 3, "limit": 7})
    validate_result("datasources/list", result)
    assert result["pagination"] == {"page": 3, "limit": 7, "total": 0, "totalPages": 0}


def test_documented_errors_carry_claro_codes(agent):
    documented = {e["data"]["code"] for e in method("datasources/get")["errors"]}
    err = agent.error("datasources/get", {"datasourceId": str(uuid.uuid4())})
    assert err["data"]["code"] in documented
    assert err["code"] == -31404 and err["message"] == "Data source not found"
