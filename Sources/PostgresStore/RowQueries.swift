import DataSourceDomain
import Foundation
import JSONKit
import LocalStore
import PostgresNIO
import Synchronization

/// A source's typed table: `r` (the row's position in the file, 1-based) and one column per
/// data column, `c0…cN`, typed as the column's type is stored.
enum RowTable {
    /// The quoted, schema-qualified name; the id is a validated lowercase UUID.
    static func name(_ id: DataSourceID) -> String { "datasource_agent.\"\(unqualifiedName(id))\"" }
    static func unqualifiedName(_ id: DataSourceID) -> String { "rows_\(id.rawValue)" }

    /// Dates are kept as ISO text (they sort as dates) and datetimes as seconds since 1970,
    /// exactly as the local store keeps them, so that filters bind the same values.
    static func sqlType(_ type: ColumnType) -> String {
        switch type {
        case .string, .date: "text"
        case .number, .datetime: "double precision"
        case .boolean: "boolean"
        }
    }
}

/// Compiles a checked filter (the shared AST of `FilterParser`) to PostgreSQL over `c0…cN`.
/// Every value is a bound parameter (`$n`); only column positions and fixed operator text are
/// written into the SQL.
struct PostgresFilterSQL {
    var bindings = PostgresBindings()
    let columns: [DataColumn]

    init(columns: [DataColumn], bindings: PostgresBindings = PostgresBindings()) {
        self.columns = columns
        self.bindings = bindings
    }

    /// The placeholder of a new parameter.
    mutating func bind(_ literal: FilterLiteral, _ type: ColumnType) -> String {
        switch (literal, type) {
        case (.null, _): bindings.appendNull()
        case (.bool(let b), _): bindings.append(b)
        case (.integer(let i), .string), (.integer(let i), .date): bindings.append(String(i))
        case (.integer(let i), _): bindings.append(Double(i))
        case (.number(let d), _): bindings.append(d)
        case (.string(let s), .date): bindings.append(FilterDates.date(s) ?? s)
        case (.string(let s), .datetime): bindings.append(FilterDates.datetime(s) ?? 0)
        case (.string(let s), _): bindings.append(s)
        }
        return "$\(bindings.count)"
    }

    mutating func bindText(_ text: String) -> String {
        bindings.append(text)
        return "$\(bindings.count)"
    }

    func column(_ name: String) -> (String, ColumnType) {
        let index = columns.firstIndex { $0.name == name }!
        return ("c\(index)", columns[index].type)
    }

    mutating func compile(_ expression: FilterExpression) -> String {
        switch expression {
        case .and, .or:
            let isAnd = if case .and = expression { true } else { false }
            let terms = expression.chain(and: isAnd).map { compile($0) }
            return "(" + terms.joined(separator: isAnd ? " AND " : " OR ") + ")"
        case .not:
            // As on the local store: a comparison with a missing value is unknown, and so is its NOT.
            let (inner, negated) = expression.strippingNots
            let compiled = compile(inner)
            return negated ? "(NOT \(compiled))" : compiled
        case .compare(let name, let op, let value):
            let (c, type) = column(name)
            return "\(c) \(op.rawValue) \(bind(value, type))"
        case .text(let name, let op, let value):
            // Case-insensitive by lower() on both sides; strpos and right() avoid LIKE's wildcards.
            let (c, _) = column(name)
            let needle = bindText(value.lowercased())
            switch op {
            case .contains: return "(strpos(lower(\(c)), \(needle)) > 0)"
            case .startsWith: return "(left(lower(\(c)), char_length(\(needle))) = \(needle))"
            case .endsWith: return "(right(lower(\(c)), char_length(\(needle))) = \(needle))"
            }
        case .isIn(let name, let values, let negated):
            let (c, type) = column(name)
            let list = values.map { bind($0, type) }.joined(separator: ", ")
            return negated ? "(\(c) IS NOT NULL AND \(c) NOT IN (\(list)))" : "\(c) IN (\(list))"
        case .isNull(let name, let negated):
            let (c, _) = column(name)
            return negated ? "\(c) IS NOT NULL" : "\(c) IS NULL"
        case .truthy(let name):
            let (c, _) = column(name)
            return "\(c) = true"
        }
    }
}

