import DataSourceDomain
import JSONKit
import JSONRPC
import Synchronization

/// The MCP face: each tool is one `datasources/*` method, described by the same
/// `MethodDescription` that generates openrpc.json, and called through the same handler.
enum MCPTools {
    struct Tool {
        var name: String
        var method: String
        var title: String
        var guidance: String
    }

    static let filterGrammar = """
        Filter grammar: comparisons = == != <> > >= < <= ; CONTAINS, STARTSWITH, ENDSWITH (case-insensitive, text \
        columns); IN ('a', 'b'); IS NULL / IS NOT NULL; AND, OR, NOT, parentheses (NOT > AND > OR). Columns are bare \
        names or `back quoted`; strings in single or double quotes. Examples: price > 100; \
        category = 'Electronics' AND (price <= 50 OR in_stock = true); name CONTAINS 'widget'; discount IS NULL.
        """

    static let all: [Tool] = [
        Tool(name: "list_datasources", method: "datasources/list", title: "List data sources",
             guidance: "Use it to find a data source's id (datasourceId) before inspecting or querying it."),
        Tool(name: "get_datasource", method: "datasources/get", title: "Describe a data source",
             guidance: "Returns the column names and types (string, number, boolean, date, datetime) with sample values; call it before writing a filter."),
        Tool(name: "query_datasource", method: "datasources/data", title: "Query rows",
             guidance: "Returns rows of a completed data source. " + filterGrammar + " Page with page/limit or with pagination.nextCursor."),
        Tool(name: "delete_datasource", method: "datasources/delete", title: "Delete a data source",
             guidance: "Permanently removes the data source, its rows and its original file."),
        Tool(name: "create_download_url", method: "datasources/download", title: "Create a download link",
             guidance: "Returns a signed URL, valid for expiresIn seconds, that serves the original file."),
        Tool(name: "upload_datasource", method: "datasources/upload", title: "Upload a file",
             guidance: "Give an absolute path, or fileName with content. Processing (type inference, cleaning) runs in the background; the result has status processing. With a progress token, the call waits for processing to end and reports progress."),
    ]

    static func listResult(methods: MethodTable) -> JSONValue {
        .object(["tools": .array(all.compactMap { tool -> JSONValue? in
            guard let description = methods.descriptions[tool.method] else { return nil }
            var input = description.paramsObjectSchema.objectValue ?? JSONObject()
            if case .object(var properties)? = input["properties"] {
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
        table.register("tools/list", params: CursorParams.self, unknownParams: .ignore) { _, _ in MCPTools.listResult(methods: dataSourceMethods) }
        table.register("tools/call", params: ToolCallParams.self, unknownParams: .ignore) { [self] params, context in
            guard let tool = MCPTools.all.first(where: { $0.name == params.name }),
                let handler = dataSourceMethods.handler(for: tool.method)
            else {
                var data: JSONObject = ["name": .string(params.name), "allowed": .array(MCPTools.all.map { .string($0.name) })]
                if let close = Suggestions.closest(to: params.name, in: MCPTools.all.map(\.name)) { data["suggestion"] = .string(close) }
                throw JSONRPCError(code: JSONRPCError.invalidParamsCode, message: "Unknown tool", data: .object(data))
            }
            var arguments = params.arguments ?? .object([:])
            if case .object(var object) = arguments, tool.name == "upload_datasource", context.progress != nil {
                object["workDoneToken"] = nil
                arguments = .object(object)
            }
            do {
                let result = try await handler(arguments, context)
                if tool.name == "upload_datasource" {
                    context.session.notify(method: "notifications/resources/list_changed", params: .object([:]))
                    if context.progress != nil, let id = try? JSONParser.parse(result.bytes)["datasourceId"]?.stringValue {
                        await waitForProcessing(id, backend: backend)
                    }
                } else if tool.name == "delete_datasource" {
                    context.session.notify(method: "notifications/resources/list_changed", params: .object([:]))
                }
                return RawJSON(bytes: Self.toolResult(structured: result.bytes, isError: false))
            } catch let error as JSONRPCError {
                let code = error.data?["code"]?.stringValue ?? String(error.code)
                var text = "\(code): \(error.message)"
                if let details = error.data?["details"] { text += " " + details.jsonText }
                return RawJSON(bytes: Self.toolResult(text: text))
            }
        }
        table.register("resources/list", params: CursorParams.self, unknownParams: .ignore) { params, _ in
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
            guard let id = Self.resourceID(params.uri), let details = try? await backend.details(of: id, maxAge: nil) else {
                throw JSONRPCError(code: -32002, message: "Resource not found", data: ["uri": .string(params.uri)])
            }
            return JSONValue.object(["contents": [[
                "uri": .string(params.uri), "mimeType": "application/json", "text": .string(details.json.jsonText),
            ]]])
        }
        table.register("resources/subscribe", params: ResourceParams.self, unknownParams: .ignore) { [self] params, _ in
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
    /// cancelled); reads the catalog every 50 ms, which costs well under a millisecond.
    func waitForProcessing(_ idText: String, backend: any DataSourceBackend) async {
        guard let id = DataSourceID(idText) else { return }
        while !Task.isCancelled {
            guard let details = try? await backend.details(of: id, maxAge: nil), details.summary.status == .processing else { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

enum MCPLogLevel: String, Sendable, CaseIterable {
    case debug, info, notice, warning, error, critical, alert, emergency

    var rank: Int { Self.allCases.firstIndex(of: self)! }
}
