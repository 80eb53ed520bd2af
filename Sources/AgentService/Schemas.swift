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
    static let status = enumeration(DataSourceStatus.self)
    static let columnType = enumeration(ColumnType.self)
    static let page = integer(min: 1, max: Pagination.maxPage, default: 1)

    /// A string schema whose allowed values are the enum's cases.
    static func enumeration<E: CaseIterable & RawRepresentable>(_ type: E.Type, default value: E? = nil) -> JSONValue where E.RawValue == String {
        var schema: JSONObject = ["type": "string", "enum": .array(E.allCases.map { .string($0.rawValue) })]
        if let value { schema["default"] = .string(value.rawValue) }
        return .object(schema)
    }

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
                        "rule": enumeration(CleaningRule.self),
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
        properties["sheets"] = [
            "type": "array", "items": string,
            "description": "Spreadsheets (XLSX, ODS): the workbook's sheet names in workbook order; absent for other formats.",
        ]
        properties["sheet"] = ["type": "string", "description": "Spreadsheets: the name of the sheet read into the table (options.sheet, else the first)."]
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

/// Builds the OpenRPC document from the method descriptors.
enum OpenRPCDocument {
    static func make(methods: [any DataSourceMethod.Type], version: String) -> JSONValue {
        let described = methods.sorted { $0.name < $1.name }.map { method -> JSONValue in
            let description = method.description
            return [
                "name": .string(method.name),
                "summary": .string(description.summary),
                "paramStructure": "by-name",
                "params": .array(description.params.map { param in
                    [
                        "name": .string(param.name), "description": .string(param.description),
                        "required": .bool(param.required), "schema": param.schema,
                    ]
                }),
                "result": ["name": .string("\(method.name.split(separator: "/").last ?? "")Result"), "schema": description.result],
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