/// Answers `datasources/data` from a source's table: the filter compiled with bound
/// parameters, the stable nulls-last order `(c IS NULL), c dir, …, r`, and a signed keyset
/// cursor holding the last row's sort values and position, so that any page costs the same.
struct RowPageQuery {
    let query: DataQuery
    let columns: [DataColumn]
    let rowCount: Int
    let secret: StoreSecret
    let counts: FilterCounts

    func run(_ client: PostgresClient, logger: Logger) async throws -> DataPage {
        let (sortKeys, returned) = try query.positions(in: columns)
        let filterText = query.filter?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        var compiler = PostgresFilterSQL(columns: columns)
        var conditions: [String] = []
        if !filterText.isEmpty {
            conditions.append(compiler.compile(try FilterParser.parseParameter(filterText, columns: columns)))
        }
        let filterBindings = compiler.bindings
        let filterCondition = conditions.first
        let sortScope = sortKeys.map { "c\($0.index) \($0.direction.rawValue)" }.joined(separator: ",")
        let scope = "\(query.datasourceId.rawValue)|\(sortScope)|\(filterText)"
        var page = query.page
        var cursor: PageCursor?
        if let text = query.cursor {
            cursor = try PageCursor.decode(text, scope: scope, secret: secret)
            page = cursor!.page
        }
        if let cursor {
            guard cursor.sortValues.count == sortKeys.count else { throw PageCursor.invalid(query.cursor ?? "") }
            conditions.append(Self.beyond(sortKeys, types: sortKeys.map { columns[$0.index].type }, cursor: cursor, compiler: &compiler))
        }
        // `NULLS LAST` in both directions: the order `(c IS NULL), c dir` that a sort index on
        // `(c dir NULLS LAST, r)` serves as it is.
        let orderBy = (sortKeys.map { "c\($0.index) \($0.direction == .asc ? "ASC" : "DESC") NULLS LAST" } + ["r ASC"])
            .joined(separator: ", ")
        // One JSON array per row: PostgreSQL writes the typed values (numbers, booleans, text,
        // null) and the agent reads them with the same parser as everything else.
        let fetched = returned + sortKeys.map(\.index).filter { !returned.contains($0) }
        let values = Self.jsonArray(of: fetched.map { "c\($0)" })
        let whereSQL = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let offset = cursor == nil ? Pagination.offset(page: page, limit: query.limit) : 0
        let sql = "SELECT r, \(values.sql)::text FROM \(RowTable.name(query.datasourceId)) \(whereSQL) ORDER BY \(orderBy) LIMIT \(query.limit + 1) OFFSET \(offset)"
        var rows: [[JSONValue]] = []
        var last: (values: [JSONValue], r: Int64)?
        var hasMore = false
        for try await (r, arrayText) in try await client.query(PostgresQuery(unsafeSQL: sql, binds: compiler.bindings), logger: logger).decode((Int64, String).self) {
            if rows.count == query.limit { hasMore = true; break }
            guard case .array(let parsed) = try JSONParser.parse(Array(arrayText.utf8)) else { continue }
            let values = values.nested ? parsed.flatMap { value -> [JSONValue] in if case .array(let part) = value { part } else { [] } } : parsed
            rows.append(returned.indices.map { Self.json(values[$0], type: columns[returned[$0]].type) })
            last = (sortKeys.map { key in values[fetched.firstIndex(of: key.index)!] }, r)
        }
        let total: Int
        let countKey = "\(query.datasourceId.rawValue)|\(filterText)"
        if filterCondition != nil, let cached = counts.value(countKey) {
            total = cached
        } else if let filterCondition {
            let countSQL = "SELECT count(*) FROM \(RowTable.name(query.datasourceId)) WHERE \(filterCondition)"
            var counted = 0
            for try await count in try await client.query(PostgresQuery(unsafeSQL: countSQL, binds: filterBindings), logger: logger).decode(Int.self) {
                counted = count
            }
            total = counted
            counts.store(countKey, counted)
        } else {
            total = rowCount
        }
        Self.ensureRowIndex(client, id: query.datasourceId, logger: logger)
        if sortKeys.count == 1 { Self.ensureIndex(client, id: query.datasourceId, column: sortKeys[0].index, direction: sortKeys[0].direction, logger: logger) }
        var nextCursor: String?
        if hasMore, let last {
            nextCursor = PageCursor(page: min(page, Pagination.maxPage - 1) + 1, sortValues: last.values, r: last.r).encode(scope: scope, secret: secret)
        }
        return DataPage(
            columns: returned.map { DataColumn(name: columns[$0].name, type: columns[$0].type) }, rows: rows,
            pagination: Pagination(page: page, limit: query.limit, total: total, nextCursor: nextCursor))
    }

