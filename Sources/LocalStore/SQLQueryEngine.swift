import DataSourceDomain
import Foundation
import GRDBSQLite
import JSONKit
import Synchronization

/// A completed source as one SQL statement sees it: the names it may be called by, its
/// columns, and its row file.
struct SQLSource {
    var id: DataSourceID
    var names: [String]
    var columns: [DataColumn]
    var path: String
}

/// Runs `datasources/query`: one read-only SQLite statement over named data sources.
///
/// Read-only by construction: a private in-memory connection attaches each named source's
/// row file read-only and shows it as a temporary view with the source's real column names;
/// then `query_only` is set and an authorizer admits nothing but SELECT, reads of those
/// sources and a list of pure functions. The statement must be alone (any second statement
/// is refused), a progress handler enforces the time limit, and at most `limit` rows are read.
enum SQLQueryEngine {
    /// Most bytes one value may hold, and all the rows together, in a query's answer.
    static let maxValueBytes: Int32 = 16 << 20
    static let maxResultBytes = 64 << 20

    static func run(_ request: SQLQuery, sources: [SQLSource], interrupt: QueryInterrupt = QueryInterrupt()) throws -> SQLQueryResult {
        let started = DispatchTime.now()
        var db: OpaquePointer?
        guard sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK,
            let db
        else {
            sqlite3_close(db)
            throw DataSourceError(.storageError, details: ["reason": "the query connection could not be opened"])
        }
        defer { sqlite3_close_v2(db) }
        // No value may grow past this (printf('%.*c', 1e9, 'x') would otherwise take GBs).
        sqlite3_limit(db, SQLITE_LIMIT_LENGTH, maxValueBytes)
        // A row file is briefly locked while its WAL is set up or checkpointed (the first page
        // of a source, the last connection closing before a delete): wait rather than fail.
        sqlite3_busy_timeout(db, 5000)
        try prepareSchema(db, sources: sources)

        let guardState = StatementGuard(schemas: Set(sources.indices.map { "s\($0)" }), views: Set(sources.flatMap(\.names)))
        guardState.interrupt = interrupt
        let unmanaged = Unmanaged.passRetained(guardState)
        defer { unmanaged.release() }
        let context = unmanaged.toOpaque()
        sqlite3_set_authorizer(db, { context, action, first, second, database, _ in
            guard let context else { return SQLITE_DENY }
            let state = Unmanaged<StatementGuard>.fromOpaque(context).takeUnretainedValue()
            return state.authorize(action: action, first: first.map { String(cString: $0) }, second: second.map { String(cString: $0) },
                                   database: database.map { String(cString: $0) })
        }, context)
        let deadline = started.uptimeNanoseconds + UInt64(request.timeoutMs) * 1_000_000
        guardState.deadline = deadline
        sqlite3_progress_handler(db, 4000, { context in
            guard let context else { return 1 }
            let state = Unmanaged<StatementGuard>.fromOpaque(context).takeUnretainedValue()
            return state.interrupt.isSet || DispatchTime.now().uptimeNanoseconds > state.deadline ? 1 : 0
        }, context)

        let statement = try prepareSingle(db, sql: request.sql, guardState: guardState)
        defer { sqlite3_finalize(statement) }
        try bind(request.parameters, to: statement)

        let count = Int(sqlite3_column_count(statement))
        var origins: [ColumnType?] = (0..<count).map { origin(statement, $0, sources: sources) }
        var rows: [[JSONValue]] = []
        var truncated = false
        var resultBytes = 0
        while true {
            let code = sqlite3_step(statement)
            if code == SQLITE_DONE { break }
            guard code == SQLITE_ROW else {
                if code == SQLITE_INTERRUPT || sqlite3_errcode(db) == SQLITE_INTERRUPT {
                    if interrupt.isSet { throw CancellationError() }
                    throw SQLQuery.invalid("timed out after \(request.timeoutMs) ms")
                }
                if let gone = vanished(sources) { throw SQLQuery.invalid("no data source \(gone.id.rawValue)") }
                throw SQLQuery.invalid(guardState.denial ?? message(db))
            }
            if rows.count == request.limit {
                truncated = true
                break
            }
            rows.append((0..<count).map { value(statement, $0, type: origins[$0]) })
            for index in 0..<count { resultBytes += Int(sqlite3_column_bytes(statement, Int32(index))) + 8 }
            if resultBytes > maxResultBytes {
                throw SQLQuery.invalid("the result is larger than \(maxResultBytes >> 20) MiB; ask for fewer rows or columns")
            }
        }
        let names = IngestionPipeline.uniqueNames((0..<count).map { index in
            sqlite3_column_name(statement, Int32(index)).map { String(cString: $0) } ?? "column_\(index + 1)"
        })
        for index in 0..<count where origins[index] == nil {
            origins[index] = inferredType(rows.lazy.map { $0[index] })
        }
        let columns = (0..<count).map { DataColumn(name: names[$0], type: origins[$0] ?? .string) }
        let elapsed = Int((DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1_000_000)
        return SQLQueryResult(columns: columns, rows: rows, truncated: truncated, elapsedMs: elapsed)
    }

    // MARK: The schema a statement sees

    static func quoted(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    private static func prepareSchema(_ db: OpaquePointer, sources: [SQLSource]) throws {
        sqlite3_create_function_v2(db, "ds_datetime", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nil, { context, _, arguments in
            guard let argument = arguments?[0], sqlite3_value_type(argument) != SQLITE_NULL else {
                sqlite3_result_null(context)
                return
            }
            let text = ISO8601DateTime.format(sqlite3_value_double(argument))
            sqlite3_result_text(context, text, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
        }, nil, nil, nil)
        for (index, source) in sources.enumerated() {
            let uri = "file:" + (source.path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "?#%"))) ?? source.path) + "?mode=ro"
            guard sqlite3_exec(db, "ATTACH DATABASE '\(uri.replacingOccurrences(of: "'", with: "''"))' AS s\(index)", nil, nil, nil) == SQLITE_OK else {
                // Deleted since the catalog said it was completed (a delete racing this query):
                // answered as for a source that does not exist. Once attached, the open file
                // answers the whole statement even if it is unlinked meanwhile.
                if let gone = vanished([source]) { throw SQLQuery.invalid("no data source \(gone.id.rawValue)") }
                throw rowsNotOpened
            }
            let select: String = source.columns.enumerated().map { position, column -> String in
                let expression: String = column.type == .datetime ? "ds_datetime(c\(position))" : "c\(position)"
                return "\(expression) AS \(quoted(column.name))"
            }.joined(separator: ", ")
            for name in source.names {
                let view: String = "CREATE TEMP VIEW \(quoted(name)) AS SELECT \(select.isEmpty ? "NULL AS empty" : select) FROM s\(index).rows"
                guard sqlite3_exec(db, view, nil, nil, nil) == SQLITE_OK else {
                    throw DataSourceError.invalidParameter("sources", value: .string(name), reason: "cannot name a source: \(message(db))")
                }
            }
        }
        // Large sorts (GROUP BY, ORDER BY without an index) merge on a helper thread:
        // GROUP BY of one column over 1,000,000 rows took 0.26 s instead of 0.33 with sqlite3 3.40.1.
        try execute(db, "PRAGMA threads = 2")
        try execute(db, "PRAGMA query_only = ON")
    }

