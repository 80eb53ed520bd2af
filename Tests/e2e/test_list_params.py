"""datasources/list and datasources/get parameter validation on an empty store (§4, §6)."""
import uuid

import pytest


@pytest.fixture
def store(any_store):
    """Both stores: a local directory and a PostgreSQL database (§12)."""
    return any_store


def invalid(agent, method, params):
    err = agent.error(method, params)
    assert err["code"] == -32602, err
    assert err["message"] == "Invalid parameters"
    assert err["data"]["code"] == "INVALID_PARAMETERS"
    return err["data"]["details"]


def test_list_defaults(agent):
    assert agent.call("datasources/list") == {
        "dataSources": [], "pagination": {"page": 1, "limit": 20, "total": 0, "totalPages": 0}}


def test_limit_max_is_100(agent):
    assert agent.call("datasources/list", {"limit": 100})["pagination"]["limit"] == 100
    details = invalid(agent, "datasources/list", {"limit": 101})
    assert details["parameter"] == "limit" and details["value"] == 101 and details["max"] == 100


@pytest.mark.parametrize("params, parameter", [
    ({"limit": 0}, "limit"), ({"limit": -1}, "limit"), ({"page": 0}, "page"), ({"page": -3}, "page"),
    ({"limit": 2.5}, "limit"), ({"page": "1"}, "page"), ({"status": "done"}, "status"), ({"status": 3}, "status"),
    ({"contentType": 5}, "contentType"), ({"limit": True}, "limit"), ({"limit": 1e300}, "limit"),
])
def test_list_rejections(agent, params, parameter):
    assert invalid(agent, "datasources/list", params)["parameter"] == parameter


@pytest.mark.parametrize("status", ["processing", "completed", "failed"])
def test_list_status_filter_accepted(agent, status):
    assert agent.call("datasources/list", {"status": status})["dataSources"] == []


def test_get_requires_datasource_id(agent):
    assert invalid(agent, "datasources/get", {})["parameter"] == "datasourceId"
    assert invalid(agent, "datasources/get", {"datasourceId": 12})["parameter"] == "datasourceId"


def test_get_unknown_id_is_not_found(agent):
    id = str(uuid.uuid4())
    err = agent.error("datasources/get", {"datasourceId": id})
    assert err["code"] == -31404
    assert err["data"] == {"code": "DATASOURCE_NOT_FOUND", "details": {"datasourceId": id}}


def test_get_malformed_id_is_not_found(agent):
    err = agent.error("datasources/get", {"datasourceId": "does-not-exist"})
    assert err["code"] == -31404 and err["data"]["details"]["datasourceId"] == "does-not-exist"


def test_null_optional_params_mean_default(agent):
    assert agent.call("datasources/list", {"limit": None, "page": None})["pagination"]["limit"] == 20
