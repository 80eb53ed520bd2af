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

extension SQLQuery {
    /// The sources the statement names, in order of first mention, each with every name it
    /// goes by: the ids it quotes (`quotedIDs`, as the engine's dialect finds them), then the
    /// aliases of `sources`. An alias that another source is called in the statement, or more
    /// than `maxSources` sources, is INVALID_PARAMETERS — the same on every store.
    public func namedSources(quotedIDs: [(name: String, id: DataSourceID)]) throws -> [(id: DataSourceID, names: [String])] {
        var namesByID: [DataSourceID: [String]] = [:]
        var order: [DataSourceID] = []
        func add(_ id: DataSourceID, name: String) {
            if namesByID[id] == nil { order.append(id) }
            if namesByID[id]?.contains(name) != true { namesByID[id, default: []].append(name) }
        }
        for (name, id) in quotedIDs { add(id, name: name) }
        for (alias, id) in sources {
            if let other = namesByID.first(where: { $0.key != id && $0.value.contains { $0.lowercased() == alias.lowercased() } }) {
                throw DataSourceError.invalidParameter(
                    "sources.\(alias)", value: .string(id.rawValue), reason: "is also the name of \(other.key.rawValue) in the statement")
            }
            add(id, name: alias)
        }
        guard order.count <= Self.maxSources else {
            throw Self.invalid("a query may name at most \(Self.maxSources) data sources; it names \(order.count)")
        }
        return order.map { ($0, namesByID[$0] ?? []) }
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
