import DataSourceDomain
import Foundation
import JSONKit
import JSONRPC

struct ListMethod: DataSourceMethod {
    struct Params: Decodable, Sendable {
        var page: Int?
        var limit: Int?
        var status: String?
        var contentType: String?
        var maxAge: Int?
    }

    static let name = "datasources/list"
    static let access = MethodAccess.read
    static let tool: ToolDescription? = ToolDescription(
        name: "list_datasources", title: "List data sources",
        guidance: "Use it to find a data source's id (datasourceId) before inspecting or querying it.")
    static let summary = "List data sources, newest first, with pagination."
    static let params: [MethodDescription.Param] = [
        .init("page", Schema.page, "Page number, from 1."),
        .init("limit", Schema.integer(min: 1, max: ListQuery.maxLimit, default: ListQuery.defaultLimit), "Items per page."),
        .init("status", Schema.status, "Only data sources with this status."),
        .init("contentType", Schema.string, "Only data sources of this MIME type."),
        .init("maxAge", Schema.integer(min: 0), "Remote backend: oldest cached answer acceptable, in seconds."),
    ]
    static let result = Schema.listResult
    static let errors: [DataSourceError.Code] = [.invalidParameters, .unauthorized]
    static let http: HTTPRoute? = .init(.get, "/datasources")

    static func call(_ params: Params, backend: any DataSourceBackend, context: MethodCallContext) async throws -> RawJSON {
        let query = ListQuery(
            page: try Validate.page(params.page),
            limit: try Validate.limit(params.limit, default: ListQuery.defaultLimit, max: ListQuery.maxLimit),
            status: try Validate.status(params.status), contentType: params.contentType, maxAge: try Validate.maxAge(params.maxAge))
        return RawJSON(try await backend.list(query).json)
    }
}

struct GetMethod: DataSourceMethod {
    struct Params: Decodable, Sendable {
        var datasourceId: String
        var maxAge: Int?
    }

    static let name = "datasources/get"
    static let access = MethodAccess.read
    static let tool: ToolDescription? = ToolDescription(
        name: "get_datasource", title: "Describe a data source",
        guidance: "Returns the column names and types (string, number, boolean, date, datetime) with sample values; call it before writing a filter.")
    static let summary = "Details of one data source: columns with types and samples, row count, processing statistics."
    static let params: [MethodDescription.Param] = [
        .init("datasourceId", Schema.uuid, required: true, "The data source's id."),
        .init("maxAge", Schema.integer(min: 0), "Remote backend: oldest cached answer acceptable, in seconds."),
    ]
    static let result = Schema.details
    static let errors: [DataSourceError.Code] = [.datasourceNotFound, .invalidParameters, .unauthorized]
    static let http: HTTPRoute? = .init(.get, "/datasources/{datasourceId}")

    static func call(_ params: Params, backend: any DataSourceBackend, context: MethodCallContext) async throws -> RawJSON {
        let id = try Validate.datasourceId(params.datasourceId)
        return RawJSON(try await backend.details(of: id, maxAge: try Validate.maxAge(params.maxAge)).json)
    }
}

struct DataMethod: DataSourceMethod {
    struct Params: Decodable, Sendable {
        var datasourceId: String
        var page: Int?
        var limit: Int?
        var sort: String?
        var order: String?
        var filter: String?
        var cursor: String?
        var columns: [String]?
    }

    static let name = "datasources/data"
    static let access = MethodAccess.read
    static let tool: ToolDescription? = ToolDescription(
        name: "query_datasource", title: "Query rows",
        guidance: "Returns rows of a completed data source. " + filterGrammar + " Page with page/limit or with pagination.nextCursor.")
    static let summary = "Rows of a completed data source, filtered, sorted (stable, nulls last) and paginated by page or by cursor."
    static let params: [MethodDescription.Param] = [
        .init("datasourceId", Schema.uuid, required: true, "The data source's id."),
        .init("page", Schema.page, "Page number, from 1 (ignored with cursor)."),
        .init("limit", Schema.integer(min: 1, max: DataQuery.maxLimit, default: DataQuery.defaultLimit), "Rows per page."),
        .init("sort", Schema.string, "Column to sort by, or several separated by commas (\"category,price\"); default: original order."),
        .init("order", ["type": "string", "pattern": "^\\s*([aA][sS][cC]|[dD][eE][sS][cC])\\s*(,\\s*([aA][sS][cC]|[dD][eE][sS][cC])\\s*)*$", "default": "asc"],
              "asc or desc for every sort column, or one per column (\"asc,desc\")."),
        .init("filter", ["type": "string", "maxLength": .int(Int64(FilterParser.maxLength))],
              "Filter expression, e.g. price > 100 AND (category = 'Toys' OR name CONTAINS 'widget')."),
        .init("cursor", Schema.string, "pagination.nextCursor of the previous page (keyset paging)."),
        .init("columns", ["type": "array", "items": Schema.string, "minItems": 1, "uniqueItems": true],
              "Return only these columns, in this order; default: all."),
    ]
    static let result = Schema.object([
        "data": ["type": "array", "items": ["type": "object"]],
        "pagination": Schema.object([
            "page": Schema.integer(min: 1), "limit": Schema.integer(min: 1), "total": Schema.integer(min: 0),
            "totalPages": Schema.integer(min: 0), "nextCursor": ["type": ["string", "null"]],
        ], required: ["page", "limit", "total", "totalPages", "nextCursor"]),
        "columns": ["type": "array", "items": Schema.object(["name": Schema.string, "type": Schema.columnType], required: ["name", "type"])],
    ], required: ["data", "pagination", "columns"])
    static let errors: [DataSourceError.Code] = [
        .datasourceNotFound, .processingInProgress, .processingFailed, .invalidParameters, .unauthorized, .storageError,
    ]
    static let http: HTTPRoute? = .init(.get, "/datasources/{datasourceId}/data")