    /// A source whose row file was deleted since the catalog named it (a delete racing this query).
    private static func vanished(_ sources: [SQLSource]) -> SQLSource? {
        sources.first { !FileManager.default.fileExists(atPath: $0.path) }
    }

    private static let rowsNotOpened = DataSourceError(.storageError, details: ["reason": "a data source's rows could not be opened for the query"])

    private static func execute(_ db: OpaquePointer, _ sql: String) throws {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw rowsNotOpened }
    }

    private static func message(_ db: OpaquePointer) -> String {
        String(cString: sqlite3_errmsg(db))
    }

    /// Prepares the first statement and refuses anything after it but blanks and comments.
    private static func prepareSingle(_ db: OpaquePointer, sql: String, guardState: StatementGuard) throws -> OpaquePointer {
        let bytes = Array(sql.utf8)
        return try bytes.withUnsafeBufferPointer { buffer -> OpaquePointer in
            let base = UnsafeRawPointer(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self)
            var statement: OpaquePointer?
            var tail: UnsafePointer<CChar>?
            let code = sqlite3_prepare_v2(db, base, Int32(buffer.count), &statement, &tail)
            guard code == SQLITE_OK else {
                let offset = sqlite3_error_offset(db)
                let reason = guardState.denial ?? message(db)
                throw SQLQuery.invalid(reason, offset: offset >= 0 ? characterOffset(bytes, Int(offset)) : nil)
            }
            guard let statement else { throw SQLQuery.invalid("the statement is empty") }
            let tailOffset = tail.map { $0 - base } ?? buffer.count
            if tailOffset < buffer.count {
                var next: OpaquePointer?
                let rest = sqlite3_prepare_v2(db, base + tailOffset, Int32(buffer.count - tailOffset), &next, nil)
                sqlite3_finalize(next)
                if rest != SQLITE_OK || next != nil {
                    sqlite3_finalize(statement)
                    throw SQLQuery.invalid("only one statement is allowed", offset: characterOffset(bytes, tailOffset))
                }
            }
            guard sqlite3_stmt_readonly(statement) != 0 else {
                sqlite3_finalize(statement)
                throw SQLQuery.invalid("only reading is allowed")
            }
            return statement
        }
    }

    /// SQLite reports byte offsets; clients count characters.
    private static func characterOffset(_ bytes: [UInt8], _ byteOffset: Int) -> Int {
        String(decoding: bytes.prefix(byteOffset), as: UTF8.self).count
    }

    private static func bind(_ parameters: SQLQuery.Parameters, to statement: OpaquePointer) throws {
        let expected = Int(sqlite3_bind_parameter_count(statement))
        switch parameters {
        case .none:
            guard expected == 0 else {
                throw DataSourceError.invalidParameter("params", value: nil, reason: "the statement has \(expected) parameters and none were given")
            }
        case .positional(let values):
            guard values.count == expected else {
                throw DataSourceError.invalidParameter(
                    "params", value: nil, reason: "the statement has \(expected) parameters; \(values.count) were given")
            }
            for (index, value) in values.enumerated() { try bind(value, at: Int32(index + 1), to: statement) }
        case .named(let object):
            for index in 1...max(1, expected) where expected > 0 {
                guard let raw = sqlite3_bind_parameter_name(statement, Int32(index)) else {
                    throw DataSourceError.invalidParameter("params", value: nil, reason: "positional parameters need params as an array")
                }
                let name = String(String(cString: raw).dropFirst())
                guard let value = object[name] else {
                    throw DataSourceError.invalidParameter("params.\(name)", value: nil, reason: "is used by the statement but not given")
                }
                try bind(value, at: Int32(index), to: statement)
            }
        }
    }

    private static func bind(_ value: JSONValue, at index: Int32, to statement: OpaquePointer) throws {
        switch value {
        case .null: sqlite3_bind_null(statement, index)
        case .bool(let b): sqlite3_bind_int64(statement, index, b ? 1 : 0)
        case .int(let i): sqlite3_bind_int64(statement, index, i)
        case .double(let d): sqlite3_bind_double(statement, index, d)
        case .string(let s): sqlite3_bind_text(statement, index, s, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
        case .array, .object:
            throw DataSourceError.invalidParameter("params", value: nil, reason: "parameter \(index) must be a string, number, boolean or null")
        }
    }

    // MARK: Typed values

    /// A result column that is a source's own column keeps that column's type.
    private static func origin(_ statement: OpaquePointer, _ index: Int, sources: [SQLSource]) -> ColumnType? {
        guard let database = sqlite3_column_database_name(statement, Int32(index)).map({ String(cString: $0) }),
            let table = sqlite3_column_table_name(statement, Int32(index)).map({ String(cString: $0) }), table == "rows",
            let column = sqlite3_column_origin_name(statement, Int32(index)).map({ String(cString: $0) }),
            database.hasPrefix("s"), let sourceIndex = Int(database.dropFirst()), sources.indices.contains(sourceIndex),
            column.hasPrefix("c"), let position = Int(column.dropFirst()), sources[sourceIndex].columns.indices.contains(position)
        else { return nil }
        return sources[sourceIndex].columns[position].type
    }

    /// Stored values become JSON as `data` makes them (`QueryEngine.json`); a computed
    /// column's values keep their storage class.
    private static func value(_ statement: OpaquePointer, _ index: Int, type: ColumnType?) -> JSONValue {
        QueryEngine.json(sqliteStatement: statement, index: Int32(index), type: type ?? .string)
    }

    /// A computed column's type, from its values: numbers, ISO dates or date-times, else text.
    private static func inferredType(_ values: some Sequence<JSONValue>) -> ColumnType {
        var sawNumber = false, sawText = false, allDates = true, allDatetimes = true, sawAny = false
        for value in values {
            switch value {
            case .null: continue
            case .int, .double: sawNumber = true
            case .bool: return .boolean
            case .string(let s):
                sawText = true
                if s.count != 10 || ISO8601DateTime.date(s) == nil { allDates = false }
                if s.count < 20 || !s.hasSuffix("Z") || ISO8601DateTime.seconds(s) == nil { allDatetimes = false }
            default: sawText = true
            }
            sawAny = true
        }
        if !sawAny || (sawNumber && !sawText) { return sawAny ? .number : .string }
        if sawText && !sawNumber && allDates { return .date }
        if sawText && !sawNumber && allDatetimes { return .datetime }
        return .string
    }
}