    /// A JSON array of `expressions`' values. `json_build_array` takes at most 100 arguments
    /// (PostgreSQL's function argument limit), so a wider row is an array of arrays of at most
    /// 100 values each (`nested`), flattened when read.
    static func jsonArray(of expressions: [String]) -> (sql: String, nested: Bool) {
        let limit = 100
        guard expressions.count > limit else { return ("json_build_array(\(expressions.joined(separator: ", ")))", false) }
        let parts = stride(from: 0, to: expressions.count, by: limit).map { start in
            "json_build_array(\(expressions[start..<min(start + limit, expressions.count)].joined(separator: ", ")))"
        }
        return ("json_build_array(\(parts.joined(separator: ", ")))", true)
    }

    /// Index policy, as on the local store: the first sort by a column in a direction is
    /// answered from a scan (PostgreSQL's top-N sort) and starts building the index on
    /// `(c dir NULLS LAST, r)` beside it, once per process; later pages use it. A build that
    /// fails (another agent building the same one) is forgotten, so a later sort tries again.
    static func ensureIndex(_ client: PostgresClient, id: DataSourceID, column: Int, direction: SortDirection, logger: Logger) {
        let name = "\(RowTable.unqualifiedName(id))_c\(column)_\(direction.rawValue)"
        buildOnce(client, name: name, logger: logger) {
            "CREATE INDEX IF NOT EXISTS \"\(name)\" ON \(RowTable.name(id)) (c\(column) \(direction == .asc ? "ASC" : "DESC") NULLS LAST, r)"
        }
    }

    /// The unique index on `r` (the rows' order and every cursor's last key), built beside
    /// the first pages rather than inside the load's transaction, where it cost a sixth of a
    /// 1,000,000-row ingest. Started once per process and table: after the publishing commit,
    /// and by the first page any agent serves (so a table whose agent died before building it
    /// gets it too; `IF NOT EXISTS` makes that a no-op where it is built). `CREATE INDEX`
    /// blocks no reader and is all or nothing: a build cut short leaves no index, and a later
    /// page starts it again.
    static func ensureRowIndex(_ client: PostgresClient, id: DataSourceID, logger: Logger) {
        let name = "\(RowTable.unqualifiedName(id))_r"
        buildOnce(client, name: name, logger: logger) { "CREATE UNIQUE INDEX IF NOT EXISTS \"\(name)\" ON \(RowTable.name(id)) (r)" }
    }

    /// Runs the index build `sql` in the background the first time this process asks for
    /// `name`; a build that fails is forgotten, so a later request tries again.
    private static func buildOnce(_ client: PostgresClient, name: String, logger: Logger, sql: @escaping @Sendable () -> String) {
        let start = knownIndexes.withLock { known -> Bool in
            guard !known.contains(name) else { return false }
            known.insert(name)
            return true
        }
        guard start else { return }
        Task.detached(priority: .utility) {
            do {
                try await client.query(PostgresQuery(unsafeSQL: sql()), logger: logger)
            } catch {
                _ = knownIndexes.withLock { $0.remove(name) }
            }
        }
    }

