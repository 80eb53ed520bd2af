"""The PostgreSQL store (SPEC §12): what only a shared database can show. The store-generic
expectations (upload, list, get, data, filters, sorts, cursors, delete, errors) run against
both stores in the modules that override `store` with `any_store`."""
import time

import pytest

from agentproc import Agent
from conftest import all_rows, upload_and_wait

CSV = "id,name,price,when\n1,a,1.5,2024-01-02\n2,b,$2,2024-01-03\n3,c,,2024-01-04\n"


def test_upload_get_data_on_postgres(pg_url, pg_cluster):
    with Agent(pg_url, env={"DATASOURCE_AGENT_LOG_LEVEL": "info"}) as agent:
        init = agent.initialize()
        result, note = upload_and_wait(agent, fileName="p.csv", content=CSV)
        assert note["status"] == "completed", (note, agent.stderr.decode())
        details = agent.call("datasources/get", {"datasourceId": result["datasourceId"]})
        assert details["rowCount"] == 3
        assert [c["type"] for c in details["columns"]] == ["number", "string", "number", "date"]
        assert all_rows(agent, result["datasourceId"]) == [
            {"id": 1, "name": "a", "price": 1.5, "when": "2024-01-02"},
            {"id": 2, "name": "b", "price": 2, "when": "2024-01-03"},
            {"id": 3, "name": "c", "price": None, "when": "2024-01-04"}]
    db = pg_url.rsplit("/", 1)[1]
    assert pg_cluster.psql(db, "SELECT count(*) FROM datasource_agent.datasources") == "1"
