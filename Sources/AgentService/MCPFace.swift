import DataSourceDomain
import JSONKit
import JSONRPC
import Synchronization

/// The MCP face: each tool is one `datasources/*` method, described by the same descriptor
/// that generates openrpc.json, and called through the same handler.
enum MCPTools {
    static func listResult() -> JSONValue {
        .object(["tools": .array(DataSourceMethods.all.compactMap { method -> JSONValue? in
            guard let tool = method.tool else { return nil }
            let description = method.description
            var input = description.paramsObjectSchema.objectValue ?? JSONObject()
            if case .object(var properties)? = input["properties"] {
                // Progress comes through MCP's _meta.progressToken; the cache is a remote-backend detail.
                properties["workDoneToken"] = nil
                properties["maxAge"] = nil
                input["properties"] = .object(properties)
            }
            return [
                "name": .string(tool.name), "title": .string(tool.title),
                "description": .string(description.summary + " " + tool.guidance),
                "inputSchema": .object(input), "outputSchema": description.result,
            ]
        })])
    }
}

struct ToolCallParams: Decodable, Sendable {
    var name: String
    var arguments: JSONValue?
}

struct ResourceParams: Decodable, Sendable {
    var uri: String
}

struct CursorParams: Decodable, Sendable {
    var cursor: String?
}

struct LogLevelParams: Decodable, Sendable {
    var level: String
}

extension ServiceSession {
    static let resourceScheme = "datasource://"

    /// Registers tools, resources and logging on top of the data-source methods in `table`.
    func registerMCPMethods(in table: inout MethodTable) {
        let dataSourceMethods = table
        let backend = service.backend
        table.register("tools/list", params: CursorParams.self, unknownParams: .ignore) { _, _ in MCPTools.listResult() }
        table.register("tools/call", params: ToolCallParams.self, unknownParams: .ignore) { [self] params, context in
            guard let method = DataSourceMethods.tool(named: params.name), let tool = method.tool,
                let handler = dataSourceMethods.handler(for: method.name)
            else {
                var data: JSONObject = ["name": .string(params.name), "allowed": .array(DataSourceMethods.toolNames.map { .string($0) })]
                if let close = Suggestions.closest(to: params.name, in: DataSourceMethods.toolNames) { data["suggestion"] = .string(close) }
                throw JSONRPCError(code: JSONRPCError.invalidParamsCode, message: "Unknown tool", data: .object(data))
            }
            var arguments = params.arguments ?? .object([:])
            if case .object(var object) = arguments, tool.waitsForProcessing, context.progress != nil {
                object["workDoneToken"] = nil
                arguments = .object(object)
            }
            do {
                let result = try await handler(arguments, context)
                if method.access == .write { announceListChanged(session: context.session) }
                if tool.waitsForProcessing, context.progress != nil,
                    let id = try? JSONParser.parse(result.bytes)["datasourceId"]?.stringValue {
                    await waitForProcessing(id, backend: backend)
                }
                return RawJSON(bytes: Self.toolResult(structured: result.bytes, isError: false))
            } catch let error as JSONRPCError {
                let code = error.data?["code"]?.stringValue ?? String(error.code)
                var text = "\(code): \(error.message)"
                if let details = error.data?["details"] { text += " " + details.jsonText }
                return RawJSON(bytes: Self.toolResult(text: text))
            }
        }
        let service = self.service
        let credential = self.credential
        table.register("resources/list", params: CursorParams.self, unknownParams: .ignore) { params, _ in
            try await mappingErrors { try await service.authorize(.read, method: "resources/list", credential: credential) }
            let page = params.cursor.flatMap(Int.init) ?? 1
            guard (1...Pagination.maxPage).contains(page) else {
                throw JSONRPCError(code: JSONRPCError.invalidParamsCode, message: "Invalid cursor", data: ["parameter": "cursor", "value": .string(params.cursor ?? "")])
            }
            let listing = try await mappingErrors { try await backend.list(ListQuery(page: page, limit: ListQuery.maxLimit)) }
            var result: JSONObject = ["resources": .array(listing.dataSources.map { summary in
                [
                    "uri": .string(Self.resourceScheme + summary.datasourceId.rawValue), "name": .string(summary.fileName),
                    "description": .string("\(summary.contentType), \(summary.status.rawValue)"), "mimeType": "application/json",
                ]
            })]
            if page < listing.pagination.totalPages { result["nextCursor"] = .string(String(page + 1)) }
            return JSONValue.object(result)
        }
        table.register("resources/templates/list", params: CursorParams.self, unknownParams: .ignore) { _, _ in
            JSONValue.object(["resourceTemplates": [[
                "uriTemplate": "datasource://{datasourceId}", "name": "Data source metadata", "mimeType": "application/json",
            ]]])
        }
        table.register("resources/read", params: ResourceParams.self, unknownParams: .ignore) { params, _ in
            try await mappingErrors { try await service.authorize(.read, method: "resources/read", credential: credential) }
            guard let id = Self.resourceID(params.uri), let details = try? await backend.details(of: id, maxAge: nil) else {
                throw JSONRPCError(code: -32002, message: "Resource not found", data: ["uri": .string(params.uri)])
            }
            return JSONValue.object(["contents": [[
                "uri": .string(params.uri), "mimeType": "application/json", "text": .string(details.json.jsonText),
            ]]])
        }
        table.register("resources/subscribe", params: ResourceParams.self, unknownParams: .ignore) { [self] params, _ in
            try await mappingErrors { try await service.authorize(.read, method: "resources/subscribe", credential: credential) }
            guard Self.resourceID(params.uri) != nil else {
                throw JSONRPCError(code: -32002, message: "Resource not found", data: ["uri": .string(params.uri)])
            }
            subscribe(params.uri, true)
            return JSONValue.object([:])
        }
        table.register("resources/unsubscribe", params: ResourceParams.self, unknownParams: .ignore) { [self] params, _ in
            subscribe(params.uri, false)
            return JSONValue.object([:])
        }
        table.register("logging/setLevel", params: LogLevelParams.self, unknownParams: .ignore) { [self] params, _ in
            guard let level = MCPLogLevel(rawValue: params.level) else {
                throw JSONRPCError(code: JSONRPCError.invalidParamsCode, message: "Invalid params", data: ["parameter": "level", "value": .string(params.level)])
            }
            setLogLevel(level)
            return JSONValue.object([:])
        }
    }