    static let knownIndexes = Mutex<Set<String>>([])

    /// The rows after the cursor's key in the order `(c1 IS NULL), c1 dir1, …, r` (nulls last per column).
    static func beyond(
        _ keys: [(index: Int, direction: SortDirection)], types: [ColumnType], cursor: PageCursor, compiler: inout PostgresFilterSQL
    ) -> String {
        func after(_ i: Int) -> String {
            guard i < keys.count else {
                compiler.bindings.append(cursor.r)
                return "r > $\(compiler.bindings.count)"
            }
            let c = "c\(keys[i].index)"
            let value = cursor.sortValues[i]
            if value == .null { return "(\(c) IS NULL AND \(after(i + 1)))" }
            let placeholder = compiler.bind(Self.literal(value), types[i])
            let comparison = keys[i].direction == .asc ? ">" : "<"
            return "(\(c) IS NULL OR \(c) \(comparison) \(placeholder) OR (\(c) = \(placeholder) AND \(after(i + 1))))"
        }
        return after(0)
    }

    static func literal(_ value: JSONValue) -> FilterLiteral {
        switch value {
        case .int(let i): .integer(i)
        case .double(let d): .number(d)
        case .bool(let b): .bool(b)
        case .string(let s): .string(s)
        default: .null
        }
    }

    /// Values as `data` returns them: datetimes (stored as seconds) as ISO strings.
    static func json(_ value: JSONValue, type: ColumnType) -> JSONValue {
        guard type == .datetime else { return value }
        switch value {
        case .int(let i): return .string(ISO8601DateTime.format(Double(i)))
        case .double(let d): return .string(ISO8601DateTime.format(d))
        default: return value
        }
    }
}

/// Filtered counts, by source and filter text: a completed source never changes, so a count
/// holds until the source is deleted.
final class FilterCounts: Sendable {
    private let cache = Mutex<[String: Int]>([:])

    func value(_ key: String) -> Int? { cache.withLock { $0[key] } }

    func store(_ key: String, _ count: Int) {
        cache.withLock { cache in
            if cache.count > 1000 { cache.removeAll() }
            cache[key] = count
        }
    }

    func forget(_ id: DataSourceID) {
        cache.withLock { cache in cache = cache.filter { !$0.key.hasPrefix(id.rawValue) } }
    }
}

/// A keyset position: the last row's sort values (as PostgreSQL wrote them) and position, and
/// the page it ends; signed with the store secret and bound to the source, sort and filter.
struct PageCursor {
    var page: Int
    var sortValues: [JSONValue]
    var r: Int64

    static func invalid(_ text: String) -> DataSourceError {
        DataSourceError.invalidParameter("cursor", value: .string(text), reason: "not a cursor for this data source, sort, order and filter")
    }

    func encode(scope: String, secret: StoreSecret) -> String {
        let payload: JSONObject = ["p": .int(Int64(page)), "r": .int(r), "v": .array(sortValues)]
        let body = Data(JSONValue.object(payload).serialized()).base64URLEncoded
        return body + "." + secret.sign(scope + "|" + body)
    }

    static func decode(_ text: String, scope: String, secret: StoreSecret) throws -> PageCursor {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, secret.verify(scope + "|" + parts[0], signature: String(parts[1])),
            let bytes = Data(base64URLEncoded: String(parts[0])).map(Array.init),
            let payload = try? JSONParser.parse(bytes),
            case .int(let page)? = payload["p"], case .int(let r)? = payload["r"],
            case .array(let values)? = payload["v"],
            (1...Int64(Pagination.maxPage)).contains(page)
        else { throw invalid(text) }
        return PageCursor(page: Int(page), sortValues: values, r: r)
    }
}