    static let filterGrammar = """
        Filter grammar: comparisons = == != <> > >= < <= ; CONTAINS, STARTSWITH, ENDSWITH (case-insensitive, text \
        columns); IN ('a', 'b'); IS NULL / IS NOT NULL; AND, OR, NOT, parentheses (NOT > AND > OR). Columns are bare \
        names or `back quoted`; strings in single or double quotes. Examples: price > 100; \
        category = 'Electronics' AND (price <= 50 OR in_stock = true); name CONTAINS 'widget'; discount IS NULL.
        """

    static func call(_ params: Params, backend: any DataSourceBackend, context: MethodCallContext) async throws -> RawJSON {
        RawJSON(bytes: try await backend.data(try query(params)).jsonBytes())
    }

    static func query(_ params: Params) throws -> DataQuery {
        let id = try Validate.datasourceId(params.datasourceId)
        let columns = (params.sort ?? "").split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let sortColumns = columns == [""] ? [] : columns
        if sortColumns.contains("") {
            throw DataSourceError.invalidParameter("sort", value: params.sort.map { .string($0) }, reason: "has an empty column name")
        }
        guard sortColumns.count <= DataQuery.maxSortColumns else {
            throw DataSourceError.invalidParameter(
                "sort", value: params.sort.map { .string($0) }, reason: "names more than \(DataQuery.maxSortColumns) columns",
                extra: ["max": .int(Int64(DataQuery.maxSortColumns))])
        }
        guard Set(sortColumns).count == sortColumns.count else {
            throw DataSourceError.invalidParameter("sort", value: params.sort.map { .string($0) }, reason: "names a column twice")
        }
        var directions: [SortDirection] = []
        if let order = params.order {
            for word in order.split(separator: ",", omittingEmptySubsequences: false) {
                guard let parsed = SortDirection(rawValue: word.trimmingCharacters(in: .whitespaces).lowercased()) else {
                    throw DataSourceError.invalidParameter(
                        "order", value: .string(order), reason: "must be asc or desc, or one of them per sort column",
                        extra: ["allowed": .array(SortDirection.allCases.map { .string($0.rawValue) })])
                }
                directions.append(parsed)
            }
            guard directions.count == 1 || directions.count == sortColumns.count else {
                throw DataSourceError.invalidParameter(
                    "order", value: .string(order), reason: "give one direction for all sort columns or one per column (\(sortColumns.count))")
            }
        }
        let keys = sortColumns.enumerated().map { index, column in
            DataQuery.SortKey(column: column, direction: directions.count > 1 ? directions[index] : (directions.first ?? .asc))
        }
        if let filter = params.filter, filter.count > FilterParser.maxLength {
            throw DataSourceError.invalidParameter(
                "filter", value: nil, reason: "longer than \(FilterParser.maxLength) characters", extra: ["max": .int(Int64(FilterParser.maxLength))])
        }
        return DataQuery(
            datasourceId: id, page: try Validate.page(params.page),
            limit: try Validate.limit(params.limit, default: DataQuery.defaultLimit, max: DataQuery.maxLimit),
            sort: keys.first?.column, order: keys.first?.direction ?? .asc, filter: params.filter,
            cursor: params.cursor?.isEmpty == true ? nil : params.cursor, columns: params.columns, sortKeys: keys)
    }
}

struct DownloadMethod: DataSourceMethod {
    struct Params: Decodable, Sendable {
        var datasourceId: String
        var expiresIn: Int?
    }

