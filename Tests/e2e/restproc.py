"""Starts `datasource-agent serve-http` on an ephemeral port and talks to it over HTTP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from agentproc import agent_binary


def keys(store: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([agent_binary(), "keys", *args, "--store", str(store)], capture_output=True, text=True, check=check)


def create_key(store: Path, scope: str, name: str | None = None) -> str:
    extra = ["--name", name] if name else []
    return keys(store, "create", "--scope", scope, *extra).stdout.strip()


class RestServer:
    """serve-http on 127.0.0.1:0; `base` is its origin once it listens."""

    def __init__(self, store: Path | str, *args: str, listen: str = "127.0.0.1:0", env: dict | None = None,
                 port_file: Path | None = None):
        # A PostgreSQL store (a URL) names no directory to put the port file beside: the caller gives one.
        self.port_file = port_file or Path(str(store) + ".port")
        self.port_file.unlink(missing_ok=True)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [agent_binary(), "serve-http", "--store", str(store), "--listen", listen, "--port-file", str(self.port_file), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
        self.stderr = bytearray()
        self.stdout = bytearray()
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout), daemon=True).start()
        self.base = ""

    @staticmethod
    def _drain(stream, sink: bytearray) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            sink.extend(chunk)

    def wait_listening(self, timeout: float = 30) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.port_file.exists():
                host, _, port = self.port_file.read_text().strip().rpartition(":")
                self.base = f"http://{host}:{port}"
                return self.base
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve-http exited {self.proc.returncode}: {self.stderr.decode(errors='replace')}")
            time.sleep(0.05)
        raise TimeoutError(f"serve-http did not listen: {self.stderr.decode(errors='replace')}")

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> "RestServer":
        self.wait_listening()
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.terminate()


def http(method: str, url: str, key: str | None = None, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, parsed JSON body or raw bytes)."""
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, method=method, data=body, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, got, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, raw = error.code, error.headers, error.read()
    try:
        return status, got, json.loads(raw)
    except ValueError:
        return status, got, raw


class EventStream:
    """A server-sent events client over http.client: `next()` returns one frame as a dict
    (`event`, `id`, `data` parsed as JSON, `retry`, `comments`), None at the end of the stream."""

    def __init__(self, base: str, path: str = "/api/v2/events", key: str | None = None,
                 headers: dict | None = None, timeout: float = 10):
        import http.client
        from urllib.parse import urlsplit
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        all_headers = {"Accept": "text/event-stream", **(headers or {})}
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        self.connection.request("GET", path, headers=all_headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers

    def body(self):
        return json.loads(self.response.read())

    def next(self) -> dict | None:
        frame: dict = {"comments": []}
        while True:
            line = self.response.readline()
            if not line:
                return None
            line = line.decode().rstrip("\r\n")
            if line == "":
                if set(frame) == {"comments"} and not frame["comments"]:
                    continue
                if "data" in frame:
                    frame["data"] = json.loads(frame["data"])
                return frame
            if line.startswith(":"):
                frame["comments"].append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            frame[name] = frame[name] + "\n" + value if name == "data" and "data" in frame else value

    def until(self, predicate, timeout: float = 30) -> dict:
        """The first frame that satisfies predicate; fails at the end of the stream or the timeout."""
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            frame = self.next()
            assert frame is not None, f"the stream ended; seen {seen}"
            if predicate(frame):
                return frame
            seen.append(frame)
        raise TimeoutError(f"no such frame in {timeout} s; seen {seen}")

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
