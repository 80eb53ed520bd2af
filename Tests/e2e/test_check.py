"""`datasource-agent check --store DIR [--repair]`: the consistency checker finds each kind of
damage, exits non-zero on it, and repairs what can be repaired; a full disk leaves a
consistent store; a store that cannot be used is refused at start (issue 18)."""
import os
import signal
import sqlite3
import stat
import subprocess
import time

from agentproc import Agent, agent_binary
from conftest import all_rows, check_store, tmpfs, upload_and_wait, write_big_csv

INIT = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}\n'


def kinds(report):
    return sorted((p["kind"], p["path"]) for p in report["problems"])


def completed_store(store, count=2):
    ids = []
    with Agent(store) as agent:
        agent.initialize()
        for i in range(count):
            result, note = upload_and_wait(agent, fileName=f"s{i}.csv", content="".join(f"{n},{n * 2}\n" for n in range(50 + i)))
            assert note["status"] == "completed"
            ids.append(result["datasourceId"])
    return ids


def test_a_store_in_use_is_consistent(store, tmp_path):
    with Agent(store) as agent:
        agent.initialize()
        done, _ = upload_and_wait(agent, fileName="a.csv", content="x,y\n1,2\n3,4\n")
        failed, note = upload_and_wait(agent, fileName="b.json", content="{not json", contentType="application/json")
        assert note["status"] == "failed"
        agent.call("datasources/data", {"datasourceId": done["datasourceId"], "sort": "y"})
        # Beside a running agent, whose table has its WAL files open.
        status, report, _ = check_store(store)
        assert status == 0, report
        assert report["consistent"] is True and report["problems"] == [] and report["repairs"] == []
        assert report["dataSources"] == {"total": 2, "completed": 1, "processing": 0, "failed": 1}
    table = subprocess.run([agent_binary(), "check", "--store", str(store), "--format", "table"], capture_output=True, text=True)
    assert table.returncode == 0 and "consistent" in table.stdout and "1 completed" in table.stdout