/// What a statement may do, decided action by action while SQLite prepares it.
final class StatementGuard: @unchecked Sendable {
    /// The attached schemas of the named sources, and the views that name them.
    let schemas: Set<String>
    let views: Set<String>
    var deadline: UInt64 = .max
    var interrupt = QueryInterrupt()
    /// Why the last action was refused, in words, for the error.
    var denial: String?

    init(schemas: Set<String>, views: Set<String>) {
        self.schemas = schemas
        self.views = views
    }

    /// Pure, deterministic functions a read-only question may call. Anything else (including
    /// `load_extension`, `readfile`, `random`, `zeroblob`) is refused.
    static let functions: Set<String> = [
        "abs", "avg", "count", "group_concat", "string_agg", "max", "min", "sum", "total",
        "coalesce", "ifnull", "nullif", "iif", "length", "octet_length", "lower", "upper", "trim", "ltrim", "rtrim",
        "substr", "substring", "replace", "instr", "printf", "format", "round", "typeof", "hex", "unhex", "quote",
        "char", "unicode", "sign", "like", "glob", "likely", "unlikely", "likelihood",
        "date", "time", "datetime", "julianday", "strftime", "unixepoch",
        "ceil", "ceiling", "floor", "trunc", "ln", "log", "log2", "log10", "exp", "pow", "power", "sqrt", "mod", "pi",
        "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "degrees", "radians",
        "json", "json_array", "json_object", "json_extract", "json_type", "json_valid", "json_array_length", "json_quote",
        "json_group_array", "json_group_object", "json_each", "json_tree",
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
        "first_value", "last_value", "nth_value", "ds_datetime",
    ]

