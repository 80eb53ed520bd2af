import JSONKit

public enum DataSourceStatus: String, Sendable, CaseIterable, Codable {
    case processing, completed, failed
}

public enum ColumnType: String, Sendable, CaseIterable, Codable {
    case string, number, boolean, date, datetime
}

public struct DataColumn: Sendable, Equatable, Codable {
    public var name: String
    public var type: ColumnType
    public var sampleValues: [JSONValue]
    /// What cleaning did to the column's values (`get`'s `cleaning`); empty when nothing.
    public var cleaning: [CleaningNote]

    public init(name: String, type: ColumnType, sampleValues: [JSONValue] = [], cleaning: [CleaningNote] = []) {
        self.name = name
        self.type = type
        self.sampleValues = sampleValues
        self.cleaning = cleaning
    }

    /// `{name, type, sampleValues, cleaning?}` as `get` reports it.
    public var json: JSONValue {
        var object: JSONObject = ["name": .string(name), "type": .string(type.rawValue), "sampleValues": .array(sampleValues)]
        if !cleaning.isEmpty { object["cleaning"] = .array(cleaning.map(\.json)) }
        return .object(object)
    }

    private enum CodingKeys: String, CodingKey { case name, type, sampleValues, cleaning }

    /// Stored columns written before the cleaning report have no `cleaning`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try container.decode(String.self, forKey: .name), type: try container.decode(ColumnType.self, forKey: .type),
            sampleValues: try container.decodeIfPresent([JSONValue].self, forKey: .sampleValues) ?? [],
            cleaning: try container.decodeIfPresent([CleaningNote].self, forKey: .cleaning) ?? [])
    }
}

/// The names of the cleaning rules a column's report may list (protocol/README.md).
public enum CleaningRule: String, Sendable, CaseIterable, Codable {
    case whitespaceTrimmed, nullTokenReplaced, currencySymbolRemoved, thousandsSeparatorRemoved, parenthesesNegative
    case dateReformatted, dateOrderAssumed, booleanNormalized
}

/// One cleaning rule applied to a column: its name (protocol/README.md), how many values it
/// changed, the first change, and for `dateOrderAssumed` the order (`DD/MM/YYYY`).
public struct CleaningNote: Sendable, Equatable, Codable {
    public var rule: CleaningRule
    public var count: Int
    public var from: String?
    public var to: JSONValue?
    public var detail: String?

    public init(rule: CleaningRule, count: Int, from: String? = nil, to: JSONValue? = nil, detail: String? = nil) {
        self.rule = rule
        self.count = count
        self.from = from
        self.to = to
        self.detail = detail
    }

    public var json: JSONValue {
        var object: JSONObject = ["rule": .string(rule.rawValue), "count": .int(Int64(count))]
        if let from { object["example"] = ["from": .string(from), "to": to ?? .null] }
        if let detail { object["detail"] = .string(detail) }
        return .object(object)
    }
}

public struct ProcessingStats: Sendable, Equatable, Codable {
    public var cleanedRows: Int
    public var errors: Int
    public var warnings: Int

    public init(cleanedRows: Int = 0, errors: Int = 0, warnings: Int = 0) {
        self.cleanedRows = cleanedRows
        self.errors = errors
        self.warnings = warnings
    }

    public var json: JSONValue {
        ["cleanedRows": .int(Int64(cleanedRows)), "errors": .int(Int64(errors)), "warnings": .int(Int64(warnings))]
    }
}

/// Where a cached answer came from, for backends that cache (the remote one).
public struct CacheInfo: Sendable, Equatable {
    public var stale: Bool
    public var fetchedAt: Timestamp

    public init(stale: Bool, fetchedAt: Timestamp) {
        self.stale = stale
        self.fetchedAt = fetchedAt
    }

    public var json: JSONValue { ["stale": .bool(stale), "fetchedAt": .string(fetchedAt.iso8601)] }
}

/// The list-item shape of the Claro API.
public struct DataSourceSummary: Sendable, Equatable {
    public var datasourceId: DataSourceID
    public var fileName: String
    public var contentType: String
    public var fileSize: Int64
    public var status: DataSourceStatus
    public var uploadedAt: Timestamp
    public var processedAt: Timestamp?