    static let defaultExpiry = 3600
    static let maxExpiry = 86400

    /// A link's lifetime in seconds, as `download` and `export` take it.
    static func expiry(_ value: Int?) throws -> Int {
        try Validate.bounded("expiresIn", value, default: defaultExpiry, max: maxExpiry, unit: " seconds")
    }

    static let name = "datasources/download"
    static let access = MethodAccess.read
    static let tool: ToolDescription? = ToolDescription(
        name: "create_download_url", title: "Create a download link",
        guidance: "Returns a signed URL, valid for expiresIn seconds, that serves the original file.")
    static let summary = "A signed, expiring URL on the agent's loopback HTTP listener that serves the original file."
    static let params: [MethodDescription.Param] = [
        .init("datasourceId", Schema.uuid, required: true, "The data source's id."),
        .init("expiresIn", Schema.integer(min: 1, max: maxExpiry, default: defaultExpiry), "Seconds until the link expires."),
    ]
    static let result = Schema.object([
        "downloadUrl": ["type": "string", "format": "uri"], "fileName": Schema.string, "expiresAt": Schema.timestamp,
        "fileSize": Schema.integer(min: 0),
    ], required: ["downloadUrl", "fileName", "expiresAt", "fileSize"])
    static let errors: [DataSourceError.Code] = [.datasourceNotFound, .invalidParameters, .unauthorized]
    static let http: HTTPRoute? = .init(.post, "/datasources/{datasourceId}/download", input: .jsonBody)

    static func call(_ params: Params, backend: any DataSourceBackend, context: MethodCallContext) async throws -> RawJSON {
        let id = try Validate.datasourceId(params.datasourceId)
        return RawJSON(try await backend.downloadLink(for: id, expiresIn: try expiry(params.expiresIn)).json)
    }
}

struct QueryMethod: DataSourceMethod {
    struct Params: Decodable, Sendable {
        var sql: String
        var params: JSONValue?
        var sources: [String: String]?
        var limit: Int?
        var timeoutMs: Int?
    }

    static let name = "datasources/query"
    static let access = MethodAccess.read
    static let tool: ToolDescription? = ToolDescription(
        name: "sql_query", title: "Ask with SQL",
        guidance: "One read-only SQLite SELECT (or WITH … SELECT) over completed data sources; name a source by its id in double quotes (FROM \"<datasourceId>\") or by an alias given in sources. Column names and types are those get_datasource reports; date-times read as ISO text. Use it for aggregates and joins: SELECT category, avg(price) FROM \"<id>\" GROUP BY 1.")
    static let summary = "One read-only SQL SELECT over completed data sources (named by their quoted id or an alias), with bound parameters, a row limit and a time limit."
    static let params: [MethodDescription.Param] = [
        .init("sql", ["type": "string", "minLength": 1], required: true, "One SELECT or WITH … SELECT statement in SQLite's dialect."),
        .init("params", ["type": ["array", "object"]], "Bind values: an array for ? and ?NNN, an object for :name, @name, $name."),
        .init("sources", ["type": "object", "additionalProperties": Schema.uuid, "maxProperties": .int(Int64(SQLQuery.maxSources))],
              "Aliases: table name → datasourceId."),
        .init("limit", Schema.integer(min: 1, max: SQLQuery.maxLimit, default: SQLQuery.defaultLimit), "Most rows returned; truncated says if there were more."),
        .init("timeoutMs", Schema.integer(min: 1, max: SQLQuery.maxTimeoutMs, default: SQLQuery.defaultTimeoutMs), "The statement is interrupted after this many milliseconds."),
    ]
    static let result = Schema.object([
        "columns": ["type": "array", "items": Schema.object(["name": Schema.string, "type": Schema.columnType], required: ["name", "type"])],
        "rows": ["type": "array", "items": ["type": "object"]],
        "rowCount": Schema.integer(min: 0),
        "truncated": ["type": "boolean"],
        "elapsedMs": Schema.integer(min: 0),
    ], required: ["columns", "rows", "rowCount", "truncated", "elapsedMs"])
    static let errors: [DataSourceError.Code] = [
        .invalidParameters, .processingInProgress, .processingFailed, .unauthorized, .storageError,
    ]
    static let http: HTTPRoute? = .init(.post, "/query", input: .jsonBody)

    static func call(_ params: Params, backend: any DataSourceBackend, context: MethodCallContext) async throws -> RawJSON {
        RawJSON(bytes: try await backend.query(try request(params)).jsonBytes())
    }