    func authorize(action: Int32, first: String?, second: String?, database: String?) -> Int32 {
        switch action {
        case SQLITE_SELECT, SQLITE_RECURSIVE:
            return SQLITE_OK
        case SQLITE_READ:
            // A source's rows, its view (in `temp`), or a CTE or subquery (no database).
            guard let database else { return SQLITE_OK }
            if schemas.contains(database), first == "rows" { return SQLITE_OK }
            if database == "temp", let first, views.contains(first) { return SQLITE_OK }
            denial = "only the data sources named in the statement can be read"
        case SQLITE_FUNCTION:
            if let name = second?.lowercased(), Self.functions.contains(name) { return SQLITE_OK }
            denial = "the function \(second ?? "?") is not allowed in a read-only query"
        case SQLITE_PRAGMA:
            denial = "PRAGMA is not allowed in a read-only query"
        case SQLITE_ATTACH, SQLITE_DETACH:
            denial = "ATTACH and DETACH are not allowed in a read-only query"
        case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
            denial = "only reading is allowed"
        case SQLITE_TRANSACTION, SQLITE_SAVEPOINT:
            denial = "transactions are not allowed in a read-only query"
        default:
            denial = "only a SELECT statement is allowed"
        }
        return SQLITE_DENY
    }
}

/// Set to stop a running statement (its request was cancelled).
final class QueryInterrupt: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}
