import DataSourceDomain
import JSONKit
import JSONRPC

/// JSON Schemas of the protocol's shapes. Method descriptions, the OpenRPC document and the
/// MCP tool schemas are all built from these.
enum Schema {
    static let string: JSONValue = ["type": "string"]
    static let integer: JSONValue = ["type": "integer"]
    static let timestamp: JSONValue = ["type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z$"]
    static let nullableTimestamp: JSONValue = ["type": ["string", "null"], "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z$"]
    static let uuid: JSONValue = ["type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"]
    static let status: JSONValue = ["type": "string", "enum": ["processing", "completed", "failed"]]
    static let columnType: JSONValue = ["type": "string", "enum": ["string", "number", "boolean", "date", "datetime"]]

    static func object(_ properties: JSONObject, required: [String], additional: Bool = true) -> JSONValue {
        [
            "type": "object", "properties": .object(properties),
            "required": .array(required.map { .string($0) }), "additionalProperties": .bool(additional),
        ]
    }

    static func integer(min: Int, max: Int? = nil, default value: Int? = nil) -> JSONValue {
        var schema: JSONObject = ["type": "integer", "minimum": .int(Int64(min))]
        if let max { schema["maximum"] = .int(Int64(max)) }
        if let value { schema["default"] = .int(Int64(value)) }
        return .object(schema)
    }

    static let cache: JSONValue = object(["stale": ["type": "boolean"], "fetchedAt": timestamp], required: ["stale", "fetchedAt"])

    static let summaryProperties: JSONObject = [
        "datasourceId": uuid,
        "fileName": string,
        "contentType": string,
        "fileSize": ["type": "integer", "minimum": 0],
        "status": status,
        "uploadedAt": timestamp,
        "processedAt": nullableTimestamp,
    ]
    static let summaryRequired = ["datasourceId", "fileName", "contentType", "fileSize", "status", "uploadedAt", "processedAt"]
    static let summary = object(summaryProperties, required: summaryRequired)

    static let pagination = object(
        [
            "page": integer(min: 1), "limit": integer(min: 1), "total": integer(min: 0), "totalPages": integer(min: 0),
        ], required: ["page", "limit", "total", "totalPages"])

    static let processingStats = object(
        ["cleanedRows": integer(min: 0), "errors": integer(min: 0), "warnings": integer(min: 0)],
        required: ["cleanedRows", "errors", "warnings"])

    static let issue = object(
        [
            "severity": ["type": "string", "enum": ["warning", "error"]], "line": integer(min: 0),
            "column": ["type": ["string", "null"]], "kind": string, "reason": string,
        ], required: ["severity", "line", "column", "kind", "reason"])

    static let details: JSONValue = {
        var properties = summaryProperties
        properties["columns"] = [
            "type": "array",
            "items": object([
                "name": string, "type": columnType, "sampleValues": ["type": "array"],
                "cleaning": [
                    "type": "array",
                    "description": "What cleaning did to the column's values: rule names in protocol/README.md (Cleaning report).",
                    "items": object([
                        "rule": [
                            "type": "string",
                            "enum": [
                                "whitespaceTrimmed", "nullTokenReplaced", "currencySymbolRemoved", "thousandsSeparatorRemoved",
                                "parenthesesNegative", "dateReformatted", "dateOrderAssumed", "booleanNormalized",
                            ],
                        ],
                        "count": integer(min: 1),
                        "example": object(["from": string, "to": [:]], required: ["from", "to"]),
                        "detail": ["type": "string", "description": "For dateOrderAssumed: DD/MM/YYYY or MM/DD/YYYY."],
                    ], required: ["rule", "count"]),
                ],
            ], required: ["name", "type", "sampleValues"]),
        ]
        properties["rowCount"] = integer(min: 0)
        properties["processingStats"] = processingStats
        properties["error"] = object(["message": string], required: ["message"])
        properties["issues"] = ["type": "array", "items": issue, "description": "The first recorded warnings and errors (at most 100)."]
        properties["cache"] = cache
        return object(properties, required: summaryRequired)
    }()

    static let listResult = object(
        ["dataSources": ["type": "array", "items": summary], "pagination": pagination, "cache": cache],
        required: ["dataSources", "pagination"])

    static func error(_ code: DataSourceError.Code) -> JSONValue {
        ["code": .int(Int64(code.rpcCode)), "message": .string(code.message), "data": ["code": .string(code.rawValue)]]
    }
}

enum MethodDocs {
    static let list = MethodDescription(
        summary: "List data sources, newest first, with pagination.",
        params: [
            .init("page", Schema.integer(min: 1, max: Pagination.maxPage, default: 1), "Page number, from 1."),
            .init("limit", Schema.integer(min: 1, max: ListQuery.maxLimit, default: ListQuery.defaultLimit), "Items per page."),
            .init("status", Schema.status, "Only data sources with this status."),
            .init("contentType", Schema.string, "Only data sources of this MIME type."),
            .init("maxAge", Schema.integer(min: 0), "Remote backend: oldest cached answer acceptable, in seconds."),
        ],
        result: Schema.listResult,
        errors: [Schema.error(.invalidParameters), Schema.error(.unauthorized)])

    static let get = MethodDescription(
        summary: "Details of one data source: columns with types and samples, row count, processing statistics.",
        params: [
            .init("datasourceId", Schema.uuid, required: true, "The data source's id."),
            .init("maxAge", Schema.integer(min: 0), "Remote backend: oldest cached answer acceptable, in seconds."),
        ],
        result: Schema.details,
        errors: [Schema.error(.datasourceNotFound), Schema.error(.invalidParameters), Schema.error(.unauthorized)])
}

