import DataSourceDomain
import Foundation
import JSONKit
import Logging
import PostgresNIO

/// `datasources/query` on PostgreSQL (SPEC §12): the statement in PostgreSQL's dialect over
/// the named sources, each given to it as a common table expression named by its quoted id
/// (and by its aliases) with the columns' real names and types; run in a READ ONLY
/// transaction under the role `datasource_agent_reader` (which may read the sources' tables
/// and nothing else), with `statement_timeout` = `timeoutMs`. Before it runs, its plan
/// (`EXPLAIN`) must read no relation but the named sources' tables.
struct PostgresSQLQuery {
    static let readerRole = "datasource_agent_reader"
    static let maxResultBytes = 64 << 20

    /// Functions that run SQL text of their own (beyond the plan's check), change the role
    /// or settings, or reach files and other servers: refused by name (decision).
    static let refusedFunctions: Set<String> = [
        "set_config", "current_setting", "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
        "cursor_to_xmlschema", "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema", "schema_to_xml",
        "schema_to_xmlschema", "schema_to_xml_and_xmlschema", "database_to_xml", "database_to_xmlschema",
        "database_to_xml_and_xmlschema", "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_sleep",
        "pg_sleep_for", "pg_sleep_until", "dblink", "dblink_exec", "lo_import", "lo_export", "lo_get", "lo_open", "loread",
        "pg_advisory_lock", "pg_advisory_xact_lock", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
        "pg_notify", "txid_current", "nextval", "setval",
    ]

    struct Source {
        var id: DataSourceID
        var names: [String]
        var columns: [DataColumn]
    }

    let request: SQLQuery
    let sources: [Source]

    /// A column as the statement sees it: dates as `date`, datetimes as `timestamptz`.
    static func exposed(_ index: Int, _ type: ColumnType) -> String {
        switch type {
        case .date: "c\(index)::date"
        case .datetime: "to_timestamp(c\(index))"
        default: "c\(index)"
        }
    }

    static func quoted(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    /// The statement with the sources in front of it, and where the user's text starts in it.
    func wrapped() throws -> (sql: String, userStart: Int) {
        var sql = request.sql.trimmingCharacters(in: .whitespacesAndNewlines)
        while sql.hasSuffix(";") { sql = String(sql.dropLast()).trimmingCharacters(in: .whitespacesAndNewlines) }
        guard !sql.isEmpty else { throw SQLQuery.invalid("the statement is empty") }
        for word in Self.identifiers(in: sql) where Self.refusedFunctions.contains(word.lowercased()) {
            throw SQLQuery.invalid("\(word) is not allowed: only reading the named sources is")
        }
        var definitions: [String] = []
        for source in sources {
            let select = source.columns.indices.map { "\(Self.exposed($0, source.columns[$0].type)) AS \(Self.quoted(source.columns[$0].name))" }
            for name in source.names {
                definitions.append("\(Self.quoted(name)) AS (SELECT \(select.isEmpty ? "" : select.joined(separator: ", ")) FROM \(RowTable.name(source.id)))")
            }
        }
        let prefix = (definitions.isEmpty ? "" : "WITH " + definitions.joined(separator: ", ") + " ") + "SELECT * FROM (\n"
        return (prefix + sql + "\n) AS datasource_agent_query LIMIT \(request.limit + 1)", prefix.count)
    }

    /// The identifiers of the statement outside strings, quoted names and comments.
    static func identifiers(in sql: String) -> [String] { words(in: sql).bare }

    /// The double-quoted names of the statement (a doubled quote escapes one).
    static func quotedNames(in sql: String) -> [String] { words(in: sql).quoted }

    static func words(in sql: String) -> (bare: [String], quoted: [String]) {
        let chars = Array(sql)
        var found: [String] = []
        var quoted: [String] = []
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "'" || c == "\"" {
                var text = ""
                i += 1
                while i < chars.count {
                    if chars[i] == c { if i + 1 < chars.count, chars[i + 1] == c { text.append(c); i += 2; continue }; break }
                    text.append(chars[i])
                    i += 1
                }
                if c == "\"" { quoted.append(text) }
                i += 1
            } else if c == "-", i + 1 < chars.count, chars[i + 1] == "-" {
                while i < chars.count, chars[i] != "\n" { i += 1 }
            } else if c == "/", i + 1 < chars.count, chars[i + 1] == "*" {
                i += 2
                while i + 1 < chars.count, !(chars[i] == "*" && chars[i + 1] == "/") { i += 1 }
                i += 2
            } else if c.isLetter || c == "_" {
                var word = ""
                while i < chars.count, chars[i].isLetter || chars[i].isNumber || chars[i] == "_" || chars[i] == "$" { word.append(chars[i]); i += 1 }
                found.append(word)
            } else {
                i += 1
            }
        }
        return (found, quoted)
    }

