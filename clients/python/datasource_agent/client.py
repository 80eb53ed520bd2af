from __future__ import annotations

import base64
import itertools
import json
import os
import shlex
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from .errors import DatasourceAgentError, error_from_rpc

StatusCallback = Callable[[Dict[str, Any]], None]
ProgressCallback = Callable[[Dict[str, Any]], None]


INSTALL_HINT = (
    "install it with scripts/install from the datasource-agent repository (it builds the agent and "
    "copies it to ~/.local/bin, which must be on PATH), or set DATASOURCE_AGENT to the agent command"
)


def _default_command(env: Optional[Mapping[str, str]] = None) -> List[str]:
    """$DATASOURCE_AGENT (a command line, split like a shell would), else `datasource-agent` on
    PATH, else the build in the source checkout this module lives in (when it does)."""
    env = os.environ if env is None else env
    configured = shlex.split(env.get("DATASOURCE_AGENT") or "")
    if configured:
        return configured
    found = shutil.which("datasource-agent", path=env.get("PATH"))
    if found:
        return [found]
    repo = Path(__file__).resolve().parents[3]
    if (repo / "Package.swift").is_file():  # not installed: running from the repository
        for config in ("release", "debug"):
            candidate = repo / ".build" / config / "datasource-agent"
            if candidate.exists():
                return [str(candidate)]
    raise FileNotFoundError(f"datasource-agent not found: {INSTALL_HINT}")


def _camel(name: str) -> str:
    """snake_case → the wire's camelCase (camelCase passes through unchanged)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _wire(params: Mapping[str, Any]) -> Dict[str, Any]:
    """Keyword arguments → wire params: camelCase names, None left out."""
    return {_camel(key): value for key, value in params.items() if value is not None}


def _joined(value: Any) -> Any:
    """`sort`/`order` may be given as a list of names; the wire takes them comma-separated."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return value


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Optional[Dict[str, Any]] = None