def test_store_files_are_owner_only(store):
    completed_store(store, 1)
    for path in [store / "secret", store / "catalog.sqlite", *(store / "tables").iterdir(), *(store / "originals").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    for directory in [store, store / "tables", store / "originals"]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_damage_is_found_and_repaired(store):
    lost_rows, lost_table, intact = completed_store(store, 3)
    orphan_id = "11111111-2222-4333-8444-555555555555"
    (store / "originals" / orphan_id).write_bytes(b"a,b\n")
    (store / "tables" / f"{orphan_id}.sqlite").write_bytes(b"")
    (store / "tables" / f"{intact}.partial.sqlite").write_bytes(b"half")
    (store / "tables" / "stray.tmp").write_bytes(b"")
    os.chmod(store / "secret", 0o644)
    os.chmod(store, 0o755)
    # As an older version left them, before 0600 was the rule.
    os.chmod(store / "originals" / intact, 0o644)
    os.chmod(store / "tables" / f"{intact}.sqlite", 0o640)
    with sqlite3.connect(store / "tables" / f"{lost_rows}.sqlite") as db:
        db.execute("DELETE FROM rows WHERE rowid % 2 = 0")
    (store / "tables" / f"{lost_table}.sqlite").unlink()

    status, report, _ = check_store(store)
    assert status == 1 and report["consistent"] is False
    assert kinds(report) == sorted([
        ("permissions", "."), ("permissions", "secret"),
        ("permissions", f"originals/{intact}"), ("permissions", f"tables/{intact}.sqlite"),
        ("row-count", f"tables/{lost_rows}.sqlite"), ("table-missing", f"tables/{lost_table}.sqlite"),
        ("orphan-file", f"originals/{orphan_id}"), ("orphan-file", f"tables/{orphan_id}.sqlite"),
        ("orphan-file", f"tables/{intact}.partial.sqlite"), ("orphan-file", "tables/stray.tmp"),
    ])
    assert all(p["repair"] for p in report["problems"])
    assert "25 rows" in next(p["message"] for p in report["problems"] if p["kind"] == "row-count")

    status, report, _ = check_store(store, "--repair")
    assert status == 0, report
    assert report["consistent"] is True and len(report["repairs"]) == 10
    assert f"queued {lost_rows} to be processed again from its original" in report["repairs"]
    for path in [store / "secret", store / "originals" / intact, store / "tables" / f"{intact}.sqlite"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # Processed again from the originals: every row is back.
    with Agent(store) as agent:
        agent.initialize()
        assert len(all_rows(agent, lost_rows)) == 50
        assert len(all_rows(agent, lost_table)) == 51
        assert agent.call("datasources/get", {"datasourceId": lost_table})["status"] == "completed"


def test_lost_rows_without_an_original_become_failed(store):
    (id,) = completed_store(store, 1)
    (store / "tables" / f"{id}.sqlite").unlink()
    (store / "originals" / id).unlink()
    status, report, _ = check_store(store, "--repair")
    # The source is marked failed; its missing original stays reported (nothing can bring it back).
    assert status == 1
    assert any(r.startswith(f"marked {id} failed") for r in report["repairs"])
    assert kinds(report) == [("original-missing", f"originals/{id}")]
    with Agent(store) as agent:
        agent.initialize()
        details = agent.call("datasources/get", {"datasourceId": id})
        assert details["status"] == "failed" and "upload the file again" in details["error"]["message"]


def test_abandoned_processing_is_found_then_recovered(store, tmp_path):
    source = write_big_csv(tmp_path / "big.csv", 300_000)
    with Agent(store) as agent:
        agent.initialize()
        id = agent.call("datasources/upload", {"path": str(source)})["datasourceId"]
        time.sleep(0.3)
        agent.proc.send_signal(signal.SIGKILL)
        agent.wait()
    status, report, _ = check_store(store)
    assert status == 1
    assert [p["kind"] for p in report["problems"]] == ["abandoned-processing"] or \
        sorted(p["kind"] for p in report["problems"]) == ["abandoned-processing", "orphan-file"]
    status, report, _ = check_store(store, "--repair")
    assert status == 0, report
    assert report["dataSources"]["completed"] == 1
    with Agent(store) as agent:
        agent.initialize()
        assert agent.call("datasources/get", {"datasourceId": id})["rowCount"] == 300_000


def test_an_agent_sweeps_leftovers_at_start(store):
    (id,) = completed_store(store, 1)
    orphan_id = "11111111-2222-4333-8444-555555555555"
    for path in [store / "originals" / orphan_id, store / "tables" / f"{orphan_id}.partial.sqlite", store / "tables" / f"{id}.partial.sqlite.utf8"]:
        path.write_bytes(b"x")
    assert check_store(store)[0] == 1
    with Agent(store) as agent:
        agent.initialize()
    status, report, _ = check_store(store)
    assert status == 0, report


def test_check_refuses_what_is_not_a_store(tmp_path):
    status, report, stderr = check_store(tmp_path / "nowhere")
    assert status == 2 and report is None and "does not exist" in stderr
    (tmp_path / "empty").mkdir()
    status, report, stderr = check_store(tmp_path / "empty")
    assert status == 2 and "not a store" in stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    status, report, _ = check_store(tmp_path / "bad")
    assert status == 1 and "catalog-damaged" in [p["kind"] for p in report["problems"]]


def test_check_leaves_the_store_as_it_found_it(store):
    completed_store(store, 2)
    # The WAL index (-shm) is shared memory that readers update too, not stored data.
    files = sorted(p for p in store.rglob("*") if p.is_file() and not p.name.endswith("-shm"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    status, report, _ = check_store(store)
    assert status == 0, report
    assert sorted(p for p in store.rglob("*") if p.is_file() and not p.name.endswith("-shm")) == files
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before


def test_a_catalog_of_another_version_is_not_upgraded_by_check(store):
    completed_store(store, 1)
    with sqlite3.connect(store / "catalog.sqlite") as db:
        db.execute("DELETE FROM grdb_migrations WHERE identifier = 'v4-spreadsheet-sheets'")
    status, report, stderr = check_store(store)
    assert status == 2 and report is None
    assert "written by an older version of datasource-agent; start an agent on the store once" in stderr
    with sqlite3.connect(store / "catalog.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM grdb_migrations WHERE identifier = 'v4-spreadsheet-sheets'").fetchone() == (0,)
        db.execute("INSERT INTO grdb_migrations VALUES ('v4-spreadsheet-sheets'), ('v99-from-the-future')")
    status, report, stderr = check_store(store)
    assert status == 2 and "written by a newer version of datasource-agent" in stderr


# ------------------------------------------------------------------ stores that cannot be used

def test_uncreatable_store_is_refused_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = subprocess.run([agent_binary(), "--store", str(blocker / "store")], input=INIT, capture_output=True, timeout=30)
    assert result.returncode == 1 and result.stdout == b""
    assert f"the store directory {blocker / 'store'} is unusable: it cannot be created ({blocker / 'store'}: Not a directory)" in result.stderr.decode()


def test_read_only_store_is_refused_at_start(tmp_path):
    with tmpfs(tmp_path / "ro", "4m") as mount:
        store = mount / "store"
        completed_store(store, 1)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        for path in [store, mount / "new-store"]:
            result = subprocess.run([agent_binary(), "--store", str(path)], input=INIT, capture_output=True, timeout=30)
            assert result.returncode == 1 and result.stdout == b"", result
            assert "Read-only file system" in result.stderr.decode() and str(path) in result.stderr.decode()


# ------------------------------------------------------------------ a full disk

def test_full_disk_fails_the_load_and_leaves_a_consistent_store(tiny_disk, tmp_path):
    """The original fits on the 6 MiB disk, its table does not: the load ends `failed`, said
    plainly; nothing half-written is left; the agent keeps answering; later uploads work."""
    source = write_big_csv(tmp_path / "rows.csv", 110_000)
    store = tiny_disk / "store"
    with Agent(store) as agent:
        agent.initialize()
        result, note = upload_and_wait(agent, path=str(source), timeout=120)
        assert note["status"] == "failed", note
        assert note["error"]["message"] == "the disk is full: the rows could not be stored"
        id = result["datasourceId"]
        assert agent.error("datasources/data", {"datasourceId": id})["data"]["code"] == "PROCESSING_FAILED"
        assert not list((store / "tables").iterdir())
        status, report, _ = check_store(store)
        assert status == 0, report
        assert agent.call("ping", {}) == {}
        # Still usable once there is room again.
        agent.call("datasources/delete", {"datasourceId": id})
        small, note = upload_and_wait(agent, fileName="small.csv", content="a\n1\n2\n")
        assert note["status"] == "completed" and len(all_rows(agent, small["datasourceId"])) == 2
    assert check_store(store)[0] == 0
