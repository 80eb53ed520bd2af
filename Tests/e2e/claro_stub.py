"""A small Claro v2 REST API in one thread pool (stdlib http.server), for testing the remote
backend. It speaks the API as shared/reference/claro-manage-data-source.md documents it:
paths under /api/v2, Bearer keys, the documented bodies and the error bodies
{error, code, details}; plus the upload endpoint of SPEC §10 (multipart `file`, optional
`options` JSON). In-memory sources; a source uploaded (or added) as `processing` turns
`completed` (or `failed`) after a number of GETs of its details; configurable 429s with
Retry-After and X-RateLimit-* headers; can be stopped and started again on the same port to
simulate the server being down. Every request is recorded for the tests to inspect.

The hosted API documents no query or export endpoint, so by default POST /api/v2/query and
POST /api/v2/datasources/{id}/export answer 404 with a non-Claro body, as an unknown route
would; `enable_query` / `enable_export` make the stub provide them."""
from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/api/v2"


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def claro_error(code: str, details: dict) -> dict:
    messages = {
        "UNAUTHORIZED": "Authentication required",
        "ACCESS_DENIED": "Insufficient permissions",
        "DATASOURCE_NOT_FOUND": "Data source not found",
        "PROCESSING_IN_PROGRESS": "Data source still processing",
        "PROCESSING_FAILED": "Data source processing failed",
        "INVALID_PARAMETERS": "Invalid parameters",
        "RATE_LIMITED": "Too many requests",
    }
    return {"error": messages[code], "code": code, "details": details}


@dataclass
class Source:
    datasourceId: str
    fileName: str
    contentType: str
    content: bytes
    status: str
    uploadedAt: datetime
    polls_left: int = 0
    outcome: str = "completed"
    processedAt: datetime | None = None
    options: Any = None
    columns: list = field(default_factory=list)
    rows: list = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "datasourceId": self.datasourceId,
            "fileName": self.fileName,
            "contentType": self.contentType,
            "fileSize": len(self.content),
            "status": self.status,
            "uploadedAt": iso(self.uploadedAt),
            "processedAt": iso(self.processedAt) if self.processedAt else None,
        }

    def details(self) -> dict:
        body = self.summary()
        if self.status == "completed":
            body["columns"] = [
                {"name": c["name"], "type": c["type"], "sampleValues": [r[c["name"]] for r in self.rows[:3]]}
                for c in self.columns
            ]
            body["rowCount"] = len(self.rows)
            body["processingStats"] = {"cleanedRows": len(self.rows), "errors": 0, "warnings": 0}
        elif self.status == "failed":
            body["rowCount"] = 0
            body["processingStats"] = {"cleanedRows": 0, "errors": 1, "warnings": 0}
            body["error"] = {"message": "unsupported format"}
        return body

    def finish(self) -> None:
        self.processedAt = datetime.now(timezone.utc)
        if self.outcome == "failed":
            self.status = "failed"
            return
        self.status = "completed"
        if not self.columns:
            self.columns, self.rows = parse_csv(self.content)


def parse_csv(content: bytes) -> tuple[list, list]:
    text = content.decode("utf-8", "replace")
    reader = list(csv.reader(io.StringIO(text)))
    if not reader:
        return [], []
    header, body = reader[0], reader[1:]
    types = []
    for index, _ in enumerate(header):
        values = [r[index] for r in body if index < len(r)]
        try:
            [float(v) for v in values]
            types.append("number" if values else "string")
        except ValueError:
            types.append("string")
    rows = []
    for r in body:
        row = {}
        for index, name in enumerate(header):
            value = r[index] if index < len(r) else None
            if value is not None and types[index] == "number":
                number = float(value)
                value = int(number) if number.is_integer() else number
            row[name] = value
        rows.append(row)
    return [{"name": n, "type": t} for n, t in zip(header, types)], rows


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    at: float


