import JSONKit

/// Readers of the model's JSON shapes: the inverse of the `.json` writers in Model.swift, for
/// a client of a Claro API (the remote backend) and for answers kept in its cache. A reader is
/// strict about what the writer always writes and lenient about what it may leave out; any
/// mismatch is a `ModelJSONError` naming the field.
public struct ModelJSONError: Error, Sendable, CustomStringConvertible {
    public var field: String
    public var reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "\(field): \(reason)" }
}

/// Field access with errors that name the field.
struct JSONFields {
    let object: JSONObject
    let path: String

    init(_ value: JSONValue, path: String) throws(ModelJSONError) {
        guard case .object(let object) = value else {
            throw ModelJSONError(field: path.isEmpty ? "(answer)" : path, reason: "expected an object, got \(value.typeName)")
        }
        self.object = object
        self.path = path
    }

    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func value(_ key: String) throws(ModelJSONError) -> JSONValue {
        guard let value = object[key] else { throw ModelJSONError(field: name(key), reason: "missing") }
        return value
    }

    /// nil when absent or null.
    func optional(_ key: String) -> JSONValue? {
        guard let value = object[key], !value.isNull else { return nil }
        return value
    }

    func string(_ key: String) throws(ModelJSONError) -> String {
        guard case .string(let text) = try value(key) else { throw ModelJSONError(field: name(key), reason: "expected a string") }
        return text
    }

    func optionalString(_ key: String) throws(ModelJSONError) -> String? {
        guard let value = optional(key) else { return nil }
        guard case .string(let text) = value else { throw ModelJSONError(field: name(key), reason: "expected a string") }
        return text
    }

    func int(_ key: String) throws(ModelJSONError) -> Int64 {
        try Self.integer(try value(key), field: name(key))
    }

    func optionalInt(_ key: String) throws(ModelJSONError) -> Int64? {
        guard let value = optional(key) else { return nil }
        return try Self.integer(value, field: name(key))
    }

    static func integer(_ value: JSONValue, field: String) throws(ModelJSONError) -> Int64 {
        switch value {
        case .int(let number): return number
        case .double(let number) where number.rounded() == number && abs(number) < 9e15: return Int64(number)
        default: throw ModelJSONError(field: field, reason: "expected an integer, got \(value.typeName)")
        }
    }

    func bool(_ key: String) throws(ModelJSONError) -> Bool {
        guard case .bool(let flag) = try value(key) else { throw ModelJSONError(field: name(key), reason: "expected a boolean") }
        return flag
    }

    func array(_ key: String) throws(ModelJSONError) -> [JSONValue] {
        guard case .array(let items) = try value(key) else { throw ModelJSONError(field: name(key), reason: "expected an array") }
        return items
    }

    func timestamp(_ key: String) throws(ModelJSONError) -> Timestamp {
        try Self.timestamp(try string(key), field: name(key))
    }

    func optionalTimestamp(_ key: String) throws(ModelJSONError) -> Timestamp? {
        guard let text = try optionalString(key) else { return nil }
        return try Self.timestamp(text, field: name(key))
    }

    /// The one ISO 8601 reader (`ISO8601DateTime`), kept to whole seconds as `Timestamp` is.
    static func timestamp(_ text: String, field: String) throws(ModelJSONError) -> Timestamp {
        guard let seconds = ISO8601DateTime.seconds(text) else {
            throw ModelJSONError(field: field, reason: "not an ISO 8601 date-time: \(text)")
        }
        return Timestamp(secondsSince1970: Int64(seconds.rounded(.down)))
    }

    func enumeration<E: RawRepresentable>(_ key: String, _ type: E.Type) throws(ModelJSONError) -> E where E.RawValue == String {
        let text = try string(key)
        guard let value = E(rawValue: text) else { throw ModelJSONError(field: name(key), reason: "unknown value \(text)") }
        return value
    }
}

extension DataSourceSummary {
    /// Reads the list-item shape `{datasourceId, fileName, contentType, fileSize, status,
    /// uploadedAt, processedAt}`.
    public init(json: JSONValue) throws(ModelJSONError) {
        try self.init(fields: try JSONFields(json, path: ""))
    }

    init(fields f: JSONFields) throws(ModelJSONError) {
        let idText = try f.string("datasourceId")
        guard let id = DataSourceID(idText) else { throw ModelJSONError(field: f.name("datasourceId"), reason: "not a UUID: \(idText)") }
        self.init(
            datasourceId: id, fileName: try f.string("fileName"), contentType: try f.string("contentType"),
            fileSize: try f.optionalInt("fileSize") ?? 0, status: try f.enumeration("status", DataSourceStatus.self),
            uploadedAt: try f.timestamp("uploadedAt"), processedAt: try f.optionalTimestamp("processedAt"))
    }
}

extension CleaningNote {
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "cleaning")
        var from: String?
        var to: JSONValue?
        if let example = f.optional("example") {
            let e = try JSONFields(example, path: "cleaning.example")
            from = try e.string("from")
            to = e.object["to"] ?? .null
        }
        self.init(
            rule: try f.enumeration("rule", CleaningRule.self), count: Int(try f.int("count")), from: from, to: to,
            detail: try f.optionalString("detail"))
    }
}

extension DataColumn {
    /// Reads `{name, type, sampleValues?, cleaning?}` (`data`'s columns have no samples).
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "columns")
        var cleaning: [CleaningNote] = []
        if f.optional("cleaning") != nil {
            for note in try f.array("cleaning") { cleaning.append(try CleaningNote(json: note)) }
        }
        self.init(
            name: try f.string("name"), type: try f.enumeration("type", ColumnType.self),
            sampleValues: f.optional("sampleValues") == nil ? [] : try f.array("sampleValues"), cleaning: cleaning)
    }
}

