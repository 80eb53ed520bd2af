import JSONKit

/// `datasources/query`: one read-only SQL statement over completed data sources (§4).
public struct SQLQuery: Sendable {
    public static let defaultLimit = 1000
    public static let maxLimit = 10_000
    public static let defaultTimeoutMs = 10_000
    public static let maxTimeoutMs = 60_000
    public static let maxSources = 8

    public enum Parameters: Sendable {
        case none
        case positional([JSONValue])
        case named(JSONObject)
    }

    public var sql: String
    public var parameters: Parameters
    /// Aliases: a table name the statement may use for a data source.
    public var sources: [(alias: String, id: DataSourceID)]
    public var limit: Int
    public var timeoutMs: Int

    public init(sql: String, parameters: Parameters = .none, sources: [(alias: String, id: DataSourceID)] = [],
                limit: Int = defaultLimit, timeoutMs: Int = defaultTimeoutMs) {
        self.sql = sql
        self.parameters = parameters
        self.sources = sources
        self.limit = limit
        self.timeoutMs = timeoutMs
    }

    /// `INVALID_PARAMETERS` on `sql`, with the offset into the statement when known.
    public static func invalid(_ reason: String, offset: Int? = nil) -> DataSourceError {
        var details: JSONObject = ["parameter": "sql", "reason": .string(reason)]
        if let offset { details["offset"] = .int(Int64(offset)) }
        return DataSourceError(.invalidParameters, details: details)
    }
}

public struct SQLQueryResult: Sendable {
    public var columns: [DataColumn]
    public var rows: [[JSONValue]]
    public var truncated: Bool
    public var elapsedMs: Int

    public init(columns: [DataColumn], rows: [[JSONValue]], truncated: Bool, elapsedMs: Int) {
        self.columns = columns
        self.rows = rows
        self.truncated = truncated
        self.elapsedMs = elapsedMs
    }

    /// `{columns: [{name, type}], rows: [{column: value}], rowCount, truncated, elapsedMs}`.
    public func jsonBytes() -> [UInt8] {
        var writer = JSONWriter(capacity: 256 + rows.count * columns.count * 12)
        writer.raw("{\"columns\":[")
        for (index, column) in columns.enumerated() {
            if index > 0 { writer.byte(0x2C) }
            writer.raw("{\"name\":")
            writer.string(column.name)
            writer.raw(",\"type\":")
            writer.string(column.type.rawValue)
            writer.byte(0x7D)
        }
        writer.raw("],\"rows\":[")
        let keys = columns.map { column -> [UInt8] in
            var key = JSONWriter()
            key.string(column.name)
            key.byte(0x3A)
            return key.bytes
        }
        for (rowIndex, row) in rows.enumerated() {
            if rowIndex > 0 { writer.byte(0x2C) }
            writer.byte(0x7B)
            for (index, value) in row.enumerated() {
                if index > 0 { writer.byte(0x2C) }
                writer.raw(keys[index])
                writer.value(value)
            }
            writer.byte(0x7D)
        }
        writer.raw("],\"rowCount\":")
        writer.int(Int64(rows.count))
        writer.raw(",\"truncated\":")
        writer.bool(truncated)
        writer.raw(",\"elapsedMs\":")
        writer.int(Int64(elapsedMs))
        writer.byte(0x7D)
        return writer.bytes
    }
}