    static func request(_ params: Params) throws -> SQLQuery {
        guard !params.sql.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw SQLQuery.invalid("the statement is empty")
        }
        let parameters: SQLQuery.Parameters
        switch params.params {
        case nil, .null?: parameters = .none
        case .array(let values)?: parameters = .positional(values)
        case .object(let object)?: parameters = .named(object)
        default:
            throw DataSourceError.invalidParameter("params", value: params.params, reason: "must be an array or an object")
        }
        var sources: [(alias: String, id: DataSourceID)] = []
        for (alias, idText) in (params.sources ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard !alias.isEmpty, alias.count <= 128, !alias.contains("\0"), !alias.lowercased().hasPrefix("sqlite_") else {
                throw DataSourceError.invalidParameter(
                    "sources", value: .string(alias), reason: "an alias is 1 to 128 characters, without NUL, not starting with sqlite_")
            }
            guard let id = DataSourceID(idText) else {
                throw DataSourceError.invalidParameter("sources.\(alias)", value: .string(idText), reason: "is not a data source id")
            }
            sources.append((alias, id))
        }
        guard sources.count <= SQLQuery.maxSources else {
            throw DataSourceError.invalidParameter("sources", value: nil, reason: "at most \(SQLQuery.maxSources) sources",
                                                   extra: ["max": .int(Int64(SQLQuery.maxSources))])
        }
        return SQLQuery(
            sql: params.sql, parameters: parameters, sources: sources,
            limit: try Validate.limit(params.limit, default: SQLQuery.defaultLimit, max: SQLQuery.maxLimit),
            timeoutMs: try Validate.bounded("timeoutMs", params.timeoutMs, default: SQLQuery.defaultTimeoutMs, max: SQLQuery.maxTimeoutMs))
    }
}

struct ExportMethod: DataSourceMethod {
    struct Params: Decodable, Sendable {
        var datasourceId: String
        var format: String
        var filter: String?
        var sort: String?
        var order: String?
        var columns: [String]?
        var expiresIn: Int?
    }

    static let name = "datasources/export"
    static let access = MethodAccess.read
    static let tool: ToolDescription? = ToolDescription(
        name: "export_datasource", title: "Export cleaned rows",
        guidance: "Returns a signed URL, valid for expiresIn seconds, that streams the cleaned, typed rows (every page of the same filter, sort and columns as query_datasource) as CSV or JSON Lines.")
    static let summary = "A signed, expiring link that streams the cleaned rows `data` would return (every page) as CSV (RFC 4180) or JSON Lines."
    static let params: [MethodDescription.Param] = [
        .init("datasourceId", Schema.uuid, required: true, "The data source's id."),
        .init("format", Schema.enumeration(ExportFormat.self), required: true, "csv or jsonl."),
        .init("filter", ["type": "string", "maxLength": .int(Int64(FilterParser.maxLength))], "Filter expression, as for datasources/data."),
        .init("sort", Schema.string, "Column(s) to sort by, as for datasources/data."),
        .init("order", Schema.string, "asc or desc, for all sort columns or one per column."),
        .init("columns", ["type": "array", "items": Schema.string, "minItems": 1, "uniqueItems": true], "Only these columns, in this order."),
        .init("expiresIn", Schema.integer(min: 1, max: DownloadMethod.maxExpiry, default: DownloadMethod.defaultExpiry), "Seconds until the link expires."),
    ]
    static let result = Schema.object([
        "downloadUrl": ["type": "string", "format": "uri"], "fileName": Schema.string, "expiresAt": Schema.timestamp,
        "fileSize": Schema.integer(min: 0),
    ], required: ["downloadUrl", "fileName", "expiresAt"])
    static let errors: [DataSourceError.Code] = [
        .datasourceNotFound, .processingInProgress, .processingFailed, .invalidParameters, .unauthorized, .storageError,
    ]
    static let http: HTTPRoute? = .init(.post, "/datasources/{datasourceId}/export", input: .jsonBody)

    static func call(_ params: Params, backend: any DataSourceBackend, context: MethodCallContext) async throws -> RawJSON {
        guard let format = ExportFormat(rawValue: params.format.lowercased()) else {
            throw DataSourceError.invalidParameter(
                "format", value: .string(params.format), reason: "must be csv or jsonl",
                extra: ["allowed": .array(ExportFormat.allCases.map { .string($0.rawValue) })])
        }
        let query = try DataMethod.query(DataMethod.Params(
            datasourceId: params.datasourceId, page: nil, limit: nil, sort: params.sort, order: params.order,
            filter: params.filter, cursor: nil, columns: params.columns))
        let expiry = try DownloadMethod.expiry(params.expiresIn)
        return RawJSON(try await backend.exportLink(query, format: format, expiresIn: expiry).json)
    }
}
