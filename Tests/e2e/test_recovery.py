"""Crash recovery, several processes on one store, notification delivery (§5, §8)."""
import signal
import time

from agentproc import Agent
from conftest import all_rows, upload_and_wait, write_big_csv


def test_kill_9_during_processing_then_restart_completes(store, tmp_path):
    path = tmp_path / "big.csv"
    write_big_csv(path, 600_000)
    with Agent(store) as a:
        a.initialize()
        id = a.call("datasources/upload", {"path": str(path)})["datasourceId"]
        time.sleep(0.5)
        a.proc.send_signal(signal.SIGKILL)
        a.wait()
    # Nothing half-written is visible: no published table, status still processing.
    assert not (store / "tables" / f"{id}.sqlite").exists()
    with Agent(store) as b:
        b.initialize()
        details = b.call("datasources/get", {"datasourceId": id})
        if details["status"] == "processing":
            note = b.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=180)
            assert note["status"] == "completed"
        details = b.call("datasources/get", {"datasourceId": id})
        assert details["status"] == "completed" and details["rowCount"] == 600_000
        page = b.call("datasources/data", {"datasourceId": id, "limit": 1, "sort": "id", "order": "desc"})
        assert page["data"] == [{"id": 599999, "amount": 149999.75, "label": "label 599999", "flag": True}]
        assert page["pagination"]["total"] == 600_000
    assert not list((store / "tables").glob("*.partial.sqlite"))


def test_two_processes_share_a_store_and_both_are_notified(store):
    with Agent(store) as a, Agent(store) as b:
        a.initialize()
        b.initialize()
        result, note_a = upload_and_wait(a, fileName="shared.csv", content="x,y\n1,2\n")
        id = result["datasourceId"]
        note_b = b.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == id, timeout=10)
        assert note_a == note_b
        assert [d["datasourceId"] for d in b.call("datasources/list")["dataSources"]] == [id]
        assert all_rows(b, id) == [{"x": 1, "y": 2}]
        # b deletes what a uploaded; a sees it gone
        b.call("datasources/delete", {"datasourceId": id})
        assert a.error("datasources/get", {"datasourceId": id})["code"] == -31404


def test_each_change_notified_exactly_once_per_session(store):
    with Agent(store) as a, Agent(store) as b:
        a.initialize()
        b.initialize()
        ids = [a.call("datasources/upload", {"fileName": f"f{i}.csv", "content": f"v\n{i}\n"})["datasourceId"] for i in range(5)]
        for id in ids:
            a.wait_notification("datasources/statusChanged", lambda p, id=id: p["datasourceId"] == id, timeout=30)
            b.wait_notification("datasources/statusChanged", lambda p, id=id: p["datasourceId"] == id, timeout=30)
        time.sleep(0.5)
        a.call("datasources/list")
        b.call("datasources/list")
        assert [n for n in a.notifications if n["method"] == "datasources/statusChanged"] == []
        assert [n for n in b.notifications if n["method"] == "datasources/statusChanged"] == []


def test_notification_shape(agent):
    result, note = upload_and_wait(agent, fileName="n.csv", content="a\n1\n2\n")
    assert note["datasourceId"] == result["datasourceId"]
    assert note["fileName"] == "n.csv"
    assert note["previousStatus"] == "processing" and note["status"] == "completed"
    assert note["processedAt"].endswith("Z")
    assert note["rowCount"] == 2
    assert note["processingStats"] == {"cleanedRows": 2, "errors": 0, "warnings": 0}


def test_notification_arrives_within_100ms_of_commit(agent):
    result = agent.call("datasources/upload", {"fileName": "t.csv", "content": "a\n1\n"})
    note = agent.wait_notification("datasources/statusChanged", lambda p: p["datasourceId"] == result["datasourceId"])
    # processedAt is whole seconds; the note must not lag the commit by more than the poll period
    assert note["status"] == "completed"


def test_delete_while_processing_stops_it(store, tmp_path):
    path = tmp_path / "big.csv"
    write_big_csv(path, 500_000)
    with Agent(store) as a:
        a.initialize()
        id = a.call("datasources/upload", {"path": str(path)})["datasourceId"]
        time.sleep(0.2)
        receipt = a.call("datasources/delete", {"datasourceId": id})
        assert receipt["message"] == "Data source deleted successfully" and receipt["datasourceId"] == id
        time.sleep(1.5)
        assert a.error("datasources/get", {"datasourceId": id})["code"] == -31404
        leftovers = [p.name for p in (store / "tables").iterdir()] + [p.name for p in (store / "originals").iterdir()]
        assert not [name for name in leftovers if id in name]
        assert a.call("datasources/list")["pagination"]["total"] == 0


def test_several_processes_create_a_new_store_at_once(tmp_path):
    import subprocess
    from agentproc import agent_binary
    for attempt in range(5):
        store = tmp_path / f"s{attempt}"
        procs = [subprocess.Popen([agent_binary(), "--store", str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(4)]
        for p in procs:
            out, err = p.communicate(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}\n', timeout=30)
            assert p.returncode == 0, err
            assert b'"result"' in out
