"""Connecting to a PostgreSQL store (SPEC §12): `sslmode` against a server that accepts
only TLS, the reason a store cannot be opened said in the server's (or TLS's) own words and
at once, and a login role that may not create roles (what a managed database usually gives).

These run on a cluster of their own (a self-signed certificate, `hostssl` lines only), so
the run's shared cluster keeps its plain connections and its roles."""
import os
import subprocess
import time
import uuid

import pytest

import pgcluster
from agentproc import Agent, agent_binary
from conftest import all_rows, upload_and_wait

INIT = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}\n'
CSV = "id,name,price\n1,a,1.5\n2,b,$2\n3,c,\n"


@pytest.fixture(scope="module")
def tls_cluster():
    if not pgcluster.available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (scripts/test installs it)")
        pytest.skip("PostgreSQL is not installed")
    cluster = pgcluster.Cluster().start(tls_only=True)
    yield cluster
    cluster.stop()


def refused(url):
    """Starts an agent on `url`; it must exit 1 soon, with nothing on stdout. Its stderr."""
    started = time.monotonic()
    result = subprocess.run([agent_binary(), "--store", url], input=INIT, capture_output=True, timeout=60)
    assert result.returncode == 1 and result.stdout == b"", result
    # The reason comes from the first attempt, not from a 15 s wait for the pool to give up.
    assert time.monotonic() - started < 10
    return result.stderr.decode()


def test_tls_is_used_when_the_server_requires_it(tls_cluster):
    db = tls_cluster.fresh_database()
    for mode in ["require", None]:  # None: the default, prefer
        url = tls_cluster.url(db) + (f"?sslmode={mode}" if mode else "")
        with Agent(url) as agent:
            agent.initialize()
            result, note = upload_and_wait(agent, fileName="t.csv", content=CSV)
            assert note["status"] == "completed", note
            assert [r["price"] for r in all_rows(agent, result["datasourceId"])] == [1.5, 2, None]
            # Every connection of the agent's is encrypted (psql's own, on the socket, is not).
            encrypted = tls_cluster.psql(db, (
                "SELECT string_agg(s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                f"WHERE a.datname = '{db}' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()"))
            assert encrypted and set(encrypted.split(",")) == {"true"}, encrypted
        assert "warning" not in agent.stderr.decode().lower(), agent.stderr.decode()


def test_a_server_that_requires_tls_refuses_sslmode_disable_in_its_words(tls_cluster):
    db = tls_cluster.fresh_database()
    stderr = refused(tls_cluster.url(db) + "?sslmode=disable")
    assert f"cannot open the PostgreSQL store postgres://postgres@127.0.0.1:{tls_cluster.port}/{db}" in stderr
    assert 'the server says: no pg_hba.conf entry for host "127.0.0.1"' in stderr and "no encryption" in stderr


def test_verify_full_refuses_a_certificate_nobody_trusts(tls_cluster):
    db = tls_cluster.fresh_database()
    stderr = refused(tls_cluster.url(db) + "?sslmode=verify-full")
    assert "the TLS handshake failed" in stderr and "CERTIFICATE_VERIFY_FAILED" in stderr
    assert "must be trusted by this machine" in stderr


def test_why_a_store_cannot_be_opened_is_said_at_once(tls_cluster):
    assert 'the server says: database "no_such_db" does not exist' in refused(tls_cluster.url("no_such_db"))
    db = tls_cluster.fresh_database()
    assert 'the server says: role "nobody" does not exist' in refused(tls_cluster.url(db).replace("postgres@", "nobody@"))
    # Nothing listens on the cluster's port once it is taken from a closed socket.
    closed = pgcluster._free_port()
    assert "Connection refused" in refused(f"postgres://x@127.0.0.1:{closed}/db")
    # A password given in the URL never appears in the reason.
    stderr = refused(f"postgres://x:s3cret-pw@127.0.0.1:{closed}/db")
    assert "s3cret-pw" not in stderr and "postgres://x@127.0.0.1" in stderr


def plain_role_database(cluster):
    """A database owned by a new login role without CREATEROLE (nor superuser): the role may
    create the store's schema, not roles. The role and the store URL."""
    role = "plain_" + uuid.uuid4().hex[:8]
    db = "t_" + uuid.uuid4().hex[:12]
    cluster.psql("postgres", f"CREATE ROLE {role} LOGIN NOCREATEROLE NOSUPERUSER")
    cluster.psql("postgres", f'CREATE DATABASE "{db}" OWNER {role}')
    return role, cluster.url(db).replace(f"{cluster.superuser}@", f"{role}@") + "?sslmode=require"


def count_query(agent, id):
    return {"sql": "SELECT count(*) AS n FROM p", "sources": {"p": id}}


def query_refused(agent, id, because):
    error = agent.error("datasources/query", count_query(agent, id))
    assert error["data"]["code"] == "NOT_SUPPORTED" and error["code"] == -31501, error
    assert because in error["data"]["details"]["reason"], error


@pytest.fixture
def role_cluster(tls_cluster):
    """A cluster of the test's own: which roles exist is cluster-wide state."""
    cluster = pgcluster.Cluster().start(tls_only=True)
    yield cluster
    cluster.stop()


def test_a_role_that_may_not_create_roles_gets_everything_but_query(role_cluster):
    cluster = role_cluster
    readers = "SELECT count(*) FROM pg_roles WHERE rolname = 'datasource_agent_reader'"
    # First store of the cluster: the reader role does not exist and this role may not create it.
    assert cluster.psql("postgres", readers) == "0"
    first_role, first_url = plain_role_database(cluster)
    with Agent(first_url) as agent:
        agent.initialize()
        result, note = upload_and_wait(agent, fileName="p.csv", content=CSV)
        assert note["status"] == "completed", (note, agent.stderr.decode())
        first = result["datasourceId"]
        assert len(all_rows(agent, first)) == 3
        assert agent.call("datasources/data", {"datasourceId": first, "filter": "price > 1"})["pagination"]["total"] == 2
        query_refused(agent, first, "the store has no role datasource_agent_reader")
        second, _ = upload_and_wait(agent, fileName="q.csv", content=CSV)
        agent.call("datasources/delete", {"datasourceId": second["datasourceId"]})

    # A superuser's store creates the role, cluster-wide; a later store of a role that may not
    # grant it still has no `query`, and says why (not "only reading …", the statement is fine).
    with Agent(cluster.url(cluster.fresh_database())) as agent:
        agent.initialize()
    assert cluster.psql("postgres", readers) == "1"
    _, other_url = plain_role_database(cluster)
    with Agent(other_url) as agent:
        agent.initialize()
        result, note = upload_and_wait(agent, fileName="p.csv", content=CSV)
        assert note["status"] == "completed", (note, agent.stderr.decode())
        query_refused(agent, result["datasourceId"], "is not a member of the role datasource_agent_reader")

    # What protocol/postgres.md tells an administrator to do; the next agent on the first
    # store grants the reader the sources published before, and `query` works.
    cluster.psql("postgres", f"GRANT datasource_agent_reader TO {first_role}")
    with Agent(first_url) as agent:
        agent.initialize()
        assert agent.call("datasources/query", count_query(agent, first))["rows"] == [{"n": 3}]