    func bindings() throws -> PostgresBindings {
        var bindings = PostgresBindings()
        switch request.parameters {
        case .none: break
        case .named:
            throw DataSourceError.invalidParameter(
                "params", value: nil, reason: "a PostgreSQL store takes positional parameters only ($1, $2, … with params an array)")
        case .positional(let values):
            for value in values {
                switch value {
                case .null: bindings.appendNull()
                case .bool(let b): bindings.append(b)
                case .int(let i): bindings.append(i)
                case .double(let d): bindings.append(d)
                case .string(let s): bindings.append(s)
                default:
                    throw DataSourceError.invalidParameter("params", value: value, reason: "parameters are numbers, strings, booleans or null")
                }
            }
        }
        return bindings
    }

    func run(_ client: PostgresClient, logger: Logger) async throws -> SQLQueryResult {
        let (sql, userStart) = try wrapped()
        let bindings = try bindings()
        let started = DispatchTime.now()
        let allowed = Set(sources.map { RowTable.unqualifiedName($0.id) })
        do {
            return try await client.withConnection { connection in
                try await connection.withTransaction(logger: logger) { connection in
                    try await connection.query("SET TRANSACTION READ ONLY", logger: logger)
                    do {
                        try await connection.query(PostgresQuery(unsafeSQL: "SET LOCAL ROLE \(Self.readerRole)"), logger: logger)
                    } catch {
                        throw Self.withoutReaderRole(error)
                    }
                    try await connection.query("SELECT set_config('statement_timeout', \(String(request.timeoutMs)), true)", logger: logger)
                    var plan = ""
                    do {
                        for try await text in try await connection.query(
                            PostgresQuery(unsafeSQL: Self.explain + sql, binds: bindings), logger: logger
                        ).decode(String.self) { plan += text }
                    } catch {
                        throw Explaining(underlying: error)
                    }
                    for relation in Self.relations(inPlan: plan) where !allowed.contains(relation) {
                        throw SQLQuery.invalid("the statement reads \(relation), which is not one of the named sources")
                    }
                    var columns: [DataColumn] = []
                    var rows: [[JSONValue]] = []
                    var truncated = false
                    var bytes = 0
                    for try await row in try await connection.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger) {
                        if rows.count == request.limit { truncated = true; break }
                        var values: [JSONValue] = []
                        var types: [ColumnType] = []
                        for cell in row {
                            let (value, type) = try Self.json(cell)
                            values.append(value)
                            types.append(type)
                            if case .string(let s) = value { bytes += s.utf8.count } else { bytes += 8 }
                        }
                        if columns.isEmpty { columns = zip(row.map(\.columnName), types).map { DataColumn(name: $0, type: $1) } }
                        guard bytes <= Self.maxResultBytes else {
                            throw SQLQuery.invalid("the result is larger than \(Self.maxResultBytes >> 20) MiB; ask for fewer rows or columns")
                        }
                        rows.append(values)
                    }
                    let elapsed = Int((DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1_000_000)
                    return SQLQueryResult(columns: columns, rows: rows, truncated: truncated, elapsedMs: elapsed)
                }
            }
        } catch let error as PostgresTransactionError {
            throw Self.translate(error.closureError ?? error.commitError ?? error, userStart: userStart, sql: sql, timeoutMs: request.timeoutMs)
        } catch {
            throw Self.translate(error, userStart: userStart, sql: sql, timeoutMs: request.timeoutMs)
        }
    }

    static let explain = "EXPLAIN (FORMAT JSON) "

    /// The source whose table "relation \"datasource_agent.rows_<id>\" does not exist" names.
    static func deletedSource(in message: String) -> DataSourceID? {
        guard let start = message.range(of: "rows_")?.upperBound else { return nil }
        return DataSourceID(String(message[start...].prefix(36)))
    }

    /// A failure of the plan's check: positions count the `EXPLAIN` in front too.
    struct Explaining: Error {
        var underlying: any Error
    }