    /// Adds the 2026-07-28 methods, and the result fields of that revision to every MCP
    /// method's result when the request came in the stateless envelope.
    func registerStatelessMethods(in table: inout MethodTable) {
        let info: JSONValue = ["name": .string(service.configuration.serverName), "version": .string(service.configuration.version)]
        table.registerRaw("server/discover") { _, _ in
            RawJSON(MCPStateless.discoverResult(serverInfo: info, supported: MCPStateless.supportedVersions))
        }
        table.registerRaw("subscriptions/listen") { [self] params, context in try await listen(params: params, context: context) }
        for name in MCPStateless.methods.subtracting(["server/discover", "subscriptions/listen"]) {
            guard let handler = table.handler(for: name) else { continue }
            table.registerRaw(name) { params, context in
                let result = try await handler(params, context)
                return MCPStateless.usesEnvelope(params) ? MCPStateless.decorate(result, method: name) : result
            }
        }
    }

    static func resourceID(_ uri: String) -> DataSourceID? {
        guard uri.hasPrefix(resourceScheme) else { return nil }
        return DataSourceID(String(uri.dropFirst(resourceScheme.count)))
    }

    static func toolResult(structured: [UInt8], isError: Bool) -> [UInt8] {
        var writer = JSONWriter(capacity: structured.count * 2 + 96)
        writer.raw("{\"content\":[{\"type\":\"text\",\"text\":")
        writer.string(String(decoding: structured, as: UTF8.self))
        writer.raw("}],\"structuredContent\":")
        writer.raw(structured)
        writer.raw(",\"isError\":")
        writer.bool(isError)
        writer.byte(0x7D)
        return writer.bytes
    }

    static func toolResult(text: String) -> [UInt8] {
        JSONValue.object(["content": [["type": "text", "text": .string(text)]], "isError": true]).serialized()
    }

    /// Returns once the data source has left `processing` (or is gone, or the call is
    /// cancelled), woken by the backend's status change rather than by polling.
    func waitForProcessing(_ idText: String, backend: any DataSourceBackend) async {
        guard let id = DataSourceID(idText) else { return }
        let (changes, continuation) = AsyncStream<Void>.makeStream()
        let token = backend.addStatusObserver { change in
            if change.details.summary.datasourceId == id, change.details.summary.status != .processing { continuation.yield() }
        }
        defer { backend.removeObserver(token) }
        // A delete announces no status change, so the status is also read every 2 s.
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                continuation.yield()
            }
        }
        defer {
            ticker.cancel()
            continuation.finish()
        }
        func stillProcessing() async -> Bool {
            (try? await backend.details(of: id, maxAge: nil))?.summary.status == .processing
        }
        // Registered first, then checked, so a change in between is not missed.
        guard await stillProcessing() else { return }
        await withTaskCancellationHandler {
            for await _ in changes where await !stillProcessing() { return }
        } onCancel: {
            continuation.finish()
        }
    }
}

enum MCPLogLevel: String, Sendable, CaseIterable {
    case debug, info, notice, warning, error, critical, alert, emergency

    var rank: Int { Self.allCases.firstIndex(of: self)! }
}

/// MCP progress: `notifications/progress {progressToken, progress, total: 100, message?}`
/// for a request whose params carry `_meta.progressToken`.
struct MCPProgress: RequestProgress {
    let token: JSONValue
    let session: Session

    init?(params: JSONValue?, session: Session) {
        guard let token = params?["_meta"]?["progressToken"], isProgressToken(token) else { return nil }
        self.token = token
        self.session = session
    }

    func begin(title: String, message: String?, percentage: Int?) { send(percentage ?? 0, message ?? title) }
    func report(message: String?, percentage: Int?) { send(percentage ?? 0, message) }
    func end(message: String?) { send(100, message) }

    private func send(_ progress: Int, _ message: String?) {
        var params: JSONObject = ["progressToken": token, "progress": .int(Int64(progress)), "total": 100]
        if let message { params["message"] = .string(message) }
        session.notify(method: "notifications/progress", params: .object(params))
    }
}
