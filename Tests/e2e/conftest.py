import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from agentproc import Agent  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


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
