from __future__ import annotations

from typing import Any, Dict, Optional


class DatasourceAgentError(Exception):
    """An error answered by the agent. `code` is the Claro code (e.g. DATASOURCE_NOT_FOUND)
    or, for protocol errors, the JSON-RPC code as a string; `details` names the input."""

    def __init__(self, message: str, code: str, details: Optional[Dict[str, Any]] = None, rpc_code: Optional[int] = None):
        super().__init__(f"{code}: {message}" + (f" {details}" if details else ""))
        self.message = message
        self.code = code
        self.details: Dict[str, Any] = details or {}
        self.rpc_code = rpc_code


class Unauthorized(DatasourceAgentError):
    pass


class AccessDenied(DatasourceAgentError):
    pass


class DatasourceNotFound(DatasourceAgentError):
    pass


class ProcessingInProgress(DatasourceAgentError):
    pass


class ProcessingFailed(DatasourceAgentError):
    pass


class InvalidParameters(DatasourceAgentError):
    pass


_BY_CODE = {
    "UNAUTHORIZED": Unauthorized,
    "ACCESS_DENIED": AccessDenied,
    "DATASOURCE_NOT_FOUND": DatasourceNotFound,
    "PROCESSING_IN_PROGRESS": ProcessingInProgress,
    "PROCESSING_FAILED": ProcessingFailed,
    "INVALID_PARAMETERS": InvalidParameters,
}


def error_from_rpc(error: Dict[str, Any]) -> DatasourceAgentError:
    raw = error.get("data")
    data: Dict[str, Any] = raw if isinstance(raw, dict) else {}
    code: str = data["code"] if isinstance(data.get("code"), str) else str(error.get("code"))
    details = data.get("details") if isinstance(data.get("details"), dict) else {k: v for k, v in data.items() if k != "code"}
    cls = _BY_CODE.get(code, DatasourceAgentError)
    return cls(str(error.get("message", "")), code, details, error.get("code"))