    public init(
        datasourceId: DataSourceID, fileName: String, contentType: String, fileSize: Int64,
        status: DataSourceStatus, uploadedAt: Timestamp, processedAt: Timestamp?
    ) {
        self.datasourceId = datasourceId
        self.fileName = fileName
        self.contentType = contentType
        self.fileSize = fileSize
        self.status = status
        self.uploadedAt = uploadedAt
        self.processedAt = processedAt
    }

    public var jsonObject: JSONObject {
        [
            "datasourceId": .string(datasourceId.rawValue),
            "fileName": .string(fileName),
            "contentType": .string(contentType),
            "fileSize": .int(fileSize),
            "status": .string(status.rawValue),
            "uploadedAt": .string(uploadedAt.iso8601),
            "processedAt": processedAt.map { .string($0.iso8601) } ?? .null,
        ]
    }
}

/// The `datasources/get` shape: the summary plus what processing learned.
public struct DataSourceDetails: Sendable, Equatable {
    public var summary: DataSourceSummary
    public var columns: [DataColumn]?
    public var rowCount: Int?
    public var processingStats: ProcessingStats?
    public var errorMessage: String?
    /// The first recorded processing issues, so a client can see what was cleaned or dropped.
    public var issues: [ProcessingIssue]
    /// A spreadsheet's sheets and the one that was read; nil for other formats.
    public var sheets: SpreadsheetSheets?
    public var cache: CacheInfo?

    public init(
        summary: DataSourceSummary, columns: [DataColumn]? = nil, rowCount: Int? = nil,
        processingStats: ProcessingStats? = nil, errorMessage: String? = nil, issues: [ProcessingIssue] = [],
        sheets: SpreadsheetSheets? = nil, cache: CacheInfo? = nil
    ) {
        self.summary = summary
        self.columns = columns
        self.rowCount = rowCount
        self.processingStats = processingStats
        self.errorMessage = errorMessage
        self.issues = issues
        self.sheets = sheets
        self.cache = cache
    }

    public var json: JSONValue {
        var object = summary.jsonObject
        if let columns {
            object["columns"] = .array(columns.map(\.json))
        }
        if let rowCount { object["rowCount"] = .int(Int64(rowCount)) }
        if let processingStats { object["processingStats"] = processingStats.json }
        if let errorMessage { object["error"] = ["message": .string(errorMessage)] }
        if summary.status != .processing { object["issues"] = .array(issues.map(\.json)) }
        if let sheets {
            object["sheets"] = .array(sheets.names.map { .string($0) })
            object["sheet"] = .string(sheets.read)
        }
        if let cache { object["cache"] = cache.json }
        return .object(object)
    }
}

/// A workbook's sheet names in workbook order (`get`'s `sheets`), and the name of the sheet
/// that was read into the table (`get`'s `sheet`).
public struct SpreadsheetSheets: Sendable, Equatable, Codable {
    public var names: [String]
    public var read: String

    public init(names: [String], read: String) {
        self.names = names
        self.read = read
    }
}

/// One warning or error found while processing: where, what kind, and why.
public struct ProcessingIssue: Sendable, Equatable, Codable {
    public enum Severity: String, Sendable, Codable { case warning, error }
    public var severity: Severity
    public var line: Int
    public var column: String?
    public var kind: String
    public var reason: String

    public init(severity: Severity, line: Int, column: String?, kind: String, reason: String) {
        self.severity = severity
        self.line = line
        self.column = column
        self.kind = kind
        self.reason = reason
    }

    public var json: JSONValue {
        [
            "severity": .string(severity.rawValue), "line": .int(Int64(line)),
            "column": column.map { .string($0) } ?? .null, "kind": .string(kind), "reason": .string(reason),
        ]
    }
}

public struct Pagination: Sendable, Equatable {
    /// The largest page a client may ask for: with any limit, `(page - 1) * limit` stays far
    /// inside Int64, and no store holds that many pages.
    public static let maxPage = Int(Int32.max)

    /// Rows skipped before `page`; never traps, since both factors are bounded.
    public static func offset(page: Int, limit: Int) -> Int {
        let (offset, overflow) = (max(page, 1) - 1).multipliedReportingOverflow(by: limit)
        return overflow ? Int.max : offset
    }

    public var page: Int
    public var limit: Int
    public var total: Int
    public var nextCursor: String?

    public init(page: Int, limit: Int, total: Int, nextCursor: String? = nil) {
        self.page = page
        self.limit = limit
        self.total = total
        self.nextCursor = nextCursor
    }

    public var totalPages: Int { total == 0 ? 0 : (total + limit - 1) / limit }