extension ProcessingStats {
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "processingStats")
        self.init(cleanedRows: Int(try f.int("cleanedRows")), errors: Int(try f.int("errors")), warnings: Int(try f.int("warnings")))
    }
}

extension ProcessingIssue {
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "issues")
        self.init(
            severity: try f.enumeration("severity", Severity.self), line: Int(try f.int("line")),
            column: try f.optionalString("column"), kind: try f.string("kind"), reason: try f.string("reason"))
    }
}

extension CacheInfo {
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "cache")
        self.init(stale: try f.bool("stale"), fetchedAt: try f.timestamp("fetchedAt"))
    }
}

extension DataSourceDetails {
    /// Reads the `get` shape: the list item, `columns`, `rowCount`, `processingStats`,
    /// `error.message`, `issues`, `sheets` and `sheet` (this project's servers; absent from the
    /// hosted API).
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "")
        var columns: [DataColumn]?
        if f.optional("columns") != nil {
            var read: [DataColumn] = []
            for column in try f.array("columns") { read.append(try DataColumn(json: column)) }
            columns = read
        }
        var errorMessage: String?
        if let error = f.optional("error") {
            errorMessage = try JSONFields(error, path: "error").optionalString("message") ?? "processing failed"
        }
        var issues: [ProcessingIssue] = []
        if f.optional("issues") != nil {
            for issue in try f.array("issues") { issues.append(try ProcessingIssue(json: issue)) }
        }
        var sheets: SpreadsheetSheets?
        if f.optional("sheets") != nil, let read = try f.optionalString("sheet") {
            var names: [String] = []
            for (index, name) in try f.array("sheets").enumerated() {
                guard case .string(let text) = name else { throw ModelJSONError(field: "sheets[\(index)]", reason: "not a string") }
                names.append(text)
            }
            sheets = SpreadsheetSheets(names: names, read: read)
        }
        self.init(
            summary: try DataSourceSummary(fields: f), columns: columns, rowCount: try f.optionalInt("rowCount").map { Int($0) },
            processingStats: try f.optional("processingStats").map { v throws(ModelJSONError) in try ProcessingStats(json: v) },
            errorMessage: errorMessage, issues: issues, sheets: sheets,
            cache: try f.optional("cache").map { v throws(ModelJSONError) in try CacheInfo(json: v) })
    }
}

extension Pagination {
    /// Reads `{page, limit, total, totalPages?, nextCursor?}`; `totalPages` follows from the rest.
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "pagination")
        let limit = Int(try f.int("limit"))
        guard limit > 0 else { throw ModelJSONError(field: "pagination.limit", reason: "must be positive") }
        self.init(page: Int(try f.int("page")), limit: limit, total: Int(try f.int("total")), nextCursor: try f.optionalString("nextCursor"))
    }
}

extension ListPage {
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "")
        var items: [DataSourceSummary] = []
        for (index, item) in try f.array("dataSources").enumerated() {
            items.append(try DataSourceSummary(fields: try JSONFields(item, path: "dataSources[\(index)]")))
        }
        self.init(
            dataSources: items, pagination: try Pagination(json: try f.value("pagination")),
            cache: try f.optional("cache").map { v throws(ModelJSONError) in try CacheInfo(json: v) })
    }
}

extension DataPage {
    /// Reads `{data: [{column: value}], pagination, columns: [{name, type}]}`; each row's
    /// values are put in `columns` order (a name a row lacks is null).
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "")
        var columns: [DataColumn] = []
        for column in try f.array("columns") { columns.append(try DataColumn(json: column)) }
        var rows: [[JSONValue]] = []
        for (index, row) in try f.array("data").enumerated() {
            let r = try JSONFields(row, path: "data[\(index)]")
            rows.append(columns.map { r.object[$0.name] ?? .null })
        }
        self.init(columns: columns, rows: rows, pagination: try Pagination(json: try f.value("pagination")))
    }
}

extension DeleteReceipt {
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "")
        let idText = try f.string("datasourceId")
        guard let id = DataSourceID(idText) else { throw ModelJSONError(field: "datasourceId", reason: "not a UUID: \(idText)") }
        self.init(datasourceId: id, deletedAt: try f.timestamp("deletedAt"))
    }
}

extension DownloadLink {
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "")
        self.init(
            downloadUrl: try f.string("downloadUrl"), fileName: try f.string("fileName"), expiresAt: try f.timestamp("expiresAt"),
            fileSize: try f.optionalInt("fileSize"))
    }
}

extension SQLQueryResult {
    /// Reads `{columns: [{name, type}], rows: [{column: value}], truncated, elapsedMs}`.
    public init(json: JSONValue) throws(ModelJSONError) {
        let f = try JSONFields(json, path: "")
        var columns: [DataColumn] = []
        for column in try f.array("columns") { columns.append(try DataColumn(json: column)) }
        var rows: [[JSONValue]] = []
        for (index, row) in try f.array("rows").enumerated() {
            let r = try JSONFields(row, path: "rows[\(index)]")
            rows.append(columns.map { r.object[$0.name] ?? .null })
        }
        self.init(
            columns: columns, rows: rows, truncated: f.optional("truncated") == nil ? false : try f.bool("truncated"),
            elapsedMs: Int(try f.optionalInt("elapsedMs") ?? 0))
    }
}

extension DataSourceError {
    /// Reads a Claro error body `{error, code, details}` whose code this agent knows; nil for
    /// anything else (the caller decides what an unknown answer means).
    public init?(claroBody json: JSONValue) {
        guard case .object(let object) = json, case .string(let codeText)? = object["code"],
            let code = Code(rawValue: codeText)
        else { return nil }
        self.init(code, details: object["details"]?.objectValue ?? [:])
    }
}
