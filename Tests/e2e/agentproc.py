"""Spawns the built datasource-agent and talks to it over real pipes, in either framing."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[2]


def agent_binary() -> str:
    explicit = os.environ.get("DATASOURCE_AGENT_BIN")
    if explicit:
        return explicit
    for config in ("debug", "release"):
        candidate = ROOT / ".build" / config / "datasource-agent"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("build the agent first: swift build")


class FrameReader:
    """Reads frames from the agent's stdout on a thread, strictly: any byte that is not part
    of a well-formed frame is recorded as garbage, so tests can prove stdout is clean."""

    def __init__(self, stream, framing: str):
        self.stream = stream
        self.framing = framing
        self.messages: "queue.Queue[Any]" = queue.Queue()
        self.garbage: list[bytes] = []
        self.raw = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buffer = b""
        while True:
            chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(65536)
            if not chunk:
                break
            self.raw.extend(chunk)
            buffer += chunk
            buffer = self._drain(buffer)
        if buffer:
            self.garbage.append(buffer)
        self.messages.put(EOFError())

    def _drain(self, buffer: bytes) -> bytes:
        while True:
            if self.framing == "ndjson":
                newline = buffer.find(b"\n")
                if newline < 0:
                    return buffer
                line, buffer = buffer[:newline], buffer[newline + 1:]
                self._emit(line)
            else:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return buffer
                header = buffer[:end].decode("ascii", "replace")
                length = None
                for line in header.split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    self.garbage.append(buffer[: end + 4])
                    buffer = buffer[end + 4:]
                    continue
                if len(buffer) < end + 4 + length:
                    return buffer
                body = buffer[end + 4: end + 4 + length]
                buffer = buffer[end + 4 + length:]
                self._emit(body)

    def _emit(self, body: bytes) -> None:
        try:
            self.messages.put(json.loads(body))
        except ValueError:
            self.garbage.append(body)


class Agent:
    def __init__(
        self,
        store: Path,
        framing: str = "ndjson",
        args: Iterable[str] = (),
        env: dict[str, str] | None = None,
        debug_methods: bool = True,
    ):
        self.framing = framing
        full_env = dict(os.environ)
        full_env.pop("DATASOURCE_AGENT_API_KEY", None)
        if debug_methods:
            full_env["DATASOURCE_AGENT_DEBUG_METHODS"] = "1"
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [agent_binary(), "--store", str(store), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        self.reader = FrameReader(self.proc.stdout, framing)
        self.stderr = bytearray()
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_thread.start()
        self.pending: list[Any] = []
        self.notifications: list[dict] = []
        self.next_id = 0

    def _read_stderr(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):
            self.stderr.extend(chunk)

    # -- writing
    def frame(self, body: bytes) -> bytes:
        if self.framing == "ndjson":
            return body + b"\n"
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: Any) -> None:
        self.send_raw(self.frame(json.dumps(message).encode()))

    def request(self, method: str, params: Any = None, id: Any = None) -> Any:
        if id is None:
            self.next_id += 1
            id = self.next_id
        message = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return id

    def notify(self, method: str, params: Any = None) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def close_stdin(self) -> None:
        self.proc.stdin.close()

    # -- reading
    def next_message(self, timeout: float = 10.0) -> Any:
        if self.pending:
            return self.pending.pop(0)
        item = self.reader.messages.get(timeout=timeout)
        if isinstance(item, EOFError):
            raise item
        return item

    def response(self, id: Any, timeout: float = 10.0) -> dict:
        """The response with this id; notifications seen on the way are kept."""
        deadline = time.monotonic() + timeout
        for index, message in enumerate(self.pending):
            if isinstance(message, dict) and message.get("id") == id and "method" not in message:
                return self.pending.pop(index)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no response to {id!r}")
            try:
                item = self.reader.messages.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError(f"no response to {id!r}") from None
            if isinstance(item, EOFError):
                raise EOFError(f"agent closed stdout before answering {id!r}; stderr: {bytes(self.stderr)[-2000:]!r}")
            if isinstance(item, dict) and "method" in item and "id" not in item:
                self.notifications.append(item)
                continue
            if isinstance(item, dict) and item.get("id") == id:
                return item
            self.pending.append(item)

    def call(self, method: str, params: Any = None, timeout: float = 30.0) -> Any:
        reply = self.response(self.request(method, params), timeout)
        if "error" in reply:
            raise RPCError(reply["error"])
        return reply["result"]

    def error(self, method: str, params: Any = None, timeout: float = 30.0) -> dict:
        reply = self.response(self.request(method, params), timeout)
        assert "error" in reply, f"expected an error from {method}, got {reply}"
        return reply["error"]

    def wait_notification(self, method: str, predicate=lambda p: True, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for index, note in enumerate(self.notifications):
                if note["method"] == method and predicate(note.get("params")):
                    return self.notifications.pop(index)["params"]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} notification")
            try:
                item = self.reader.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if isinstance(item, EOFError):
                raise item
            if isinstance(item, dict) and "method" in item and "id" not in item:
                self.notifications.append(item)
            else:
                self.pending.append(item)

    def initialize(self, params: dict | None = None) -> dict:
        result = self.call("initialize", params or {"processId": None, "capabilities": {}})
        self.notify("initialized", {})
        return result

    def shutdown_and_exit(self, timeout: float = 10.0) -> int:
        self.call("shutdown")
        self.notify("exit")
        return self.proc.wait(timeout=timeout)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


class RPCError(Exception):
    def __init__(self, error: dict):
        super().__init__(f"{error.get('code')}: {error.get('message')} {error.get('data')}")
        self.error = error
        self.code = error.get("code")
        self.data = error.get("data")