    public func json(includeCursor: Bool) -> JSONValue {
        var object: JSONObject = [
            "page": .int(Int64(page)), "limit": .int(Int64(limit)),
            "total": .int(Int64(total)), "totalPages": .int(Int64(totalPages)),
        ]
        if includeCursor { object["nextCursor"] = nextCursor.map { .string($0) } ?? .null }
        return .object(object)
    }
}

public struct ListQuery: Sendable, Equatable {
    public static let defaultLimit = 20
    public static let maxLimit = 100

    public var page: Int
    public var limit: Int
    public var status: DataSourceStatus?
    public var contentType: String?
    /// For caching backends: the oldest cached answer acceptable, in seconds.
    public var maxAge: Int?

    public init(page: Int = 1, limit: Int = defaultLimit, status: DataSourceStatus? = nil, contentType: String? = nil, maxAge: Int? = nil) {
        self.page = page
        self.limit = limit
        self.status = status
        self.contentType = contentType
        self.maxAge = maxAge
    }
}

public struct ListPage: Sendable, Equatable {
    public var dataSources: [DataSourceSummary]
    public var pagination: Pagination
    public var cache: CacheInfo?

    public init(dataSources: [DataSourceSummary], pagination: Pagination, cache: CacheInfo? = nil) {
        self.dataSources = dataSources
        self.pagination = pagination
        self.cache = cache
    }

    public var json: JSONValue {
        var object: JSONObject = [
            "dataSources": .array(dataSources.map { .object($0.jsonObject) }),
            "pagination": pagination.json(includeCursor: false),
        ]
        if let cache { object["cache"] = cache.json }
        return .object(object)
    }
}

public enum SortDirection: String, Sendable, Codable, CaseIterable { case asc, desc }

/// The forms `datasources/export` writes cleaned rows in.
public enum ExportFormat: String, Sendable, Codable, CaseIterable {
    /// RFC 4180: a header row, CRLF line ends, fields quoted when they need it.
    case csv
    /// One JSON object per line, as `data` returns rows.
    case jsonl

    public var contentType: String {
        switch self {
        case .csv: "text/csv; charset=utf-8"
        case .jsonl: "application/x-ndjson"
        }
    }
}

public struct DataQuery: Sendable {
    public static let defaultLimit = 50
    public static let maxLimit = 1000

    /// Most columns one sort may name.
    public static let maxSortColumns = 8

    public var datasourceId: DataSourceID
    public var page: Int
    public var limit: Int
    public var sort: String?
    public var order: SortDirection
    /// Several sort columns (`sort: "category,price"`), each with its direction; when set it
    /// wins over `sort` and `order`.
    public var sortKeys: [SortKey]

    public struct SortKey: Sendable, Equatable {
        public var column: String
        public var direction: SortDirection
        public init(column: String, direction: SortDirection) {
            self.column = column
            self.direction = direction
        }
    }

    /// The sort as keys: `sortKeys`, else `sort` with `order`, else none (original order).
    public var keys: [SortKey] {
        if !sortKeys.isEmpty { return sortKeys }
        return sort.map { [SortKey(column: $0, direction: order)] } ?? []
    }
    public var filter: String?
    public var cursor: String?
    /// The columns to return, in this order; nil for all.
    public var columns: [String]?

    public init(
        datasourceId: DataSourceID, page: Int = 1, limit: Int = defaultLimit, sort: String? = nil,
        order: SortDirection = .asc, filter: String? = nil, cursor: String? = nil, columns: [String]? = nil,
        sortKeys: [SortKey] = []
    ) {
        self.columns = columns
        self.sortKeys = sortKeys
        self.datasourceId = datasourceId
        self.page = page
        self.limit = limit
        self.sort = sort
        self.order = order
        self.filter = filter
        self.cursor = cursor
    }
}

