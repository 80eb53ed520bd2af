import AgentService
import DataSourceDomain
import Foundation
import Hummingbird
import JSONKit
import JSONRPC
import Logging
import Synchronization

/// `POST /mcp`: MCP over HTTP with no server-side session. Each request is served by a
/// session of its own that lives as long as the request: the stateless 2026-07-28 transport
/// (headers checked against the body), and 2025-11-25 Streamable HTTP for hosts that make a
/// handshake (answered without `Mcp-Session-Id`, so any process on the store can serve any
/// request). Bearer keys and scopes as on the REST face.
extension RESTServer {
    static let mcpPath = "/mcp"

    static func header(_ request: Request, _ name: String) -> String? { request.headers[.init(name)!] }

    func addMCPRoute(to router: Router<RESTRequestContext>) {
        router.post(RouterPath(Self.mcpPath)) { [self] request, _ in await mcp(request) }
        // Without sessions there is no server-initiated stream to GET and no session to
        // DELETE: those are 405 with `Allow: POST` (RESTServer.extraRoutes).
    }

    static func rpcErrorResponse(_ status: HTTPResponse.Status, id: JSONValue = .null, error: JSONValue) -> Response {
        let body = JSONValue.object(["jsonrpc": "2.0", "id": id, "error": error]).serialized()
        return Response(
            status: status, headers: [.contentType: "application/json", .contentLength: String(body.count)],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func rpcError(_ code: Int, _ message: String, data: JSONValue? = nil) -> JSONValue {
        var error: JSONObject = ["code": .int(Int64(code)), "message": .string(message)]
        if let data { error["data"] = data }
        return .object(error)
    }

    /// `=?base64?…?=` is how a client sends a name that is not plain printable ASCII.
    static func decodeHeaderValue(_ value: String) -> String {
        guard value.hasPrefix("=?base64?"), value.hasSuffix("?="), value.count >= 11 else { return value }
        let encoded = String(value.dropFirst(9).dropLast(2))
        guard let data = Data(base64Encoded: encoded), let text = String(data: data, encoding: .utf8) else { return value }
        return text
    }

    func mcp(_ request: Request) async -> Response {
        let key = Self.bearerKey(request)
        do {
            try await service.authorizeMCP(apiKey: key)
        } catch let error as DataSourceError {
            var response = Self.rpcErrorResponse(
                HTTPResponse.Status(code: error.code.httpStatus), error: MCPStateless.errorObject(error))
            if error.code.httpStatus == 401 { response.headers[.wwwAuthenticate] = "Bearer" }
            return response
        } catch {
            return Self.rpcErrorResponse(.internalServerError, error: Self.rpcError(-32603, "Internal error"))
        }
        let bytes: [UInt8]
        do {
            var request = request
            bytes = Array(try await request.collectBody(upTo: Self.maxJSONBodyBytes).readableBytesView)
        } catch {
            return Self.rpcErrorResponse(.contentTooLarge, error: Self.rpcError(-32600, "Invalid Request", data: ["reason": "body too large"]))
        }
        guard let message = try? JSONParser.parse(bytes) else {
            return Self.rpcErrorResponse(.badRequest, error: Self.rpcError(-32700, "Parse error"))
        }
        guard case .object(let object) = message else {
            return Self.rpcErrorResponse(.badRequest, error: Self.rpcError(
                -32600, "Invalid Request", data: ["reason": "one JSON-RPC message per request; batches are not accepted"]))
        }
        let id = object["id"]
        guard case .string(let method)? = object["method"] else {
            // A response to a request this server never sends: nothing to do.
            if object["result"] != nil || object["error"] != nil { return Response(status: .accepted) }
            return Self.rpcErrorResponse(.badRequest, id: id ?? .null, error: Self.rpcError(-32600, "Invalid Request", data: ["reason": "method must be a string"]))
        }
        let params = object["params"]
        let headerVersion = Self.header(request, "MCP-Protocol-Version")
        let bodyVersion = params?["_meta"]?[MCPStateless.versionKey]
        let stateless = bodyVersion != nil || headerVersion == MCPStateless.version
        if stateless {
            var mismatched: [String] = []
            if let headerVersion, case .string(let version)? = bodyVersion, headerVersion != version {
                mismatched.append("MCP-Protocol-Version")
            }
            if headerVersion == nil { mismatched.append("MCP-Protocol-Version") }
            if Self.header(request, "Mcp-Method") != method { mismatched.append("Mcp-Method") }
            if let nameKey = MCPStateless.nameBearingParams[method],
                Self.header(request, "Mcp-Name").map(Self.decodeHeaderValue) != params?[nameKey]?.stringValue {
                mismatched.append("Mcp-Name")
            }
            if !mismatched.isEmpty {
                return Self.rpcErrorResponse(.badRequest, id: id ?? .null, error: Self.rpcError(
                    MCPStateless.headerMismatchCode, "Header mismatch",
                    data: ["headers": .array(mismatched.map { .string($0) })]))
            }
        }
        // Notifications: the stateless transport has none from the client (closing the
        // response is cancellation); `notifications/initialized` and a cancellation naming a
        // request of another connection need nothing from a server without sessions.
        guard let id else { return Response(status: .accepted) }

        let (frames, sink) = AsyncStream<MCPFrame>.makeStream()
        let output = OutputChannel(sink: { bytes in sink.yield(.message(bytes)) })
        let session = Session(output: output, logger: logger) { _ in }
        session.attach(service.makeMCPHTTPDelegate(
            for: session, apiKey: key, mode: stateless ? .stateless : .handshake, method: method))
        let registration = mcpSessions.add(session)
        guard let registration else {
            return Self.rpcErrorResponse(.serviceUnavailable, id: id, error: Self.rpcError(-32600, "Invalid Request", data: ["reason": "server is shutting down"]))
        }
        session.receive(.message(bytes), framing: .newlineDelimited)

        let accept = request.headers[.accept] ?? ""
        // A listen stream has no single answer to wait for: it is always an event stream.
        let streams = method == "subscriptions/listen" || (params?["_meta"]?["progressToken"] != nil && accept.contains("text/event-stream"))
        let mcpSessions = self.mcpSessions
        guard streams else {
            defer {
                mcpSessions.remove(registration)
                session.close()
                sink.finish()
            }
            for await frame in frames {
                guard case .message(let bytes) = frame, let response = Self.response(in: bytes) else { continue }
                let code = response["error"]?["code"]
                let status: HTTPResponse.Status =
                    [.int(Int64(MCPStateless.unsupportedVersionCode)), .int(Int64(MCPStateless.headerMismatchCode)),
                     .int(-32700), .int(-32600)].contains(code) ? .badRequest : .ok
                return Response(
                    status: status, headers: [.contentType: "application/json", .contentLength: String(bytes.count)],
                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            return Self.rpcErrorResponse(.internalServerError, id: id, error: Self.rpcError(-32603, "Internal error"))
        }
        // Progress and listen streams: each message as a server-sent event until the response;
        // a closed connection cancels the request (the revision's cancellation over HTTP).
        let heartbeat = Task { [interval = configuration.eventsHeartbeat] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                sink.yield(.heartbeat)
            }
        }
        return Response(status: .ok, headers: Self.eventStreamHeaders, body: ResponseBody { writer in
            defer {
                heartbeat.cancel()
                session.cancelAll()
                mcpSessions.remove(registration)
                session.close()
                sink.finish()
            }
            for await frame in frames {
                switch frame {
                case .heartbeat:
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                case .message(let bytes):
                    var event = ByteBuffer(string: "event: message\ndata: ")
                    event.writeBytes(Self.trimmed(bytes))
                    event.writeString("\n\n")
                    try await writer.write(event)
                    if Self.response(in: bytes) != nil {
                        try await writer.finish(nil)
                        return
                    }
                }
            }
            try await writer.finish(nil)
        })
    }

    enum MCPFrame: Sendable {
        case message([UInt8])
        case heartbeat
    }

    static func trimmed(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
        var end = bytes.endIndex
        while end > bytes.startIndex, bytes[end - 1] == 0x0A || bytes[end - 1] == 0x0D { end -= 1 }
        return bytes[bytes.startIndex..<end]
    }

    /// The message when it is a response (an id and no method), else nil.
    static func response(in bytes: [UInt8]) -> JSONValue? {
        guard let message = try? JSONParser.parse(Array(trimmed(bytes))), message["method"] == nil, message["id"] != nil else { return nil }
        return message
    }
}

/// The MCP requests in progress, so that a graceful shutdown ends their listen streams
/// (with their closing result) instead of waiting for them.
final class MCPSessions: Sendable {
    private let state = Mutex<(next: Int, open: [Int: Session], closed: Bool)>((0, [:], false))

    func add(_ session: Session) -> Int? {
        state.withLock { state in
            guard !state.closed else { return nil }
            state.next += 1
            state.open[state.next] = session
            return state.next
        }
    }

    func remove(_ id: Int) {
        _ = state.withLock { $0.open.removeValue(forKey: id) }
    }

    func closeAll() {
        let sessions = state.withLock { state in
            state.closed = true
            return Array(state.open.values)
        }
        sessions.forEach { $0.stopAdmitting() }
    }
}