extension MethodDocs {
    static let upload = MethodDescription(
        summary: "Upload a file (by absolute path, or inline) and process it in the background. Returns at once with status processing; the outcome is pushed as datasources/statusChanged.",
        params: [
            .init("path", ["type": "string"], "Absolute path of a file the agent reads. Give either path or fileName with content."),
            .init("fileName", ["type": "string"], "Name of the inline file (with content)."),
            .init("content", ["type": "string"], "Inline file content, at most 64 MiB decoded."),
            .init("encoding", ["type": "string", "enum": ["utf8", "base64"], "default": "utf8"], "How content is encoded."),
            .init("contentType", ["type": "string"], "MIME type; guessed from the name and bytes when absent."),
            .init("options", Schema.object([
                "delimiter": ["type": "string"], "quote": ["type": "string"], "header": ["type": "boolean"],
                "encoding": ["type": "string"], "nullValues": ["type": "array", "items": ["type": "string"]],
                "clean": ["type": "boolean", "default": true, "description": "false keeps every value as written (no trimming, no null tokens, no number or date cleaning); types are still inferred where the text is already canonical."],
            ], required: []), "Reader options for delimited text; detected when absent."),
            .init("workDoneToken", ["type": ["string", "integer"]], "Progress token: $/progress notifications follow processing."),
        ],
        result: Schema.summary,
        errors: [Schema.error(.invalidParameters), Schema.error(.accessDenied), Schema.error(.unauthorized)])
}

extension MethodDocs {
    static let data = MethodDescription(
        summary: "Rows of a completed data source, filtered, sorted (stable, nulls last) and paginated by page or by cursor.",
        params: [
            .init("datasourceId", Schema.uuid, required: true, "The data source's id."),
            .init("page", Schema.integer(min: 1, max: Pagination.maxPage, default: 1), "Page number, from 1 (ignored with cursor)."),
            .init("limit", Schema.integer(min: 1, max: DataQuery.maxLimit, default: DataQuery.defaultLimit), "Rows per page."),
            .init("sort", ["type": "string"], "Column to sort by; default: original order."),
            .init("order", ["type": "string", "enum": ["asc", "desc"], "default": "asc"], "Sort direction."),
            .init("filter", ["type": "string", "maxLength": .int(Int64(FilterParser.maxLength))],
                  "Filter expression, e.g. price > 100 AND (category = 'Toys' OR name CONTAINS 'widget')."),
            .init("cursor", ["type": "string"], "pagination.nextCursor of the previous page (keyset paging)."),
        ],
        result: Schema.object([
            "data": ["type": "array", "items": ["type": "object"]],
            "pagination": Schema.object([
                "page": Schema.integer(min: 1), "limit": Schema.integer(min: 1), "total": Schema.integer(min: 0),
                "totalPages": Schema.integer(min: 0), "nextCursor": ["type": ["string", "null"]],
            ], required: ["page", "limit", "total", "totalPages", "nextCursor"]),
            "columns": ["type": "array", "items": Schema.object(["name": Schema.string, "type": Schema.columnType], required: ["name", "type"])],
        ], required: ["data", "pagination", "columns"]),
        errors: [
            Schema.error(.datasourceNotFound), Schema.error(.processingInProgress), Schema.error(.processingFailed),
            Schema.error(.invalidParameters), Schema.error(.unauthorized),
        ])

    static let delete = MethodDescription(
        summary: "Delete a data source: its metadata, rows, indexes and original file. Stops processing if it is still running.",
        params: [.init("datasourceId", Schema.uuid, required: true, "The data source's id.")],
        result: Schema.object([
            "message": ["type": "string", "const": "Data source deleted successfully"], "datasourceId": Schema.uuid, "deletedAt": Schema.timestamp,
        ], required: ["message", "datasourceId", "deletedAt"]),
        errors: [Schema.error(.datasourceNotFound), Schema.error(.accessDenied), Schema.error(.unauthorized)])
}

extension MethodDocs {
    static let download = MethodDescription(
        summary: "A signed, expiring URL on the agent's loopback HTTP listener that serves the original file.",
        params: [
            .init("datasourceId", Schema.uuid, required: true, "The data source's id."),
            .init("expiresIn", Schema.integer(min: 1, max: 86400, default: 3600), "Seconds until the link expires."),
        ],
        result: Schema.object([
            "downloadUrl": ["type": "string", "format": "uri"], "fileName": Schema.string, "expiresAt": Schema.timestamp,
            "fileSize": Schema.integer(min: 0),
        ], required: ["downloadUrl", "fileName", "expiresAt", "fileSize"]),
        errors: [Schema.error(.datasourceNotFound), Schema.error(.invalidParameters), Schema.error(.unauthorized)])
}

/// Builds the OpenRPC document from a method table.
enum OpenRPCDocument {
    static func make(methods: MethodTable, version: String) -> JSONValue {
        let described = methods.descriptions.keys.sorted().compactMap { name -> JSONValue? in
            guard let description = methods.descriptions[name] else { return nil }
            return [
                "name": .string(name),
                "summary": .string(description.summary),
                "paramStructure": "by-name",
                "params": .array(description.params.map { param in
                    [
                        "name": .string(param.name), "description": .string(param.description),
                        "required": .bool(param.required), "schema": param.schema,
                    ]
                }),
                "result": ["name": .string("\(name.split(separator: "/").last ?? "")Result"), "schema": description.result],
                "errors": .array(description.errors),
            ]
        }
        return [
            "openrpc": "1.3.2",
            "info": [
                "title": "datasource-agent",
                "version": .string(version),
                "description": "JSON-RPC 2.0 methods of datasource-agent. Generated by `datasource-agent openrpc`; see protocol/README.md.",
            ],
            "methods": .array(described),
        ]
    }
}