class Client:
    """Spawns the agent and calls its methods. A background thread reads every message;
    responses wake their callers, notifications go to the registered callbacks.

    `command` is the agent's argv (a string is one program path). Without it: the command line
    in $DATASOURCE_AGENT (looked up in `env`, then the environment), else `datasource-agent` on
    PATH, else the repository's build when this package runs from a source checkout.
    `store` is passed as `--store`. Keyword arguments of the methods are snake_case
    (`content_type`, `expires_in`, …) and are sent as the wire's camelCase names."""

    def __init__(
        self,
        command: Optional[Union[str, Sequence[str]]] = None,
        *,
        store: Optional[Union[str, os.PathLike]] = None,
        env: Optional[Dict[str, str]] = None,
        timeout: float = 60.0,
    ) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        if command is None:
            argv = _default_command(full_env)
        elif isinstance(command, str):
            argv = [command]
        else:
            argv = list(command)
        if store is not None:
            argv += ["--store", os.fspath(store)]
        self.timeout = timeout
        try:
            self._process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=full_env)
        except OSError as error:
            raise OSError(error.errno, f"cannot run the agent {argv[0]!r} ({error.strerror or error}): {INSTALL_HINT}") from error
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
            progress = self._progress_callbacks.get(token)
            if progress is not None:
                progress(params.get("value") or {})
                if (params.get("value") or {}).get("kind") == "end":
                    self._progress_callbacks.pop(token, None)

    # ------------------------------------------------------------------ API
    def call(self, method: str, params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Any method, by name."""
        return self._request(method, params, timeout)

    def on_status_changed(self, callback: StatusCallback) -> None:
        with self._lock:
            self._status_callbacks.append(callback)

    def list(
        self,
        *,
        page: Optional[int] = None,
        limit: Optional[int] = None,
        status: Optional[str] = None,
        content_type: Optional[str] = None,
        max_age: Optional[float] = None,
        **params: Any,
    ) -> Dict[str, Any]:
        """`datasources/list`: `{dataSources: [...], pagination: {...}}`, newest first."""
        return self._request("datasources/list", _wire(dict(
            page=page, limit=limit, status=status, content_type=content_type, max_age=max_age, **params)))

    def get(self, datasource_id: str, *, max_age: Optional[float] = None) -> Dict[str, Any]:
        """`datasources/get`: the data source with its columns, row count and processing stats."""
        return self._request("datasources/get", _wire(dict(datasource_id=datasource_id, max_age=max_age)))

    def data(
        self,
        datasource_id: str,
        *,
        page: Optional[int] = None,
        limit: Optional[int] = None,
        sort: Optional[Union[str, Sequence[str]]] = None,
        order: Optional[Union[str, Sequence[str]]] = None,
        filter: Optional[str] = None,
        cursor: Optional[str] = None,
        columns: Optional[Sequence[str]] = None,
        **params: Any,
    ) -> Dict[str, Any]:
        """`datasources/data`: one page of rows. `sort` and `order` may be lists (several columns)."""
        return self._request("datasources/data", _wire(dict(
            datasource_id=datasource_id, page=page, limit=limit, sort=_joined(sort), order=_joined(order),
            filter=filter, cursor=cursor, columns=None if columns is None else list(columns), **params)))

    def rows(self, datasource_id: str, **params: Any) -> Iterator[Dict[str, Any]]:
        """Every matching row, page after page, following `nextCursor`. Takes `data`'s keywords
        (except `page` and `cursor`)."""
        params = {"limit": 1000, **params}
        params.pop("page", None)
        params.pop("cursor", None)
        cursor: Optional[str] = None
        while True:
            page = self.data(datasource_id, cursor=cursor, **params)
            yield from page["data"]
            cursor = page["pagination"].get("nextCursor")
            if not cursor:
                return

    def delete(self, datasource_id: str) -> Dict[str, Any]:
        """`datasources/delete`: `{message, datasourceId, deletedAt}`."""
        return self._request("datasources/delete", {"datasourceId": datasource_id})

    def download(self, datasource_id: str, expires_in: int = 3600) -> Dict[str, Any]:
        """`datasources/download`: `{downloadUrl, fileName, expiresAt, fileSize}`."""
        return self._request("datasources/download", {"datasourceId": datasource_id, "expiresIn": expires_in})

    def export(
        self,
        datasource_id: str,
        format: str = "csv",
        *,
        filter: Optional[str] = None,
        sort: Optional[Union[str, Sequence[str]]] = None,
        order: Optional[Union[str, Sequence[str]]] = None,
        columns: Optional[Sequence[str]] = None,
        expires_in: Optional[int] = None,
    ) -> Dict[str, Any]:
        """`datasources/export`: a signed link that streams the cleaned rows as CSV or JSON Lines."""
        return self._request("datasources/export", _wire(dict(
            datasource_id=datasource_id, format=format, filter=filter, sort=_joined(sort), order=_joined(order),
            columns=None if columns is None else list(columns), expires_in=expires_in)))

    def query(
        self,
        sql: str,
        params: Optional[Union[Sequence[Any], Mapping[str, Any]]] = None,
        *,
        sources: Optional[Mapping[str, str]] = None,
        limit: Optional[int] = None,
        timeout_ms: Optional[int] = None,
    ) -> Dict[str, Any]:
        """`datasources/query`: one read-only SQL SELECT; `{columns, rows, rowCount, truncated, elapsedMs}`."""
        return self._request("datasources/query", _wire(dict(
            sql=sql, params=None if params is None else (dict(params) if isinstance(params, Mapping) else list(params)),
            sources=None if sources is None else dict(sources), limit=limit, timeout_ms=timeout_ms)))

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
        work_done_token: Optional[Union[str, int]] = None,
        **params: Any,
    ) -> Dict[str, Any]:
        """Uploads a file by path (made absolute) or inline content, and returns the data source:
        without `wait`, as `datasources/upload` answers it (`status: "processing"`); with `wait`,
        as `get` answers once processing has ended (waiting on `datasources/statusChanged`, no
        polling; a failed source raises ProcessingFailed, `timeout` raises TimeoutError).
        `progress` receives the `$/progress` values (`{kind, percentage?, message?}`)."""
        extra = _wire(params)
        file_name = file_name or extra.pop("fileName", None)
        content_type = content_type or extra.pop("contentType", None)
        token = work_done_token if work_done_token is not None else extra.pop("workDoneToken", None)
        wire: Dict[str, Any] = {}
        if path is not None:
            wire["path"] = os.path.abspath(os.fspath(path))
        elif content is not None:
            wire["fileName"] = file_name or "upload"
            if isinstance(content, bytes):
                wire["content"] = base64.b64encode(content).decode()
                wire["encoding"] = "base64"
            else:
                wire["content"] = content
        else:
            raise ValueError("give a path or content")
        if content_type:
            wire["contentType"] = content_type
        if options:
            wire["options"] = _wire(options)
        wire.update(extra)
        if progress is not None and token is None:
            token = f"upload-{next(self._ids)}"
        if token is not None:
            if progress is not None:
                self._progress_callbacks[str(token)] = progress
            wire["workDoneToken"] = token
        result = self._request("datasources/upload", wire)
        if not wait:
            return result
        datasource_id = result["datasourceId"]
        note = self.wait_for(datasource_id, timeout=timeout)
        if note.get("status") == "failed":
            message = (note.get("error") or {}).get("message", "processing failed")
            raise error_from_rpc({"code": -31422, "message": "Data source processing failed",
                                  "data": {"code": "PROCESSING_FAILED", "details": {"datasourceId": datasource_id, "message": message}}})
        return self.get(datasource_id)

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
