import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from agentproc import Agent, agent_binary  # noqa: E402
import pgcluster  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture(scope="session")
def pg_cluster():
    """One PostgreSQL cluster for the whole run. Outside CI, a machine without PostgreSQL
    skips the tests that need it; in CI (`CI` set) its absence fails them."""
    if not pgcluster.available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (scripts/test installs it)")
        pytest.skip("PostgreSQL is not installed")
    cluster = pgcluster.Cluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh, empty database of the run's cluster, as a `--store` URL."""
    return pg_cluster.url(pg_cluster.fresh_database())


STORE_KINDS = ["local", "postgres"]


def new_store(request, directory: Path):
    """A new, empty store of the kind `request.param` names: `directory/store`, or a fresh
    database of the run's cluster as a `--store` URL. For fixtures of any scope (a module's
    one server per store kind parametrises with `params=STORE_KINDS`)."""
    if request.param == "local":
        return directory / "store"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.url(cluster.fresh_database())


def is_postgres(store) -> bool:
    return str(store).startswith("postgres://")


@pytest.fixture(params=STORE_KINDS)
def any_store(request, tmp_path: Path):
    """The store a store-generic test runs against: a local directory, then a PostgreSQL
    database. A module makes its tests store-generic with `store = any_store` overriding
    `store` (`@pytest.fixture def store(any_store): return any_store`); a test of such a
    module that only makes sense on one store says so with `only_on("local")`."""
    return new_store(request, tmp_path)


def only_on(kind: str):
    """Runs a test of a store-generic module on one kind of store only (its reason in the
    test's docstring): parametrising `any_store` directly replaces the fixture's params."""
    return pytest.mark.parametrize("any_store", [kind], indirect=True)


@pytest.fixture
def agent(store: Path):
    with Agent(store) as a:
        a.initialize()
        yield a


@pytest.fixture
def lsp_agent(store: Path):
    with Agent(store, framing="lsp") as a:
        a.initialize()
        yield a


def upload_and_wait(agent, timeout=60, **params):
    """Uploads and returns (upload result, the statusChanged notification for it)."""
    result = agent.call("datasources/upload", params)
    assert result["status"] == "processing" and result["processedAt"] is None
    note = agent.wait_notification(
        "datasources/statusChanged", lambda p: p["datasourceId"] == result["datasourceId"], timeout=timeout)
    return result, note


def all_rows(agent, datasource_id, **params):
    rows = []
    params = {"datasourceId": datasource_id, "limit": 1000, **params}
    while True:
        page = agent.call("datasources/data", params)
        rows.extend(page["data"])
        cursor = page["pagination"]["nextCursor"]
        if not cursor:
            return rows
        params["cursor"] = cursor


@pytest.fixture
def upload():
    return upload_and_wait


@pytest.fixture
def rows():
    return all_rows


def write_big_csv(path, rows):
    """A CSV large enough that processing is still running a moment after the upload."""
    with path.open("w") as f:
        f.write("id,amount,label,flag\n")
        for i in range(rows):
            f.write(f"{i},{i * 0.25},label {i},{'yes' if i % 2 else 'no'}\n")
    return path


@contextlib.contextmanager
def tmpfs(mount: Path, size: str):
    """A small file system of its own (a full disk, a read-only one). Mounting needs root;
    where it is impossible the test is skipped, except in CI (`.ci/run` sets CI), where it
    fails so that the test never silently stops running."""
    mount.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must be able to mount a tmpfs (run as root with CAP_SYS_ADMIN): {result.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)])


@pytest.fixture
def tiny_disk(tmp_path):
    with tmpfs(tmp_path / "tiny", "6m") as mount:
        yield mount


def check_store(store: Path, *args: str):
    """Runs `datasource-agent check --store STORE ARGS`: (exit status, JSON report or None, stderr)."""
    result = subprocess.run([agent_binary(), "check", "--store", str(store), *args], capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result.returncode, report, result.stderr