    /// Why the statement cannot run as the reader role: the role does not exist (22023; the
    /// login role that created the store may not create roles) or this login role is not a
    /// member of it (42501; it existed already and could not be granted). Either way the
    /// store has no `query`, which is not the statement's fault.
    static func withoutReaderRole(_ error: any Error) -> any Error {
        guard let psql = error as? PSQLError, let state = psql.serverInfo?[.sqlState], ["22023", "42704", "42501"].contains(state) else {
            return error
        }
        let reason = state == "42501"
            ? "the agent's database role is not a member of the role \(readerRole), which queries run as; a role that may grant it (GRANT \(readerRole) TO …) must"
            : "the store has no role \(readerRole), which queries run as: the database role of the agent that created the store may not create roles; a role that may must create it (see protocol/postgres.md)"
        return DataSourceError(.notSupported, details: ["method": "datasources/query", "reason": .string(reason)])
    }

    /// PostgreSQL's complaint about the statement as INVALID_PARAMETERS on `sql`, its position
    /// made an offset into the client's text; anything else passes on.
    static func translate(_ error: any Error, userStart: Int, sql: String, timeoutMs: Int) -> any Error {
        if let explaining = error as? Explaining {
            return translate(explaining.underlying, userStart: userStart + explain.count, sql: sql, timeoutMs: timeoutMs)
        }
        guard let psql = error as? PSQLError, let info = psql.serverInfo, let message = info[.message] else { return error }
        if info[.sqlState] == "42P01", let deleted = deletedSource(in: message) {
            // A named source deleted between the catalog's answer and the statement: answered
            // as for a source that does not exist, not with the table's internal name.
            return SQLQuery.invalid("no data source \(deleted.rawValue)")
        }
        switch info[.sqlState] {
        case "57014": return SQLQuery.invalid("timed out after \(timeoutMs) ms")
        case "42501": return SQLQuery.invalid("only reading the named sources is allowed (\(message))")
        case "25006": return SQLQuery.invalid("only reading is allowed")
        default:
            let offset = info[.position].flatMap(Int.init).map { $0 - 1 - userStart }
            return SQLQuery.invalid(message, offset: offset.flatMap { $0 >= 0 ? $0 : nil })
        }
    }

    /// The relations an `EXPLAIN (FORMAT JSON)` plan reads.
    static func relations(inPlan plan: String) -> [String] {
        guard let json = try? JSONParser.parse(Array(plan.utf8)) else { return ["(a plan that cannot be read)"] }
        var found: [String] = []
        func walk(_ value: JSONValue) {
            switch value {
            case .array(let items): items.forEach(walk)
            case .object(let object):
                if case .string(let name)? = object["Relation Name"] { found.append(name) }
                for (_, child) in object { walk(child) }
            default: break
            }
        }
        walk(json)
        return found
    }

    /// A result cell as typed JSON, and the type `query` reports for its column.
    static func json(_ cell: PostgresCell) throws -> (JSONValue, ColumnType) {
        if cell.bytes == nil {
            return (.null, columnType(cell.dataType))
        }
        switch cell.dataType {
        case .bool: return (.bool(try cell.decode(Bool.self)), .boolean)
        case .int2, .int4, .int8, .oid: return (.int(try cell.decode(Int64.self)), .number)
        case .float4, .float8: return (.double(try cell.decode(Double.self)), .number)
        case .numeric:
            let decimal = try cell.decode(Decimal.self)
            let double = NSDecimalNumber(decimal: decimal).doubleValue
            if double.rounded() == double, abs(double) < 9.0e15 { return (.int(Int64(double)), .number) }
            return (.double(double), .number)
        case .date:
            let date = try cell.decode(Date.self)
            return (.string(String(ISO8601DateTime.format(date.timeIntervalSince1970).prefix(10))), .date)
        case .timestamp, .timestamptz:
            return (.string(ISO8601DateTime.format(try cell.decode(Date.self).timeIntervalSince1970)), .datetime)
        default:
            return (.string(try cell.decode(String.self)), .string)
        }
    }

    static func columnType(_ type: PostgresDataType) -> ColumnType {
        switch type {
        case .bool: .boolean
        case .int2, .int4, .int8, .oid, .float4, .float8, .numeric: .number
        case .date: .date
        case .timestamp, .timestamptz: .datetime
        default: .string
        }
    }
}
