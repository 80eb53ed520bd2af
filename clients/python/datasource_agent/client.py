from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from .errors import DatasourceAgentError, error_from_rpc

StatusCallback = Callable[[Dict[str, Any]], None]
ProgressCallback = Callable[[Dict[str, Any]], None]


def _default_command() -> List[str]:
    found = shutil.which("datasource-agent")
    if found:
        return [found]
    repo = Path(__file__).resolve().parents[3]
    for config in ("release", "debug"):
        candidate = repo / ".build" / config / "datasource-agent"
        if candidate.exists():
            return [str(candidate)]
    raise FileNotFoundError("datasource-agent not found on PATH or in the repository's .build/")


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Optional[Dict[str, Any]] = None


class Client:
    """Spawns the agent and calls its methods. A background thread reads every message;
    responses wake their callers, notifications go to the registered callbacks."""

    def __init__(
        self,
        command: Optional[Union[str, Sequence[str]]] = None,
        *,
        store: Optional[Union[str, os.PathLike]] = None,
        env: Optional[Dict[str, str]] = None,
        timeout: float = 60.0,
    ) -> None:
        if command is None:
            argv = _default_command()
        elif isinstance(command, str):
            argv = [command]
        else:
            argv = list(command)
        if store is not None:
            argv += ["--store", os.fspath(store)]
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.timeout = timeout
        self._process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=full_env)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: Dict[int, _Pending] = {}
        self._status_callbacks: List[StatusCallback] = []
        self._progress_callbacks: Dict[str, ProgressCallback] = {}
        self._completed: Dict[str, Dict[str, Any]] = {}
        self._completed_cond = threading.Condition(self._lock)
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, name="datasource-agent-reader", daemon=True)
        self._reader.start()
        self.server_info = self._request("initialize", {"processId": os.getpid(), "capabilities": {}})
        self._notify("initialized", {})

    # ------------------------------------------------------------------ plumbing
    def _send(self, message: Dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._write_lock:
            if self._process.stdin is None or self._process.stdin.closed:
                raise DatasourceAgentError("the client is closed", "CLOSED")
            self._process.stdin.write(data)
            self._process.stdin.flush()

    def _notify(self, method: str, params: Optional[Dict[str, Any]] = None) -> None:
        message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    def _request(self, method: str, params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        request_id = next(self._ids)
        pending = _Pending()
        with self._lock:
            self._pending[request_id] = pending
        message: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)
        if not pending.event.wait(self.timeout if timeout is None else timeout):
            with self._lock:
                self._pending.pop(request_id, None)
            self._notify("$/cancelRequest", {"id": request_id})
            raise TimeoutError(f"{method} did not answer in time")
        reply = pending.reply or {}
        if "error" in reply:
            raise error_from_rpc(reply["error"])
        return reply.get("result")

    def _read_loop(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and "id" in message and "method" not in message:
                with self._lock:
                    pending = self._pending.pop(message["id"], None)
                if pending is not None:
                    pending.reply = message
                    pending.event.set()
            elif isinstance(message, dict) and "method" in message:
                self._dispatch(message["method"], message.get("params") or {})
        with self._lock:
            self._closed = True
            for pending in self._pending.values():
                pending.reply = {"error": {"code": -32099, "message": "the agent exited", "data": {"code": "AGENT_EXITED"}}}
                pending.event.set()
            self._pending.clear()
            self._completed_cond.notify_all()

    def _dispatch(self, method: str, params: Dict[str, Any]) -> None:
        if method == "datasources/statusChanged":
            with self._lock:
                self._completed[params.get("datasourceId", "")] = params
                self._completed_cond.notify_all()
                callbacks = list(self._status_callbacks)
            for callback in callbacks:
                callback(params)
        elif method == "$/progress":
            token = str(params.get("token"))
            callback = self._progress_callbacks.get(token)
            if callback is not None:
                callback(params.get("value") or {})
                if (params.get("value") or {}).get("kind") == "end":
                    self._progress_callbacks.pop(token, None)

    # ------------------------------------------------------------------ API
    def call(self, method: str, params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Any method, by name."""
        return self._request(method, params, timeout)

    def on_status_changed(self, callback: StatusCallback) -> None:
        with self._lock:
            self._status_callbacks.append(callback)

    def list(self, **params: Any) -> Dict[str, Any]:
        return self._request("datasources/list", params)

    def get(self, datasource_id: str) -> Dict[str, Any]:
        return self._request("datasources/get", {"datasourceId": datasource_id})

    def data(self, datasource_id: str, **params: Any) -> Dict[str, Any]:
        return self._request("datasources/data", {"datasourceId": datasource_id, **params})

    def rows(self, datasource_id: str, **params: Any) -> Iterator[Dict[str, Any]]:
        """Every matching row, page after page, following `nextCursor`."""
        params = {"limit": 1000, **params}
        params.pop("page", None)
        while True:
            page = self.data(datasource_id, **params)
            yield from page["data"]
            cursor = page["pagination"].get("nextCursor")
            if not cursor:
                return
            params["cursor"] = cursor

    def delete(self, datasource_id: str) -> Dict[str, Any]:
        return self._request("datasources/delete", {"datasourceId": datasource_id})

    def download(self, datasource_id: str, expires_in: int = 3600) -> Dict[str, Any]:
        return self._request("datasources/download", {"datasourceId": datasource_id, "expiresIn": expires_in})

    def upload(
        self,
        path: Optional[Union[str, os.PathLike]] = None,
        *,
        content: Optional[Union[str, bytes]] = None,
        file_name: Optional[str] = None,
        wait: bool = False,
        timeout: Optional[float] = None,
        progress: Optional[ProgressCallback] = None,
        content_type: Optional[str] = None,
        options: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Uploads a file by path (made absolute) or inline content. With `wait`, returns the
        `datasources/statusChanged` notification once processing ends (no polling); a failed
        source raises ProcessingFailed."""
        params: Dict[str, Any] = {}
        if path is not None:
            params["path"] = os.path.abspath(os.fspath(path))
        elif content is not None:
            params["fileName"] = file_name or "upload"
            if isinstance(content, bytes):
                params["content"] = base64.b64encode(content).decode()
                params["encoding"] = "base64"
            else:
                params["content"] = content
        else:
            raise ValueError("give a path or content")
        if content_type:
            params["contentType"] = content_type
        if options:
            params["options"] = options
        if progress is not None:
            token = f"upload-{next(self._ids)}"
            self._progress_callbacks[token] = progress
            params["workDoneToken"] = token
        result = self._request("datasources/upload", params)
        if not wait:
            return result
        note = self.wait_for(result["datasourceId"], timeout=timeout)
        if note.get("status") == "failed":
            message = (note.get("error") or {}).get("message", "processing failed")
            raise error_from_rpc({"code": -31422, "message": "Data source processing failed",
                                  "data": {"code": "PROCESSING_FAILED", "details": {"datasourceId": result["datasourceId"], "message": message}}})
        return note

    def wait_for(self, datasource_id: str, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Blocks until the data source leaves `processing`; returns its statusChanged."""
        with self._completed_cond:
            ok = self._completed_cond.wait_for(lambda: datasource_id in self._completed or self._closed, timeout=timeout)
            if datasource_id in self._completed:
                return self._completed[datasource_id]
        if not ok:
            raise TimeoutError(f"{datasource_id} is still processing")
        raise DatasourceAgentError("the agent exited before processing ended", "AGENT_EXITED")

    def close(self, timeout: float = 5.0) -> int:
        """shutdown, exit, wait; kill after `timeout`. Returns the agent's exit code."""
        if self._process.poll() is None:
            try:
                self._request("shutdown", timeout=timeout)
                self._notify("exit")
            except (DatasourceAgentError, OSError, TimeoutError):
                pass
            try:
                if self._process.stdin:
                    self._process.stdin.close()
            except OSError:
                pass
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
