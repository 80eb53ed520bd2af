"""A dependency-free client for datasource-agent: spawns the agent and talks JSON-RPC 2.0
to it over stdio (newline-delimited JSON)."""
from .client import Client
from .errors import (
    AccessDenied,
    DatasourceAgentError,
    DatasourceNotFound,
    InvalidParameters,
    ProcessingFailed,
    ProcessingInProgress,
    Unauthorized,
)

__all__ = [
    "Client",
    "DatasourceAgentError",
    "DatasourceNotFound",
    "ProcessingInProgress",
    "ProcessingFailed",
    "InvalidParameters",
    "Unauthorized",
    "AccessDenied",
]