extension DataQuery {
    /// The sort keys and the columns to return, as positions in a source's `columns`, checked
    /// the same way on every store: a name the source lacks is INVALID_PARAMETERS naming the
    /// allowed ones; `columns` must name at least one column, and none twice.
    public func positions(in columns: [DataColumn]) throws -> (sortKeys: [(index: Int, direction: SortDirection)], returned: [Int]) {
        let names = columns.map(\.name)
        func position(_ name: String, of parameter: String) throws -> Int {
            guard let index = names.firstIndex(of: name) else {
                throw DataSourceError.invalidParameter(
                    parameter, value: .string(name), reason: "no such column", extra: ["allowed": .array(names.map { .string($0) })])
            }
            return index
        }
        let sortKeys = try keys.map { key in (index: try position(key.column, of: "sort"), direction: key.direction) }
        guard let wanted = self.columns else { return (sortKeys, Array(columns.indices)) }
        guard !wanted.isEmpty else {
            throw DataSourceError.invalidParameter("columns", value: .array([]), reason: "must name at least one column")
        }
        let returned = try wanted.map { try position($0, of: "columns") }
        guard Set(returned).count == returned.count else {
            throw DataSourceError.invalidParameter("columns", value: nil, reason: "names a column twice")
        }
        return (sortKeys, returned)
    }
}

public struct DataPage: Sendable {
    public var columns: [DataColumn]
    /// Each row's values in `columns` order.
    public var rows: [[JSONValue]]
    public var pagination: Pagination

    public init(columns: [DataColumn], rows: [[JSONValue]], pagination: Pagination) {
        self.columns = columns
        self.rows = rows
        self.pagination = pagination
    }

    /// Serialised directly: pages are the hot path, and rows keep their column order.
    public func jsonBytes() -> [UInt8] {
        var writer = JSONWriter(capacity: 64 + rows.count * columns.count * 16)
        writer.raw("{\"data\":[")
        let names = columns.map { name -> [UInt8] in
            var w = JSONWriter()
            w.string(name.name)
            w.byte(0x3A)
            return w.bytes
        }
        for (rowIndex, row) in rows.enumerated() {
            if rowIndex > 0 { writer.byte(0x2C) }
            writer.byte(0x7B)
            for (index, value) in row.enumerated() where index < names.count {
                if index > 0 { writer.byte(0x2C) }
                writer.raw(names[index])
                writer.value(value)
            }
            writer.byte(0x7D)
        }
        writer.raw("],\"pagination\":")
        writer.value(pagination.json(includeCursor: true))
        writer.raw(",\"columns\":")
        writer.value(.array(columns.map { ["name": .string($0.name), "type": .string($0.type.rawValue)] }))
        writer.byte(0x7D)
        return writer.bytes
    }
}

public struct DeleteReceipt: Sendable, Equatable {
    public var datasourceId: DataSourceID
    public var deletedAt: Timestamp

    public init(datasourceId: DataSourceID, deletedAt: Timestamp) {
        self.datasourceId = datasourceId
        self.deletedAt = deletedAt
    }

    public var json: JSONValue {
        [
            "message": "Data source deleted successfully",
            "datasourceId": .string(datasourceId.rawValue),
            "deletedAt": .string(deletedAt.iso8601),
        ]
    }
}

public struct DownloadLink: Sendable, Equatable {
    public var downloadUrl: String
    public var fileName: String
    public var expiresAt: Timestamp
    /// Unknown for an export, whose rows are written as they are read.
    public var fileSize: Int64?

    public init(downloadUrl: String, fileName: String, expiresAt: Timestamp, fileSize: Int64?) {
        self.downloadUrl = downloadUrl
        self.fileName = fileName
        self.expiresAt = expiresAt
        self.fileSize = fileSize
    }

    public var json: JSONValue {
        var object: JSONObject = [
            "downloadUrl": .string(downloadUrl), "fileName": .string(fileName), "expiresAt": .string(expiresAt.iso8601),
        ]
        if let fileSize { object["fileSize"] = .int(fileSize) }
        return .object(object)
    }
}

/// A status transition, as pushed in `datasources/statusChanged`.
public struct StatusChange: Sendable, Equatable {
    public var details: DataSourceDetails
    public var previousStatus: DataSourceStatus

    public init(details: DataSourceDetails, previousStatus: DataSourceStatus) {
        self.details = details
        self.previousStatus = previousStatus
    }

    public var json: JSONValue {
        let summary = details.summary
        var object: JSONObject = [
            "datasourceId": .string(summary.datasourceId.rawValue),
            "fileName": .string(summary.fileName),
            "previousStatus": .string(previousStatus.rawValue),
            "status": .string(summary.status.rawValue),
            "processedAt": summary.processedAt.map { .string($0.iso8601) } ?? .null,
        ]
        if let rowCount = details.rowCount { object["rowCount"] = .int(Int64(rowCount)) }
        if let stats = details.processingStats { object["processingStats"] = stats.json }
        if let message = details.errorMessage { object["error"] = ["message": .string(message)] }
        return .object(object)
    }
}