class ClaroStub:
    def __init__(self, api_key: str = "stub-key", port: int = 0):
        self.api_key = api_key
        self.port = port
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.connections: set = set()
        self.thread: threading.Thread | None = None
        self.reset()

    # -- state
    def reset(self) -> None:
        with self.lock:
            self.sources: dict[str, Source] = {}
            self.requests: list[Recorded] = []
            self.throttle_count = 0
            self.retry_after = "1"
            self.rate_headers: dict[str, str] | None = None
            self.enable_query = False
            self.enable_export = False
            self.upload_polls = 2
            self.fail_next: tuple[int, Any] | None = None
            self.delay_seconds = 0.0
            self.clock = datetime(2024, 3, 14, 15, 30, tzinfo=timezone.utc)

    def add_source(self, file_name="products.csv", status="completed", polls=0, outcome="completed",
                   columns=None, rows=None, content=b"", content_type="text/csv") -> str:
        with self.lock:
            self.clock += timedelta(minutes=1)
            source = Source(
                datasourceId=str(uuid.uuid4()), fileName=file_name, contentType=content_type, content=content,
                status=status, uploadedAt=self.clock, polls_left=polls, outcome=outcome,
                processedAt=self.clock + timedelta(seconds=30) if status != "processing" else None,
                columns=list(columns or []), rows=list(rows or []))
            if status == "completed" and not source.columns and content:
                source.columns, source.rows = parse_csv(content)
            self.sources[source.datasourceId] = source
            return source.datasourceId

    def recorded(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and (path is None or r.path == path)]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return len(self.recorded(method, path))

    # -- lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def start(self) -> "ClaroStub":
        stub = self

        class Handler(StubHandler):
            pass

        Handler.stub = stub
        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stops listening and closes every open connection (kept-alive ones too): connections
        to the port are refused until `start` again."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "ClaroStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class StubHandler(BaseHTTPRequestHandler):
    stub: ClaroStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep pytest output quiet
        pass

    def setup(self):
        super().setup()
        with self.stub.lock:
            self.stub.connections.add(self.connection)

    def finish(self):
        with self.stub.lock:
            self.stub.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- plumbing
    def _send(self, status: int, body: Any = None, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        rate = self.stub.rate_headers
        if rate:
            for name, value in rate.items():
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, details: dict) -> None:
        self._send(status, claro_error(code, details))

    def _handle(self, method: str) -> None:
        stub = self.stub
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # A repeated parameter (`columns=a&columns=b`, as the REST face reads arrays) is a list.
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with stub.lock:
            stub.requests.append(Recorded(method, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
            throttled = stub.throttle_count > 0
            if throttled:
                stub.throttle_count -= 1
            fail = stub.fail_next
            stub.fail_next = None
            delay = stub.delay_seconds
        if delay:
            time.sleep(delay)
        if throttled:
            self._send(429, claro_error("RATE_LIMITED", {}), {"Retry-After": stub.retry_after})
            return
        if self.headers.get("Authorization") != f"Bearer {stub.api_key}":
            self._error(401, "UNAUTHORIZED", {"message": "Bearer token missing or invalid"})
            return
        if fail:
            status, payload = fail
            self._send(status, raw=payload if isinstance(payload, bytes) else json.dumps(payload).encode())
            return
        if not parts.path.startswith(PREFIX):
            self._send(404, {"message": "Not Found"})
            return
        segments = [s for s in parts.path[len(PREFIX):].split("/") if s]
        route = (method, tuple("{id}" if i == 1 and s != "" else s for i, s in enumerate(segments)))
        handlers = {
            ("GET", ("datasources",)): self.list,
            ("POST", ("datasources",)): self.upload,
            ("GET", ("datasources", "{id}")): self.get,
            ("DELETE", ("datasources", "{id}")): self.delete,
            ("GET", ("datasources", "{id}", "data")): self.data,
            ("POST", ("datasources", "{id}", "download")): self.download,
            ("POST", ("datasources", "{id}", "export")): self.export,
            ("POST", ("query",)): self.query,
        }
        handler = handlers.get(route)
        if handler is None:
            self._send(404, {"message": "Not Found"})
            return
        handler(segments[1] if len(segments) > 1 else None, query, body)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    # -- endpoints
    def _source(self, id: str) -> Source | None:
        with self.stub.lock:
            source = self.stub.sources.get(id)
        if source is None:
            self._error(404, "DATASOURCE_NOT_FOUND", {"datasourceId": id})
        return source

    def list(self, _id, query, _body):
        try:
            page = int(query.get("page", 1))
            limit = int(query.get("limit", 20))
        except ValueError:
            return self._error(400, "INVALID_PARAMETERS", {"parameter": "page"})
        if not 1 <= limit <= 100:
            return self._error(400, "INVALID_PARAMETERS", {"parameter": "limit", "value": limit, "max": 100})
        with self.stub.lock:
            items = sorted(self.stub.sources.values(), key=lambda s: s.uploadedAt, reverse=True)
        if "status" in query:
            items = [s for s in items if s.status == query["status"]]
        if "contentType" in query:
            items = [s for s in items if s.contentType == query["contentType"]]
        total = len(items)
        chosen = items[(page - 1) * limit: page * limit]
        self._send(200, {
            "dataSources": [s.summary() for s in chosen],
            "pagination": {"page": page, "limit": limit, "total": total, "totalPages": (total + limit - 1) // limit},
        })

    def get(self, id, _query, _body):
        source = self._source(id)
        if source is None:
            return
        with self.stub.lock:
            if source.status == "processing":
                source.polls_left -= 1
                if source.polls_left <= 0:
                    source.finish()
            answer = source.details()
        self._send(200, answer)

    def delete(self, id, _query, _body):
        if self._source(id) is None:
            return
        with self.stub.lock:
            del self.stub.sources[id]
        self._send(200, {"message": "Data source deleted successfully", "datasourceId": id, "deletedAt": iso(datetime.now(timezone.utc))})

    def data(self, id, query, _body):
        source = self._source(id)
        if source is None:
            return
        if source.status == "processing":
            return self._error(409, "PROCESSING_IN_PROGRESS", {"status": "processing", "estimatedCompletion": "2024-03-14T15:35:00Z"})
        if source.status == "failed":
            return self._error(422, "PROCESSING_FAILED", {"datasourceId": id, "message": "unsupported format"})
        page = int(query.get("page", 1))
        limit = int(query.get("limit", 50))
        if not 1 <= limit <= 1000:
            return self._error(400, "INVALID_PARAMETERS", {"parameter": "limit", "value": limit, "max": 1000})
        names = [c["name"] for c in source.columns]
        rows = list(source.rows)
        flt = query.get("filter")
        if flt:
            # One form only: `column > number`; any other filter is refused as the API would.
            pieces = flt.split()
            if len(pieces) != 3 or pieces[0] not in names or pieces[1] != ">":
                return self._error(400, "INVALID_PARAMETERS", {"parameter": "filter", "filter": flt, "position": 0, "reason": "stub understands only `column > number`"})
            rows = [r for r in rows if r[pieces[0]] is not None and r[pieces[0]] > float(pieces[2])]
        if "sort" in query:
            column = query["sort"].split(",")[0]
            if column not in names:
                return self._error(400, "INVALID_PARAMETERS", {"parameter": "sort", "value": column})
            rows.sort(key=lambda r: r[column], reverse=query.get("order", "asc").split(",")[0] == "desc")
        columns = source.columns
        if "columns" in query:
            wanted = query["columns"] if isinstance(query["columns"], list) else [query["columns"]]
            columns = [c for name in wanted for c in source.columns if c["name"] == name]
        chosen = rows[(page - 1) * limit: page * limit]
        more = page * limit < len(rows)
        self._send(200, {
            "data": [{c["name"]: r[c["name"]] for c in columns} for r in chosen],
            "pagination": {"page": page, "limit": limit, "total": len(rows), "totalPages": (len(rows) + limit - 1) // limit,
                           "nextCursor": f"page-{page + 1}" if more else None},
            "columns": [{"name": c["name"], "type": c["type"]} for c in columns],
        })

    def download(self, id, _query, body):
        source = self._source(id)
        if source is None:
            return
        expires = json.loads(body or b"{}").get("expiresIn", 3600)
        self._send(200, {
            "downloadUrl": f"http://127.0.0.1:{self.stub.port}/download/{id}?token=abc123",
            "fileName": source.fileName,
            "expiresAt": iso(datetime.now(timezone.utc) + timedelta(seconds=expires)),
            "fileSize": len(source.content),
        })

    def export(self, id, _query, body):
        if not self.stub.enable_export:
            return self._send(404, {"message": "Not Found"})
        source = self._source(id)
        if source is None:
            return
        params = json.loads(body or b"{}")
        self._send(200, {
            "downloadUrl": f"http://127.0.0.1:{self.stub.port}/exports/{id}?token=abc",
            "fileName": source.fileName.rsplit(".", 1)[0] + "." + params.get("format", "csv"),
            "expiresAt": iso(datetime.now(timezone.utc) + timedelta(seconds=params.get("expiresIn", 3600))),
        })

    def query(self, _id, _query, body):
        if not self.stub.enable_query:
            return self._send(404, {"message": "Not Found"})
        params = json.loads(body or b"{}")
        self._send(200, {
            "columns": [{"name": "n", "type": "number"}, {"name": "sql", "type": "string"}],
            "rows": [{"n": 1, "sql": params.get("sql")}],
            "rowCount": 1, "truncated": False, "elapsedMs": 3,
        })

    def upload(self, _id, _query, body):
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data") or "boundary=" not in ctype:
            return self._error(400, "INVALID_PARAMETERS", {"parameter": "file", "reason": "multipart/form-data expected"})
        boundary = ctype.split("boundary=", 1)[1].strip().strip('"').encode()
        parts = parse_multipart(body, boundary)
        if "file" not in parts:
            return self._error(400, "INVALID_PARAMETERS", {"parameter": "file", "reason": "missing"})
        file_part = parts["file"]
        options = json.loads(parts["options"]["content"]) if "options" in parts else None
        with self.stub.lock:
            self.stub.clock += timedelta(minutes=1)
            source = Source(
                datasourceId=str(uuid.uuid4()), fileName=file_part["filename"] or "upload",
                contentType=file_part["content_type"] or "application/octet-stream", content=file_part["content"],
                status="processing", uploadedAt=self.stub.clock, polls_left=self.stub.upload_polls, options=options)
            self.stub.sources[source.datasourceId] = source
            answer = source.summary()
        self._send(201, answer)


def parse_multipart(body: bytes, boundary: bytes) -> dict:
    """RFC 7578 parts by name: {name: {filename, content_type, content}}; strict about the
    delimiters so that a malformed body from the agent fails the tests."""
    parts = {}
    delimiter = b"--" + boundary
    assert body.startswith(delimiter + b"\r\n"), "multipart body must start with the boundary"
    assert body.rstrip(b"\r\n").endswith(delimiter + b"--"), "multipart body must end with the closing boundary"
    for chunk in body.split(b"\r\n" + delimiter)[:-1]:
        if chunk.startswith(delimiter):
            chunk = chunk[len(delimiter):]
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, _, content = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        fields = {}
        for piece in disposition.split(";")[1:]:
            key, _, value = piece.strip().partition("=")
            fields[key] = value.strip('"')
        parts[fields.get("name")] = {
            "filename": fields.get("filename"), "content_type": headers.get("content-type"), "content": content,
        }
    return parts
